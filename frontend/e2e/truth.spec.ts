// Issue 17: the UI tells the truth at every moment. One test per item of the issue, each one
// that would have caught what the walk-through found; screenshots in e2e-artifacts/.
import { expect, test, type Page } from "@playwright/test";
import { IOI, firstRowId, open, shot } from "./helpers";

const SIZES = [{ width: 1280, height: 720 }, { width: 1440, height: 900 }];
const cell = (page: Page, id: string, col: string) =>
  page.locator(`[data-testid="node-table"] .ag-row:has([col-id="id"]:text-is("${id}")) [col-id="${col}"]`).first();

test("1: results never answer a question that is not on screen", async ({ page }) => {
  await open(page, IOI);
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  const before = await page.getByTestId("logit-diff").textContent();
  await expect(page.getByTestId("stale")).toHaveCount(0);
  await page.getByTestId("target").fill(" John"); // = the distractor
  await expect(page.getByTestId("target-error")).toContainText("same token");
  await expect(page.getByTestId("stale")).toContainText("target A changed");
  await page.getByTestId("target").fill(" Mary");
  await expect(page.getByTestId("stale")).toHaveCount(0);
  await page.getByTestId("prompt").fill("");
  await expect(page.getByTestId("stale")).toContainText("the prompt is empty");
  await expect(page.getByTestId("run")).toBeDisabled();
  await expect(page.locator(".primary-pane.stale")).toHaveCount(1); // the old answer is dimmed
  await shot(page, "17-01-stale");
  await page.getByTestId("prompt").fill("When John and Mary went to the store, Mary gave a drink to");
  await page.getByTestId("target").fill(" John");
  await page.getByTestId("distractor").fill(" Mary");
  await expect(page.getByTestId("errors")).toHaveCount(0);
  await page.getByTestId("run").click();
  await expect(page.getByTestId("stale")).toHaveCount(0);
  await expect(page.getByTestId("logit-diff")).not.toHaveText(before!);
});

test("2: the leading space is visible, and a target with the other spacing is flagged", async ({ page }) => {
  await open(page, { ...IOI, a: "Mary" });
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await expect(page.getByTestId("target-spacing")).toHaveText("no leading space");
  await expect(page.getByTestId("distractor-spacing")).toHaveText("␣ leading space");
  await expect(page.getByTestId("spacing-warning")).toContainText("·Mary");
  await shot(page, "17-02-spacing");
  await page.getByTestId("target").fill(" Mary");
  await page.getByTestId("run").click();
  await expect(page.getByTestId("spacing-warning")).toHaveCount(0);
  // a predicted token that is one byte of a character shows its byte, not '�': after "na" in a
  // repeated "naïve" (ï split into two bytes by this tokenizer) induction predicts the first byte
  await open(page, { ...IOI, p: "naïve naïve naïve naïve na", a: " Mary" });
  await expect(page.getByTestId("predictions")).toContainText("⟨c3⟩");
  await expect(page.getByTestId("predictions")).not.toContainText("\ufffd");
});

test("3: the node panel always shows current and baseline values", async ({ page, request }) => {
  await open(page, { ...IOI, node: "L1.H3" });
  await expect(page.getByTestId("detail-total")).not.toHaveText("…");
  await page.getByTestId("ablate-zero").click();
  await expect(page.getByTestId("detail-total-before")).toBeVisible();
  await expect(page.getByTestId("detail-total")).toHaveText("0.000"); // ablated: it no longer acts
  const api = await (await request.post("/api/node-values", { data: { prompt: IOI.p, target: IOI.a, distractor: IOI.b, node: "L1.H3",
    interventions: [{ node: "L1.H3", op: "zero" }] } })).json();
  await expect(page.getByTestId("detail-total-before")).toHaveText(api.row.baseline_total_effect.toFixed(3));
  // switching the MLP basis keeps a selected neuron's numbers
  await open(page, { ...IOI, node: "L1.N7" });
  await expect(page.getByTestId("detail-total")).not.toHaveText("…");
  const neuron = await page.getByTestId("detail-total").textContent();
  await page.getByLabel("MLP basis").selectOption("transcoders");
  await expect(page.locator('[data-testid="node-table"] [col-id="kind"]', { hasText: "transcoder" }).first()).toBeVisible();
  await expect(page.getByTestId("detail-total")).toHaveText(neuron!);
  await expect(page.getByTestId("detail-values-missing")).toHaveCount(0)
    // another basis: a transcoder latent from the graph keeps its numbers
  await open(page, { ...IOI, node: "L1.T3", mlp: "transcoders" });
  await expect(page.getByTestId("detail-activation")).not.toHaveText("…");
  await expect(page.getByTestId("detail-values-missing")).toHaveCount(0);
  await shot(page, "17-03-node-values");
});

