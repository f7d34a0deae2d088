import { describe, expect, it } from "vitest";
import { decode, defaults, encode } from "./url";

describe("URL state", () => {
  it("round-trips every field", () => {
    const s = {
      ...defaults(), model: "tracr/sort", prompt: "When Mary & John <b>went</b>? 100% = yes", target: " Mary", distractor: " John",
      interventions: [{ node: "L1.H3", op: "mean" as const, enabled: false }, { node: "L0.N5@3", op: "scale" as const, value: 0.5, enabled: true }],
      counterfactual_prompt: "x", compare_prompt: "y", node: "L1.H3", view: "compare" as const,
      traces: [{ kind: "attention" as const, node: "L1.H3", key: 4, query: null, through: "key" as const }],
      mlp_basis: "transcoders" as const, attn_basis: "saes" as const, granularity: "position" as const, top_k: 0,
      kind_filter: "head", search: "L1", dataset: { builtin: "ioi" as const, id: null, n: 50, seed: 2 },
      circuit: ["L1.H3", "L0.H0@S2"],
      sort: "direct_effect:asc", effects: "mean" as const, effects_neurons: true, ig_steps: 8, circuit_eval: "resample" as const,
      resid_basis: "saes" as const,
    };
    expect(decode(encode(s))).toEqual(s);
  });

  it("writes the later optional fields after the v1 ones (as the MCP server's Python encoder does)", () => {
    const s = { ...defaults(), prompt: "p", circuit: ["L1.H3"], sort: "direct_effect:desc", effects: "mean" as const,
      effects_neurons: true, ig_steps: 8, circuit_eval: "mean" as const };
    expect(encode(s)).toBe("v=1&p=p&circ=L1.H3&sort=direct_effect%3Adesc&fx=mean&fxn=1&ig=8&ce=mean");
  });

  it("keeps the residual basis (residual-stream SAE latents) in the URL, last, and reads it back", () => {
    const s = { ...defaults(), prompt: "p", circuit_eval: "mean" as const, resid_basis: "saes" as const };
    expect(encode(s)).toBe("v=1&p=p&ce=mean&res=saes");
    expect(decode(encode(s)).resid_basis).toBe("saes");
    expect(encode({ ...s, resid_basis: "none" })).toBe("v=1&p=p&ce=mean");
    expect(decode("v=1&p=p&res=bogus").resid_basis).toBe("none");
  });

  it("keeps the defaults out of the URL", () => {
    expect(encode(defaults())).toBe("v=1");
  });

  it("still reads a v1 link written by an earlier build", () => {
    const old = "v=1&p=When+Mary+and+John+went&a=+Mary&b=+John&iv=%5B%7B%22node%22%3A%22L1.H3%22%2C%22op%22%3A%22zero%22%7D%5D&node=L1.H3&view=graph";
    const s = decode(old);
    expect(s.prompt).toBe("When Mary and John went");
    expect(s.target).toBe(" Mary");
    expect(s.interventions).toEqual([{ node: "L1.H3", op: "zero" }]);
    expect(s.view).toBe("graph");
    expect(s.sort).toBe("");
    expect(s.effects).toBe("");
    expect(s.resid_basis).toBe("none");
  });

  it("falls back to defaults on bad fields and unknown versions", () => {
    const s = decode("v=1&iv=%7Bnot-json&view=nope&k=-3&tr=%5B1%2C2%5D");
    expect(s.interventions).toEqual([]);
    expect(s.traces).toEqual([]);
    expect(s.view).toBe("table");
    expect(s.top_k).toBe(100);
    expect(decode("v=99&p=hello")).toEqual(defaults());
  });
});
