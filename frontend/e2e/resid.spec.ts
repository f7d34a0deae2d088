// The residual-basis control, against a server whose default model has a residual-stream SAE
// (e2e/resid_sae_server.py, on E2E_PORT + 2): the table shows its latents and error, the
// numbers are the API's for resid_basis "saes", and the choice is kept in the URL.
import { expect, test } from "@playwright/test";
import { IOI } from "./helpers";

const base = `http://127.0.0.1:${Number(process.env.E2E_PORT ?? 8766) + 2}`;

test("residual: SAE latents shows the residual SAE's latents and error, as the API computes them", async ({ page, request }) => {
  await page.goto(`${base}/?` + new URLSearchParams({ v: "1", p: IOI.p, a: IOI.a, b: IOI.b, kind: "", k: "0" }).toString());
  const control = page.getByTestId("resid-basis");
  await expect(control).toBeVisible();
  await expect(control).toHaveValue("none");
  await control.selectOption("saes");
  await expect(page).toHaveURL(/res=saes/);
  await page.getByTestId("search").fill("L2.RERR");
  const row = page.locator('[data-testid="node-table"] .ag-row[row-index="0"] [col-id="id"]').first();
  await expect(row).toHaveText("L2.RERR");
  const api = await (await request.post(`${base}/api/attribute`, { data: { prompt: IOI.p, target: IOI.a, distractor: IOI.b,
    top_k: null, resid_basis: "saes" } })).json();
  const err = api.nodes.find((n: { id: string }) => n.id === "L2.RERR");
  const cell = page.locator('[data-testid="node-table"] .ag-row[row-index="0"] [col-id="direct_effect"]').first();
  expect(Number((await cell.textContent())!.trim().replace("\u2212", "-"))).toBeCloseTo(err.direct_effect, 2);
  // the cut: nothing upstream of the layer-2 residual SAE has a direct effect (exactly 0 in the API)
  expect(api.nodes.find((n: { id: string }) => n.id === "L0.H0").direct_effect).toBe(0);
  // the node panel's numbers are the table's: it asks /api/node-values with the residual basis too
  const num = async (id: string) => Number((await page.getByTestId(id).textContent())!.trim().replace("\u2212", "-"));
  await row.click();
  await expect(page.getByTestId("node-detail")).toContainText("L2.RERR");
  await expect.poll(() => num("detail-direct")).toBeCloseTo(err.direct_effect, 2);
  await page.getByTestId("search").fill("L0.H0");
  await expect(row).toHaveText("L0.H0");
  await row.click();
  await expect(page.getByTestId("node-detail")).toContainText("L0.H0");
  await expect.poll(() => num("detail-direct")).toBe(0);
  await page.getByTestId("search").fill("L2.RERR");
  await expect(row).toHaveText("L2.RERR");
  // a reload keeps the choice (URL state)
  await page.reload();
  await expect(page.getByTestId("resid-basis")).toHaveValue("saes");
});
