import { describe, expect, it } from "vitest";
import { changeClass, humanize, otherSpacing } from "./format";

describe("format", () => {
  it("calls a change too small to show neutral", () => {
    expect(changeClass(0.0001)).toBe("zero");
    expect(changeClass(-0.0004)).toBe("zero");
    expect(changeClass(-0.002)).toBe("neg");
    expect(changeClass(0.002)).toBe("pos");
  });
  it("spots the same word with the other spacing", () => {
    expect(otherSpacing("Mary", " Mary")).toBe(true);
    expect(otherSpacing(" Mary", " Mary")).toBe(false);
    expect(otherSpacing(" Mary", " John")).toBe(false);
  });
  it("puts API field names in words", () => {
    expect(humanize("intervention patch on L1.H3: needs a counterfactual_prompt")).toBe("intervention patch on L1.H3: needs a counterfactual prompt");
    expect(humanize("internal error: KeyError: x")).not.toContain("KeyError");
  });
});
