// The active interventions: each toggleable and removable; any change re-runs the question.
import type { Intervention } from "../api/client";

export const describe = (iv: Intervention): string =>
  `${iv.op} ${iv.node}` + (iv.op === "scale" ? ` ×${iv.value}` : "") + (iv.op === "add" && iv.vector ? ` +${iv.vector.join(",")}` : "") +
  (iv.positions?.length ? ` @${iv.positions.join(",")}` : "");

export function Interventions(props: {
  items: Intervention[]; onChange: (items: Intervention[]) => void;
  counterfactual: string; onCounterfactual: (text: string) => void;
}) {
  const { items, onChange } = props;
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
        <label className="field">
          <span>counterfactual prompt (patch source, same token length)</span>
          <input value={props.counterfactual} onChange={(e) => props.onCounterfactual(e.target.value)} data-testid="counterfactual"
            placeholder="When Mary and John went to the store, Mary gave a drink to" />
        </label>
      )}
    </section>
  );
}