test("4: errors appear once, in words", async ({ page }) => {
  await open(page, { ...IOI, iv: JSON.stringify([{ node: "L1.H3", op: "patch", enabled: true }]) });
  await expect(page.getByTestId("run-error")).toContainText("counterfactual prompt");
  expect(await page.locator("body").textContent()).not.toContain("counterfactual_prompt");
  await page.getByTestId("target").fill(" Maryzzqx");
  await expect(page.getByTestId("target-error")).toContainText("one token");
  await expect(page.getByText(/must be exactly one token/)).toHaveCount(1);
  await expect(page.getByTestId("errors")).toHaveCount(1);
  await shot(page, "17-04-errors");
});

test("5: logit lens of latents and of tracr heads", async ({ page }) => {
  await open(page, { ...IOI, node: "L1.T3", mlp: "transcoders" });
  await expect(page.getByTestId("logit-lens")).toContainText("decoder row");
  await open(page, { model: "tracr/lib_sort", p: "4 1 3 5", a: "5", b: "1", node: "L0.H0" });
  await expect(page.getByTestId("logit-lens")).toContainText("promotes");
  await expect(page.getByText(/logit lens: /)).toHaveCount(0);
  await shot(page, "17-05-lens-tracr");
});

test("6: Back and Forward undo and redo every navigation", async ({ page }) => {
  await open(page, IOI);
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await page.getByTestId("kind-filter").selectOption("head");
  const top = await firstRowId(page);
  await page.locator('[data-testid="node-table"] .ag-row [col-id="id"]', { hasText: top }).first().click();
  await expect(page.getByTestId("node-detail")).toBeVisible();
  await page.getByTestId("trace").click();
  await expect(page.getByTestId("breadcrumb")).toBeVisible();
  await expect(page.getByTestId("node-detail")).toBeVisible(); // the panel stays open through a trace
  await page.getByTestId("breadcrumb").getByText("question").click();
  await expect(page.getByTestId("breadcrumb")).toHaveCount(0);
  await expect(page.getByTestId("node-detail")).toBeVisible(); // …and through the way back
  await page.goBack();
  await expect(page.getByTestId("breadcrumb")).toBeVisible();
  await page.goBack();
  await expect(page.getByTestId("breadcrumb")).toHaveCount(0);
  await page.goBack();
  await expect(page.getByTestId("node-detail")).toHaveCount(0);
  await page.goForward();
  await expect(page.getByTestId("node-detail")).toContainText(top);
  await page.getByTestId("view-compare").click();
  await expect(page.getByTestId("compare-view")).toBeVisible();
  await page.goBack();
  await expect(page.getByTestId("node-table")).toBeVisible();
  await page.getByLabel("granularity").selectOption("position");
  await expect(page).toHaveURL(/gran=position/);
  await page.goBack();
  await expect(page.getByLabel("granularity")).toHaveValue("component");
  expect(new URL(page.url()).pathname).toBe("/");
});

test("7: a tracr testbed is offered only what it supports, with its own examples", async ({ page }) => {
  await open(page, { model: "tracr/lib_sort" });
  await page.getByTestId("examples").selectOption({ index: 1 });
  await expect(page.getByTestId("prompt")).toHaveValue("4 1 3 5");
  await page.getByTestId("run").click();
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  await expect(page.getByTestId("view-graph")).toHaveCount(0);
  await expect(page.getByLabel("MLP basis")).toHaveCount(0);
  await expect(page.getByTestId("generate")).toHaveCount(0);
  await page.getByTestId("view-dataset").click();
  await expect(page.getByTestId("dataset-builtin")).toBeVisible();
  await expect(page.getByTestId("dataset-builtin").locator("option")).toHaveText(["none ready-made for this model: paste your own"]);
  await expect(page.getByTestId("target-spacing")).toHaveCount(0); // testbed tokens are words: spacing means nothing
  await expect(page.getByText("is not in this model's vocabulary")).toHaveCount(0);
  await shot(page, "17-07-tracr");
});

