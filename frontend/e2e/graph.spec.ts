// The attribution graph in a browser: open the IOI graph, lower the threshold, hover a node to
// see its strongest paths, pin three nodes, group two into a supernode, share, and reopen the
// link to the same picture.
import { expect, test, type Page } from "@playwright/test";
import { IOI, open, shot } from "./helpers";

const nodeIds = async (page: Page) =>
  (await page.locator(".react-flow__node").evaluateAll((els) => els.map((e) => e.getAttribute("data-id") ?? ""))).sort();
const node = (page: Page, id: string) => page.locator(`.react-flow__node[data-id="${id}"]`);

test("graph: threshold, hover paths, pins, supernode, shared link", async ({ page, browser }) => {
  await open(page, { ...IOI, view: "graph" });
  const stats = page.getByTestId("graph-stats");
  await expect(stats).toBeVisible({ timeout: 30_000 });
  await expect(node(page, "TARGET")).toBeVisible();
  const before = (await nodeIds(page)).length;

  // lower the node threshold: fewer nodes, from the server's pruning
  await page.getByTestId("node-threshold").fill("0.6");
  await expect.poll(async () => (await nodeIds(page)).length, { timeout: 20_000 }).toBeLessThan(before);
  expect(page.url()).toContain("node_threshold%22%3A0.6");

  // hover the target: its strongest upstream path lights up, with edge weights as labels
  await node(page, "TARGET").hover();
  await expect.poll(() => page.locator(".react-flow__edge.lit").count()).toBeGreaterThan(0);
  await expect(page.locator(".react-flow__edge-text").first()).toBeVisible();
  await shot(page, "graph-01-hover");
  await page.mouse.move(5, 5);

  // select the target: its panel lists incoming edges sorted by |weight|; pin it and its top two inputs
  await node(page, "TARGET").click();
  await expect(page.getByTestId("graph-panel")).toBeVisible();
  const inputs = page.getByTestId("edges-in").locator("li button");
  const weights = await page.getByTestId("edges-in").locator("li span").allTextContents();
  const mags = weights.map((w) => Math.abs(Number(w)));
  expect(mags).toEqual([...mags].sort((a, b) => b - a));
  const picks = (await inputs.allTextContents()).slice(0, 2);
  expect(picks).toHaveLength(2);
  await page.getByTestId("pin-node").click();
  for (const id of picks) {
    await page.getByTestId("edges-in").getByRole("button", { name: id, exact: true }).first().click().catch(async () => {
      await node(page, id).click();
    });
    await expect(page.getByTestId("graph-panel").locator("h3")).toHaveText(id);
    await page.getByTestId("pin-node").click();
    await page.getByTestId("group-label").fill("top inputs");
    await page.getByTestId("group-add").click();
    await node(page, "TARGET").click();
  }
  await expect(page.getByTestId("group-list")).toContainText(`top inputs: ${picks.join(", ")}`);

  // the pinned subgraph: the target and one supernode, joined by the summed edge
  await page.getByTestId("subgraph-toggle").check();
  await expect.poll(() => nodeIds(page)).toEqual(["TARGET", "group:top inputs"].sort());
  await expect(page.locator(".react-flow__edge")).toHaveCount(1);
  await node(page, "TARGET").click();
  const summed = await page.getByTestId("edges-in").locator("li span").first().textContent();
  await shot(page, "graph-02-subgraph");

  await page.getByTestId("share").click();
  const link = await page.getByTestId("share-link").inputValue();
  const fresh = await browser.newContext();
  const other = await fresh.newPage();
  await other.goto(link);
  await expect(other.getByTestId("graph-stats")).toBeVisible({ timeout: 30_000 });
  await expect.poll(() => nodeIds(other)).toEqual(["TARGET", "group:top inputs"].sort());
  await expect(other.getByTestId("graph-panel").locator("h3")).toHaveText("TARGET");
  await expect(other.getByTestId("edges-in").locator("li span").first()).toHaveText(summed!);
  await expect(other.getByTestId("group-list")).toContainText(`top inputs: ${picks.join(", ")}`);
  await expect(other.getByTestId("node-threshold")).toHaveValue("0.6");
  await shot(other, "graph-03-reopened");
  await fresh.close();
});
