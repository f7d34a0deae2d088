import { describe, expect, it } from "vitest";
import { latestOnly } from "./useRequest";

describe("latestOnly", () => {
  it("aborts and discards an older request when a newer one starts", () => {
    const gate = latestOnly();
    const first = gate.start();
    const second = gate.start();
    expect(first.signal.aborted).toBe(true);
    expect(gate.isCurrent(first.id)).toBe(false);
    expect(gate.isCurrent(second.id)).toBe(true);
    expect(second.signal.aborted).toBe(false);
  });

  it("cancel makes no request current", () => {
    const gate = latestOnly();
    const a = gate.start();
    gate.cancel();
    expect(a.signal.aborted).toBe(true);
    expect(gate.isCurrent(a.id)).toBe(false);
  });
});