test("8: exact effects beside estimates, disagreements flagged", async ({ page, request }) => {
  await open(page, { ...IOI, kind: "head", fx: "zero" });
  await expect(page.getByTestId("effects-summary")).toBeVisible({ timeout: 20_000 });
  const fx = await (await request.post("/api/effects", { data: { prompt: IOI.p, target: IOI.a, distractor: IOI.b, ablation: "zero", ig_steps: 16 } })).json();
  const row = fx.rows.find((r: { id: string }) => r.id === "L1.H3");
  await expect(cell(page, "L1.H3", "fx_exact")).toHaveText(row.exact.toFixed(3));
  await expect(cell(page, "L1.H3", "fx_ig")).toContainText(row.ig.toFixed(3));
  const flagged = fx.rows.filter((r: { flag: string | null }) => r.flag).length;
  await expect(page.locator('[data-testid="node-table"] [col-id="fx_estimate"].cell-flag')).toHaveCount(flagged);
  await shot(page, "17-08-exact-effects");
});

test("9: attention heatmap labels, the key looked at, and the pattern after interventions", async ({ page }) => {
  await open(page, { ...IOI, node: "L1.H3" });
  await expect(page.getByTestId("attention-heatmap")).toBeVisible();
  const tokens = await page.locator('[data-testid="prompt-tokens"] .tok').count();
  await expect(page.getByTestId("attention-heatmap").getByTestId("hm-key-label")).toHaveCount(tokens);
  await expect(page.getByTestId("attention-heatmap").getByTestId("hm-query-label").nth(tokens - 1)).toHaveText("·to");
  const pattern = await page.evaluate(async () => (await (await fetch("/api/attention", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "When Mary and John went to the store, John gave a drink to", layer: 1, head: 3 }) })).json()).heads["L1.H3"]);
  const lastRow: number[] = pattern[pattern.length - 1];
  await expect(page.getByLabel("key position")).toHaveValue(String(lastRow.indexOf(Math.max(...lastRow))));
  await page.getByTestId("ablate-zero").click(); // a head's own ablation does not change its pattern; an earlier one's does
  await open(page, { ...IOI, node: "L1.H3", iv: JSON.stringify([{ node: "L0.ATTN", op: "zero", enabled: true }]) });
  await expect(page.getByTestId("attention-heatmap-after")).toBeVisible();
  await shot(page, "17-09-heatmaps");
});

test("10: a head's direct effect by source position", async ({ page, request }) => {
  await open(page, { ...IOI, node: "L1.H3" });
  await expect(page.getByTestId("direct-by-source")).toBeVisible();
  const r = await (await request.post("/api/attribute", { data: { prompt: IOI.p, target: IOI.a, distractor: IOI.b } })).json();
  const src = r.nodes.find((n: { id: string }) => n.id === "L1.H3").direct_by_source as number[];
  const strip = page.getByTestId("direct-by-source").locator(".tok");
  await expect(strip).toHaveCount(src.length);
  const k = src.indexOf(Math.max(...src));
  expect(await strip.nth(k).getAttribute("title")).toContain(src[k].toFixed(3));
});

test("11: patching asks for the counterfactual first, checks it here, and sends once", async ({ page }) => {
  await open(page, { ...IOI, node: "L1.H3" });
  await expect(page.getByTestId("logit-diff")).toBeVisible();
  const sent: string[] = [];
  page.on("request", (r) => { if (r.url().includes("/api/attribute")) sent.push(r.url()); });
  await page.getByTestId("patch").click();
  await expect(page.getByTestId("interventions")).not.toContainText("patch L1.H3"); // nothing added yet
  await page.getByTestId("counterfactual").pressSequentially("When Mary and John went to the store", { delay: 5 });
  await expect(page.getByTestId("counterfactual-problem")).toContainText("same length");
  await expect(page.getByTestId("counterfactual-apply")).toBeDisabled();
  await page.getByTestId("counterfactual").fill("When Mary and John went to the store, Mary gave a drink to");
  await page.getByTestId("counterfactual-apply").click();
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
  expect(sent.length).toBe(1);
  await page.getByTestId("view-compare").click(); // the compare view reuses it
  await expect(page.getByTestId("compare-prompt")).toHaveValue("When Mary and John went to the store, Mary gave a drink to");
  await shot(page, "17-11-patch");
});

