import { describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/react";
import { Interventions } from "./Interventions";

describe("Interventions", () => {
  const items = [{ node: "L1.H3", op: "zero" as const, enabled: true }, { node: "L0.N5", op: "scale" as const, value: 2, enabled: true }];

  it("toggles and removes one intervention, leaving the others", () => {
    const onChange = vi.fn();
    render(<Interventions items={items} onChange={onChange} counterfactual="" onCounterfactual={() => undefined} />);
    expect(screen.getByText("scale L0.N5 ×2")).toBeTruthy();
    fireEvent.click(screen.getByTestId("iv-toggle-0"));
    expect(onChange).toHaveBeenLastCalledWith([{ ...items[0], enabled: false }, items[1]]);
    fireEvent.click(screen.getByTestId("iv-remove-1"));
    expect(onChange).toHaveBeenLastCalledWith([items[0]]);
  });

  it("shows the patch source once a patch is active", () => {
    const { rerender } = render(<Interventions items={items} onChange={() => undefined} counterfactual="" onCounterfactual={() => undefined} />);
    expect(screen.queryByTestId("counterfactual-shown")).toBeNull();
    rerender(<Interventions items={[{ node: "L1.H3", op: "patch", enabled: true }]} onChange={() => undefined} counterfactual="cf text" onCounterfactual={() => undefined} />);
    expect(screen.getByTestId("counterfactual-shown").textContent).toBe("cf text");
  });
});
