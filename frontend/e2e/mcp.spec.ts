// An agent's result over MCP carries a link; a person opening it (or the share the agent made)
// sees the same numbers in the UI.
import { expect, test, type APIRequestContext } from "@playwright/test";
import { IOI, shown, shot } from "./helpers";

/** One MCP tool call as plain JSON-RPC over the stateless streamable-HTTP endpoint. */
async function tool(request: APIRequestContext, name: string, args: object) {
  const r = await request.post("/mcp", {
    headers: { accept: "application/json, text/event-stream", "content-type": "application/json" },
    data: { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args } },
  });
  expect(r.ok()).toBeTruthy();
  const result = (await r.json()).result;
  expect(result.isError, result.content[0].text).toBeFalsy();
  return result.structuredContent;
}

test("an MCP result's link and the agent's share open in the UI with the numbers the agent saw", async ({ page, request }) => {
  const why = { prompt: IOI.p, target: IOI.a, distractor: IOI.b };
  const heads = await tool(request, "attribute", { ...why, node_kind: "head", rows: 1 });
  const top = heads.nodes_by_abs_total_effect[0].id;
  const ablated = await tool(request, "attribute", { ...why, interventions: [{ node: top, op: "zero" }] });

  await page.goto(ablated.link);
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
  expect(await shown(page, "logit-diff")).toBeCloseTo(ablated.logit_diff, 3);
  expect(await shown(page, "baseline-logit-diff")).toBeCloseTo(ablated.baseline_logit_diff, 3);
  await shot(page, "mcp-link");

  const share = await tool(request, "create_share", { state: ablated.share_state });
  expect(share.link).toMatch(/\/s\/[\w-]{16}$/);
  await page.goto(share.link);
  await expect(page.getByTestId("baseline-logit-diff")).toBeVisible();
  expect(await shown(page, "logit-diff")).toBeCloseTo(ablated.logit_diff, 3);
});