test("12: trace headers name the quantity; a zero change is not coloured", async ({ page }) => {
  await open(page, { ...IOI, tr: JSON.stringify([{ kind: "attention", node: "L1.H3", key: 4, query: null, through: "query" }]) });
  await expect(page.getByTestId("metric-label")).toContainText("attention score of head L1.H3, query 14");
  await expect(page.getByTestId("metric-label")).toContainText("key 4 ·John");
  await open(page, { ...IOI, iv: JSON.stringify([{ node: "L1.H3", op: "scale", value: 1, enabled: true }]) });
  await expect(page.getByTestId("logit-diff-change")).toHaveText("0.000");
  await expect(page.getByTestId("logit-diff-change")).toHaveClass("zero");
});

test("13: table labels, counts over filters, descending first click, sort in the URL", async ({ page }) => {
  await open(page, { ...IOI, k: "20" });
  await expect(page.locator('.ag-header-cell[col-id="activation"]')).toContainText("activation @14");
  await expect(page.locator('.ag-header-cell[col-id="total_effect"]')).toContainText("Σpos");
  await page.getByTestId("kind-filter").selectOption("head");
  await expect(page.getByTestId("row-count")).toContainText("12 shown · 1556 nodes"); // every head of every node, not a top-k cut
  await page.getByTestId("search").fill("L0.H2");  // the grid's own quick filter: counted by the grid
  await expect(page.getByTestId("row-count")).toContainText("1 shown · ");
  await page.getByTestId("search").fill("");
  await expect(page.getByTestId("row-count")).toContainText("12 shown · 1556 nodes");
  const header = page.locator('[data-testid="node-table"] .ag-header-cell[col-id="direct_effect"] .ag-header-cell-text');
  await header.click();
  await expect(page).toHaveURL(/sort=direct_effect%3Adesc/);
  await expect(page.locator('.ag-header-cell[col-id="direct_effect"][aria-sort="descending"]')).toHaveCount(1);
  const abs = await page.evaluate(() => [...document.querySelectorAll('[data-testid="node-table"] .ag-row:has([col-id="direct_effect"])')]
    .map((r) => [Number(r.getAttribute("row-index")), Math.abs(Number(r.querySelector('[col-id="direct_effect"]')!.textContent))])
    .filter(([i]) => i < 4).sort((a, b) => a[0] - b[0]).map(([, v]) => v));
  expect(abs.length).toBe(4);
  expect(abs).toEqual([...abs].sort((a, b) => b - a));
  await page.reload();
  await expect(page.locator('.ag-header-cell[col-id="direct_effect"][aria-sort="descending"]')).toHaveCount(1);
  // a filter icon sits inside its own column's header
  for (const col of ["activation", "direct_effect", "total_effect"]) {
    const box = (await page.locator(`.ag-header-cell[col-id="${col}"]`).boundingBox())!;
    const text = (await page.locator(`.ag-header-cell[col-id="${col}"] .ag-header-cell-text`).boundingBox())!;
    const icon = page.locator(`.ag-header-cell[col-id="${col}"] [class*="filter"]:visible`).first();
    await expect(icon).toBeVisible();
    const ib = (await icon.boundingBox())!;
    expect(ib.x).toBeGreaterThanOrEqual(box.x);
    expect(ib.x + ib.width).toBeLessThanOrEqual(box.x + box.width + 1);
    expect(ib.x).toBeGreaterThan(text.x);  // after its own label, never beside the previous column's
  }
  await shot(page, "17-13-table");
});

