// The UI against a server that requires an access token (serve --auth-token-file): it asks for
// the token once, then every view works; the API refuses calls without it.
import { expect, test } from "@playwright/test";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { IOI } from "./helpers";

const root = resolve(import.meta.dirname, "..", "..");
const cli = join(root, ".venv", "bin", "circuit-debugger");
const port = Number(process.env.E2E_PORT ?? 8766) + 1;
const base = `http://127.0.0.1:${port}`;
let server: ChildProcess | undefined;
let token = "";

test.beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "cd-e2e-auth-"));
  const file = join(dir, "tokens");
  token = execFileSync(cli, ["token", "e2e", "--file", file]).toString().trim();
  server = spawn(cli, ["serve", "--port", String(port), "--share-db", join(dir, "s.sqlite"), "--auth-token-file", file],
    { stdio: "ignore" });
  for (let i = 0; i < 240; i++) {
    try {
      if ((await fetch(`${base}/api/health`)).ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("the token-protected server did not start");
});

test.afterAll(() => {
  server?.kill();
});

test("with a token required, the UI asks once and then works", async ({ page, request }) => {
  const refused = await request.post(`${base}/api/attribute`, { data: { prompt: IOI.p, target: IOI.a } });
  expect(refused.status()).toBe(401);
  let asked = 0;
  page.on("dialog", async (d) => {
    asked += 1;
    await d.accept(token);
  });
  await page.goto(`${base}/?` + new URLSearchParams({ v: "1", ...IOI }).toString());
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await expect(page.getByTestId("predictions")).toContainText("Mary");
  expect(asked).toBe(1);
  // a reload keeps the token: no second question
  await page.reload();
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  expect(asked).toBe(1);
  const api = await request.post(`${base}/api/attribute`, {
    data: { prompt: IOI.p, target: IOI.a, distractor: IOI.b },
    headers: { Authorization: `Bearer ${token}` },
  });
  expect(api.ok()).toBeTruthy();
  expect(Number(await page.getByTestId("logit-diff").textContent())).toBeCloseTo((await api.json()).logit_diff, 3);
});
