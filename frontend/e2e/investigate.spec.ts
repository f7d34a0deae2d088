import { expect, test } from "@playwright/test";
import { writeFileSync } from "node:fs";
import { IOI, firstRowId, open, shot, shown } from "./helpers";

test("IOI: run, read the top head, ablate it, and see the logit difference fall by what the API reports", async ({ page, request }) => {
  const t0 = Date.now();
  await open(page, IOI);
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  const firstRenderMs = Date.now() - t0;
  await expect(page.getByTestId("predictions")).toContainText("Mary");
  const before = await shown(page, "logit-diff");

  await page.getByTestId("kind-filter").selectOption("head");
  // sort heads by |direct effect|, largest first (one click: descending)
  await page.locator('[data-testid="node-table"] .ag-header-cell[col-id="direct_effect"] .ag-header-cell-text').click();
  const top = await firstRowId(page);
  expect(top).toMatch(/^L\d+\.H\d+$/);
  await page.locator(`[data-testid="node-table"] .ag-row [col-id="id"]`, { hasText: top }).first().click();
  await expect(page.getByTestId("node-detail")).toContainText(top);
  await expect(page.getByTestId("attention-heatmap")).toBeVisible();
  await shot(page, "01-ioi-top-head");

  await page.getByTestId("ablate-zero").click();
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
  const after = await shown(page, "logit-diff");
  const change = await shown(page, "logit-diff-change");
  expect(await shown(page, "baseline-logit-diff")).toBeCloseTo(before, 3);

  const api = await request.post("/api/intervene", { data: {
    prompt: IOI.p, target: IOI.a, distractor: IOI.b, interventions: [{ node: top, op: "zero" }] } });
  expect(api.ok()).toBeTruthy();
  const r = await api.json();
  expect(after).toBeCloseTo(r.logit_diff, 3);
  expect(change).toBeCloseTo(r.change, 3);
  expect(r.change).toBeLessThan(-1); // the top head by direct effect carries the answer: ablating it hurts
  await expect(page.getByTestId("interventions")).toContainText(`zero ${top}`);
  await shot(page, "02-ioi-ablated");

  // toggling the intervention off restores the clean numbers
  await page.getByTestId("iv-toggle-0").uncheck();
  await expect(page.getByTestId("baseline-logit-diff")).toHaveCount(0);
  await expect(page.getByTestId("logit-diff")).toHaveText(before.toFixed(3));
  writeFileSync("e2e-artifacts/timings.json", JSON.stringify({ first_meaningful_render_ms: firstRenderMs }));
});

test("a share link reopened in a new browser context shows identical numbers", async ({ page, browser }) => {
  await open(page, { ...IOI, iv: JSON.stringify([{ node: "L1.H3", op: "mean", enabled: true }]), node: "L1.H3" });
  // the first mean-ablation computes the reference corpus' means (seconds on a busy machine)
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible({ timeout: 20_000 });
  await expect(page.getByTestId("detail-total")).toHaveText(/\d/);  // the panel's own numbers have arrived
  const ids = ["logit-diff", "baseline-logit-diff", "logit-diff-change", "detail-activation", "detail-direct", "detail-total", "detail-total-before"];
  const numbers = await Promise.all(ids.map((id) => page.getByTestId(id).textContent()));
  await page.getByTestId("share").click();
  const link = await page.getByTestId("share-link").inputValue();
  expect(link).toMatch(/\/s\/[A-Za-z0-9_-]{16}$/);

  const fresh = await browser.newContext();
  const other = await fresh.newPage();
  await other.goto(link);
  await expect(other.getByTestId("baseline-logit-diff")).toBeVisible();
  await expect(other.getByTestId("detail-total")).toHaveText(/\d/);
  expect(await Promise.all(ids.map((id) => other.getByTestId(id).textContent()))).toEqual(numbers);
  await expect(other.getByTestId("interventions")).toContainText("mean L1.H3");
  await shot(other, "03-share-reopened");

  // sharing again makes a new id; the old one still opens unchanged
  await page.getByTestId("share").click();
  await expect(page.getByTestId("share-link")).not.toHaveValue(link);
  await fresh.close();
});

