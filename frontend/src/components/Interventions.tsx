// The active interventions: each toggleable and removable; any change re-runs the question.
// The counterfactual prompt of patches is edited in place and applied once, length-checked.
import { useState } from "react";
import type { Intervention } from "../api/client";
import { Counterfactual } from "./Counterfactual";

export const describe = (iv: Intervention): string =>
  `${iv.op} ${iv.node}` + (iv.op === "scale" ? ` ×${iv.value}` : "") + (iv.op === "add" && iv.vector ? ` +${iv.vector.join(",")}` : "") +
  (iv.positions?.length ? ` @${iv.positions.join(",")}` : "");

export function Interventions(props: {
  items: Intervention[]; onChange: (items: Intervention[]) => void;
  counterfactual: string; onCounterfactual: (text: string) => void; model?: string; prompt?: string;
}) {
  const { items, onChange } = props;
  const [editing, setEditing] = useState(false);
  const needsCf = items.some((i) => i.op === "patch");
  return (
    <section className="interventions" data-testid="interventions">
      <h3>Interventions {items.length > 0 && <button type="button" className="link" onClick={() => onChange([])}>clear all</button>}</h3>
      {items.length === 0 && <p className="muted">None. Select a node to ablate, patch, scale or steer it.</p>}
      <ul>
        {items.map((iv, i) => (
          <li key={i} className={iv.enabled === false ? "off" : ""}>
            <label>
              <input type="checkbox" checked={iv.enabled !== false} data-testid={`iv-toggle-${i}`}
                onChange={(e) => onChange(items.map((x, j) => (j === i ? { ...x, enabled: e.target.checked } : x)))} />
              <span className="mono">{describe(iv)}</span>
            </label>
            <button type="button" aria-label={`remove ${describe(iv)}`} data-testid={`iv-remove-${i}`}
              onClick={() => onChange(items.filter((_, j) => j !== i))}>✕</button>
          </li>
        ))}
      </ul>
      {(needsCf || props.counterfactual) && (
        editing && props.model && props.prompt ? (
          <Counterfactual model={props.model} prompt={props.prompt} value={props.counterfactual} applyLabel="Use"
            onApply={(t) => { props.onCounterfactual(t); setEditing(false); }} testid="counterfactual-edit" />
        ) : (
          <p className="muted">patch source: <span className="mono" data-testid="counterfactual-shown">{props.counterfactual || "(none)"}</span>{" "}
            {props.model && <button type="button" className="link" onClick={() => setEditing(true)}>change</button>}</p>
        )
      )}
    </section>
  );
}
