import { describe, expect, it } from "vitest";
import { isHead, isLatent, isNeuron, parseNode } from "./nodeId";
import { diverging, showToken } from "./format";

describe("node ids", () => {
  it("parses heads, neurons, latents and positions", () => {
    expect(parseNode("L1.H3")).toMatchObject({ base: "L1.H3", layer: 1, letter: "H", index: 3, position: null });
    expect(parseNode("L0.N117@5")).toMatchObject({ base: "L0.N117", layer: 0, index: 117, position: 5 });
    expect(isHead(parseNode("L2.H0"))).toBe(true);
    expect(isNeuron(parseNode("L2.N0@1"))).toBe(true);
    expect(isLatent(parseNode("L1.T300"))).toBe(true);
    expect(isLatent(parseNode("L1.TERR@2"))).toBe(false);
    expect(parseNode("EMB@2")).toMatchObject({ base: "EMB", layer: null, position: 2 });
  });
});

describe("formatting", () => {
  it("makes spaces in tokens visible", () => expect(showToken(" Mary\n")).toBe("·Mary⏎"));
  it("colours by sign and saturates at the scale", () => {
    expect(diverging(2, 1)).toBe("rgba(220, 60, 40, 0.750)");
    expect(diverging(-0.5, 1)).toBe("rgba(40, 100, 220, 0.375)");
    expect(diverging(null, 1)).toBe("transparent");
  });
});