for (const size of SIZES) {
  test(`14: layout at ${size.width}x${size.height}: no overflow, rows visible, panel resizable and collapsible`, async ({ page }) => {
    await page.setViewportSize(size);
    await open(page, { ...IOI, node: "L1.H3", iv: JSON.stringify([{ node: "L1.H3", op: "zero", enabled: true }]) });
    await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
    expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    await expect(page.locator('[data-testid="node-table"] .ag-row').first()).toBeVisible();  // as opened: no scrolling
    const visibleRows = await page.evaluate(() => {
      const vp = document.querySelector('[data-testid="node-table"]')!.getBoundingClientRect();
      const seen = new Set<string>();
      for (const r of document.querySelectorAll('[data-testid="node-table"] .ag-row')) {
        const b = r.getBoundingClientRect();
        if (b.height > 0 && b.top >= vp.top && b.bottom <= Math.min(vp.bottom, window.innerHeight)) seen.add(r.getAttribute("row-index") ?? "");
      }
      return seen.size;
    });
    expect(visibleRows).toBeGreaterThanOrEqual(size.height > 800 ? 14 : 9);
    if (size.width >= 1440) {  // the before / Δ columns fit without sideways scrolling
      const over = await page.evaluate(() => {
        const grid = document.querySelector('[data-testid="node-table"]')!.getBoundingClientRect();
        const right = Math.max(...[...document.querySelectorAll('[data-testid="node-table"] .ag-header-cell')].map((h) => h.getBoundingClientRect().right));
        return right - grid.right;
      });
      expect(over).toBeLessThanOrEqual(1);
      await expect(page.locator('.ag-header-cell[col-id="delta_direct"]')).toBeVisible();
    }
    await shot(page, `17-14-layout-${size.width}`);
    const before = (await page.getByTestId("node-detail").boundingBox())!.width;
    const bar = (await page.getByTestId("splitter").boundingBox())!;
    await page.mouse.move(bar.x + 3, bar.y + 200);
    await page.mouse.down();
    await page.mouse.move(bar.x + 103, bar.y + 200, { steps: 4 });
    await page.mouse.up();
    expect((await page.getByTestId("node-detail").boundingBox())!.width).toBeLessThan(before - 60);
    await page.getByTestId("panel-collapse").click();
    await expect(page.getByTestId("node-detail")).toHaveCount(0);
    await page.getByTestId("panel-expand").click();
    await expect(page.getByTestId("node-detail")).toBeVisible();
  });
}

test("15: shares restore circuit evaluations; copy confirms; placeholders and unicode read clearly", async ({ page, browser, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await open(page, { view: "dataset", ds: JSON.stringify({ builtin: "ioi", id: null, n: 20, seed: 0 }), circ: "L1.H3,L2.H1" });
  await page.getByTestId("evaluate").click();
  await expect(page.getByTestId("faithfulness")).toBeVisible({ timeout: 60_000 });
  const f = await page.getByTestId("faithfulness").textContent();
  await page.getByTestId("share").click();
  await page.getByTestId("share-copy").click();
  await expect(page.getByTestId("share-copied")).toHaveText("copied ✓");
  const link = await page.getByTestId("share-link").inputValue();
  const other = await (await browser.newContext()).newPage();
  await other.goto(link);
  await expect(other.getByTestId("faithfulness")).toHaveText(f!, { timeout: 60_000 }); // no second click
  await open(page, { p: "Café 東京 Mary" });
  await expect(page.getByTestId("prompt-tokens")).toContainText("é[1/2]");
  await expect(page.getByTestId("prompt-tokens")).not.toContainText("\ufffd");
  await page.getByTestId("prompt").fill("");
  const colours = await page.getByTestId("prompt").evaluate((el) => [getComputedStyle(el, "::placeholder").color, getComputedStyle(el).color,
    getComputedStyle(el, "::placeholder").fontStyle]);
  expect(colours[0]).not.toBe(colours[1]);
  expect(colours[2]).toBe("italic");
  await expect(page.getByTestId("prompt")).toHaveAttribute("placeholder", /^e\.g\. /);
  await shot(page, "17-15-share-unicode");
});

test("16: generation with and without the interventions, token by token", async ({ page, request }) => {
  await open(page, { ...IOI, iv: JSON.stringify([{ node: "L1.H3", op: "zero", enabled: true }, { node: "L2.H1", op: "zero", enabled: true }]) });
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
  await page.getByTestId("generate-run").click();
  await expect(page.getByTestId("gen-intervened").getByTestId("gen-token")).toHaveCount(12);
  const r = await (await request.post("/api/generate", { data: { prompt: IOI.p, max_new_tokens: 12, temperature: 0, seed: 0,
    interventions: [{ node: "L1.H3", op: "zero" }, { node: "L2.H1", op: "zero" }] } })).json();
  const text = (steps: { token: string }[]) => steps.map((s) => s.token.replace(/ /g, "·")).join("");
  const shownBase = (await page.getByTestId("gen-baseline").getByTestId("gen-token").allTextContents()).map((t) => t.replace(/\d+%$/, "")).join("");
  const shownIv = (await page.getByTestId("gen-intervened").getByTestId("gen-token").allTextContents()).map((t) => t.replace(/\d+%$/, "")).join("");
  expect(shownBase).toBe(text(r.baseline));
  expect(shownIv).toBe(text(r.intervened));
  await expect(page.getByTestId("gen-baseline").getByTestId("gen-token").first()).toContainText(`${(r.baseline[0].prob * 100).toFixed(0)}%`);
  await shot(page, "17-16-generate");
});