test("an invalid target token shows its error inline and cannot run", async ({ page }) => {
  await open(page, IOI);
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await page.getByTestId("target").fill(" Maryzzqx");
  await expect(page.getByTestId("target-error")).toContainText("one token");
  await expect(page.getByTestId("run")).toBeDisabled();
  await shot(page, "04-invalid-target");
  await page.getByTestId("target").fill(" Mary");
  await expect(page.getByTestId("target-error")).toHaveCount(0);
});

test("the attribution graph opens and its nodes open the detail panel", async ({ page }) => {
  await open(page, { ...IOI, view: "graph" });
  await expect(page.getByTestId("graph-stats")).toBeVisible({ timeout: 30_000 });
  const nodes = page.locator(".react-flow__node");
  expect(await nodes.count()).toBeGreaterThan(10);
  const latent = page.locator(".react-flow__node.transcoder").first();
  const id = (await latent.getAttribute("data-id"))!;  // its text is the id and its explanation
  await latent.click();
  await expect(page.getByTestId("node-detail")).toContainText(id);
  await shot(page, "05-graph");
});

test("trace upstream from a head and come back by the breadcrumb", async ({ page }) => {
  await open(page, { ...IOI, node: "L1.H3" });
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  const question = await shown(page, "logit-diff");
  await page.getByLabel("key position").selectOption("10");
  await page.getByTestId("trace").click();
  await expect(page.getByTestId("breadcrumb")).toContainText("why L1.H3 attends");
  await expect(page.getByTestId("logit-diff")).not.toHaveText(question.toFixed(3));
  await shot(page, "06-trace");
  await page.getByTestId("breadcrumb").getByText("question").click();
  await expect(page.getByTestId("breadcrumb")).toHaveCount(0);
  await expect(page.getByTestId("logit-diff")).toHaveText(question.toFixed(3));
});

