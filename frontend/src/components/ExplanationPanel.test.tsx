import { describe, expect, it } from "vitest";
import { render, screen } from "@testing-library/react";
import { ExplanationList, quality } from "./ExplanationPanel";

describe("ExplanationList", () => {
  it("never makes an explanation at chance the headline; flags it and shows its score", () => {
    const items = [
      { explainer: "offline", text: "fires on ' Mary'", score: 0.51, score_kind: "auc" },
      { explainer: "offline", text: "attends to the previous token", score: 0.93, score_kind: "attention_auc" },
      { explainer: "llm", text: "names", score: 0.2, score_kind: "simulation_correlation" },
    ];
    const { container } = render(<ExplanationList items={items} />);
    const bold = container.querySelectorAll("b");
    expect(bold.length).toBe(1);
    expect(bold[0].textContent).toBe("attends to the previous token");
    expect(screen.getByText(/auc 0.51/)).toBeTruthy();
    expect(screen.getAllByTestId("explanation-flag").map((x) => x.textContent)).toEqual(
      ["≈ chance: this text does not describe the node", "weak"]);
  });

  it("has no headline when every explanation is at chance or unscored", () => {
    const { container } = render(<ExplanationList items={[{ explainer: "offline", text: "x", score: 0.5, score_kind: "auc" },
      { explainer: "offline", text: "never active", score: null, score_kind: "auc" }]} />);
    expect(container.querySelectorAll("b").length).toBe(0);
    expect(quality({ explainer: "llm", text: "", score: 0.35, score_kind: "simulation_correlation" })).toBe("good");
  });
});
