import { afterEach, describe, expect, it, vi } from "vitest";
import { render, waitFor } from "@testing-library/react";
import { api } from "../api/client";
import { CompareView } from "../components/CompareView";
import { NodeDetail, type Question } from "../components/NodeDetail";
import { basesOf } from "./bases";

// the grid is not under test here (and is slow to mount in jsdom)
vi.mock("ag-grid-react", () => ({ AgGridReact: () => null }));

// Every POST the components make, by path, with its body; answers stay pending (the bodies are the point).
function spyPosts() {
  const seen: { path: string; body: Record<string, unknown> }[] = [];
  vi.spyOn(api, "POST").mockImplementation(((path: string, init: { body: Record<string, unknown> }) => {
    seen.push({ path, body: init.body });
    return new Promise(() => {});
  }) as never);
  return seen;
}

describe("bases sent with the table's numbers", () => {
  afterEach(() => vi.restoreAllMocks());

  it("fills every basis, keeping the ones given", () => {
    expect(basesOf({})).toEqual({ mlp_basis: "neurons", attn_basis: "heads", resid_basis: "none" });
    expect(basesOf({ resid_basis: "saes", mlp_basis: "transcoders" }).resid_basis).toBe("saes");
  });

  it("the node panel asks /api/node-values with the residual basis", async () => {
    const seen = spyPosts();
    const q: Question = { model: "m", prompt: "a b c", target: " d", distractor: "", trace: null, interventions: [],
      counterfactual_prompt: "", mlp_basis: "neurons", attn_basis: "saes", resid_basis: "saes" };
    render(<NodeDetail q={q} id="L2.RERR" tokens={["a", " b", " c"]} meanAblation={false} onIntervene={() => {}}
      onPatch={() => {}} onTrace={() => {}} onClose={() => {}} />);
    await waitFor(() => expect(seen.some((s) => s.path === "/api/node-values")).toBe(true));
    const body = seen.find((s) => s.path === "/api/node-values")!.body;
    expect(body).toMatchObject({ node: "L2.RERR", resid_basis: "saes", attn_basis: "saes", mlp_basis: "neurons" });
  });

  it("both tables of the compare view use the residual basis", async () => {
    const seen = spyPosts();
    render(<CompareView q={{ model: "m", target: " d", distractor: " e", ...basesOf({ resid_basis: "saes" }) }}
      left="a b c" right="a x c" onRight={() => {}} onSelect={() => {}} />);
    await waitFor(() => expect(seen.filter((s) => s.path === "/api/attribute").length).toBe(2));
    for (const s of seen.filter((x) => x.path === "/api/attribute")) {
      expect(s.body).toMatchObject({ resid_basis: "saes", mlp_basis: "neurons", attn_basis: "heads", top_k: null });
    }
  }, 20_000);
});