test("a prompt containing HTML and script is shown as text, never run", async ({ page }) => {
  const hostile = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> Mary`;
  await open(page, { p: hostile, a: " Mary" });
  await expect(page.getByTestId("prompt-tokens")).toContainText("<img");
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  expect(await page.locator("img[src=x], body script:not([type=module])").count()).toBe(0);
});

test("compare a clean and a corrupted prompt side by side", async ({ page }) => {
  const corrupted = "When Mary and John went to the store, Mary gave a drink to";
  await open(page, { ...IOI, view: "compare", cmp: corrupted });
  await expect(page.getByTestId("compare-right")).not.toHaveText("–");
  await expect(page.getByTestId("compare-left")).not.toHaveText("–");
  const left = await shown(page, "compare-left"), right = await shown(page, "compare-right");
  expect(left).toBeGreaterThan(0);
  expect(right).toBeLessThan(left); // the corrupted prompt no longer points at Mary
  await expect(page.locator('[data-testid="compare-view"] .ag-row').first()).toBeVisible();
  await shot(page, "07-compare");
});

test("patch a head from a counterfactual prompt: the UI shows the API's numbers", async ({ page, request }) => {
  const cf = "When Mary and John went to the store, Mary gave a drink to";
  await open(page, { ...IOI, node: "L1.H3" });
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await page.getByTestId("patch").click();
  await page.getByTestId("counterfactual").fill(cf);
  await page.getByTestId("counterfactual-apply").click();
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
  const r = await (await request.post("/api/intervene", { data: {
    prompt: IOI.p, target: IOI.a, distractor: IOI.b, counterfactual_prompt: cf, interventions: [{ node: "L1.H3", op: "patch" }] } })).json();
  await expect(page.getByTestId("logit-diff")).toHaveText(r.logit_diff.toFixed(3));
  await shot(page, "08-patch");
});

test("dataset view: evaluate a circuit over the IOI set and see the API's numbers", async ({ page, request }) => {
  const jobPosts: string[] = []; // a 40-row set is below the server's immediate_rows: no attribution or ablation job
  page.on("request", (q) => { if (/^\/api\/jobs\/dataset\//.test(new URL(q.url()).pathname)) jobPosts.push(new URL(q.url()).pathname); });
  await open(page, { view: "dataset", ds: JSON.stringify({ builtin: "ioi", id: null, n: 40, seed: 0 }) });
  await expect(page.getByTestId("dataset-metric")).toBeVisible({ timeout: 30_000 });
  const attributed = await (await request.post("/api/dataset/attribute", { data: {
    promptset: { builtin: "ioi", n: 40, seed: 0 }, top_k: 100, drill: 8 } })).json();
  await expect(page.getByTestId("dataset-metric")).toHaveText(attributed.metric_mean.toFixed(3));
  await page.getByTestId("add-top").click();
  await expect(page.locator('[data-testid="circuit-panel"] .chip')).toHaveCount(5);
  await page.getByTestId("evaluate").click();  // a job: progress while it runs, its id in the address
  await expect(page.getByTestId("faithfulness")).toBeVisible({ timeout: 60_000 });
  const jobId = new URLSearchParams(new URL(page.url()).hash.slice(1)).get("job")!;
  expect(jobId).toMatch(/^[A-Za-z0-9_-]{16}$/);
  const circuit = new URL(page.url()).searchParams.get("circ")!.split(",");
  const job = await (await request.get(`/api/jobs/${jobId}`)).json();
  expect(job.status).toBe("done");
  expect(job.request.nodes).toEqual(circuit);
  const r = await (await request.post("/api/circuit/evaluate", { data: {
    promptset: { builtin: "ioi", n: 40, seed: 0 }, nodes: circuit, ablation: "mean" } })).json();
  await expect(page.getByTestId("faithfulness")).toHaveText(r.faithfulness.fraction.toFixed(3));
  await expect(page.getByTestId("incompleteness")).toHaveText(r.completeness.relative.toFixed(3));
  await expect(page.locator('[data-testid="circuit-result"] .bar')).toHaveCount(5);
  await page.getByTestId("ablate-set").click();
  const a = await (await request.post("/api/dataset/ablate", { data: {
    promptset: { builtin: "ioi", n: 40, seed: 0 }, nodes: circuit, ablation: "mean" } })).json();
  await expect(page.getByTestId("ablate-result")).toContainText(a.after_mean.toFixed(3));
  expect(jobPosts).toEqual([]);
  expect(new URL(page.url()).hash).not.toMatch(/attribute-job|ablate-job/);
  await shot(page, "09-dataset-circuit");
  // leave and come back with the address: the job's stored result is shown again
  const address = page.url();
  await page.goto("about:blank");
  await page.goto(address);
  await expect(page.getByTestId("faithfulness")).toHaveText(r.faithfulness.fraction.toFixed(3), { timeout: 30_000 });
});

test("dataset view: a running evaluation job shows progress and can be cancelled", async ({ page, request }) => {
  await open(page, { view: "dataset", ds: JSON.stringify({ builtin: "ioi", id: null, n: 200, seed: 1 }) });
  await expect(page.getByTestId("dataset-metric")).toBeVisible({ timeout: 30_000 });
  await page.getByTestId("add-top").click();
  await page.getByTestId("evaluate").click();
  await expect(page.getByTestId("job-progress")).toBeVisible({ timeout: 10_000 });
  await page.getByTestId("job-cancel").click();
  await expect(page.getByTestId("job-cancelled")).toBeVisible({ timeout: 15_000 });
  const jobId = new URLSearchParams(new URL(page.url()).hash.slice(1)).get("job")!;
  expect((await (await request.get(`/api/jobs/${jobId}`)).json()).status).toBe("cancelled");
});

test("a long prompt on a laptop screen: no horizontal overflow, keyboard closes the panel", async ({ page }) => {
  await page.setViewportSize({ width: 1280, height: 800 });
  // near the default model's limit (64 tokens), with a long unbroken word in it (51 tokens)
  const long = "When Mary and John went to the " + "x".repeat(24) + " store at the station, then the office and the park, John gave a drink to";
  await open(page, { p: long, a: " Mary", b: " John", node: "L1.H3" });
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await expect(page.getByTestId("attention-heatmap")).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await shot(page, "10-long-prompt");
  await page.locator("body").click({ position: { x: 5, y: 780 } });
  await page.keyboard.press("Escape");
  await expect(page.getByTestId("node-detail")).toHaveCount(0);
});
