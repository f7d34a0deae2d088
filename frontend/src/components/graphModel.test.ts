import { describe, expect, it } from "vitest";
import { incoming, layout, step, strongestPaths, subgraph } from "./graphModel";
import { decode, defaults, encode } from "../state/url";

const E = [
  { source: "EMB@0", target: "L0.T1@0", weight: 1 }, { source: "EMB@0", target: "L0.T2@0", weight: -3 },
  { source: "L0.T1@0", target: "TARGET", weight: 0.5 }, { source: "L0.T2@0", target: "TARGET", weight: 2 },
  { source: "L0.T1@0", target: "L1.T5@0", weight: 4 }, { source: "L1.T5@0", target: "TARGET", weight: -1 },
];

describe("graph helpers", () => {
  it("follows the strongest input upstream and output downstream", () => {
    expect([...strongestPaths(E, "L0.T1@0")].sort()).toEqual(["EMB@0>L0.T1@0", "L0.T1@0>L1.T5@0", "L1.T5@0>TARGET"]);
    expect(incoming(E, "TARGET").map((e) => e.source)).toEqual(["L0.T2@0", "L1.T5@0", "L0.T1@0"]);
    expect(step(E, "TARGET", "ArrowDown")).toBe("L0.T2@0");
    expect(step(E, "EMB@0", "ArrowUp")).toBe("L0.T2@0");
  });
  it("sums edges between supernodes and keeps only pinned nodes", () => {
    const nodes = ["EMB@0", "L0.T1@0", "L0.T2@0", "L1.T5@0", "TARGET"].map((id, i) => ({ id, kind: "x", layer: i, position: 0 }));
    const s = subgraph(nodes, E, ["TARGET", "EMB@0"], [{ label: "pair", ids: ["L0.T1@0", "L0.T2@0"] }]);
    expect(s.nodes.map((n) => n.id)).toEqual(["EMB@0", "group:pair", "TARGET"]);
    const w = Object.fromEntries(s.edges.map((e) => [`${e.source}>${e.target}`, e.weight]));
    expect(w).toEqual({ "EMB@0>group:pair": -2, "group:pair>TARGET": 2.5 });
  });
  it("lays tokens out left to right and layers bottom to top", () => {
    const p = layout([{ id: "a", kind: "embed", position: 0 }, { id: "b", kind: "transcoder", layer: 1, position: 2 },
      { id: "t", kind: "logit", position: 2 }], 2);
    expect(p.b.x).toBeGreaterThan(p.a.x);
    expect(p.t.y).toBeLessThan(p.b.y);
    expect(p.b.y).toBeLessThan(p.a.y);
  });
  it("keeps the graph state in the URL exactly", () => {
    const s = { ...defaults(), view: "graph" as const, graph: { node_threshold: 0.5, edge_threshold: 0.9, pruning: "ours" as const,
      attn: "heads" as const, pins: ["L0.T1@0", "TARGET"], groups: [{ label: "pair", ids: ["L0.T1@0", "L0.T2@0"] }],
      notes: { "L0.T1@0": "a note, with ünïcode & symbols" }, subgraph: true } };
    expect(decode(encode(s))).toEqual(s);
  });
});
