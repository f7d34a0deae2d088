// The question's answer at a glance: the logit difference (before / after interventions) and
// the top next-token predictions.
import type { AttributeResponse, Schemas } from "../api/client";
import { fmt, showToken, signed } from "../format";

function Predictions({ title, items, testid }: { title: string; items: Schemas["Prediction"][]; testid: string }) {
  return (
    <div className="predictions" data-testid={testid}>
      <h4>{title}</h4>
      <ol>
        {items.slice(0, 8).map((p) => (
          <li key={p.id}><span className="tok">{showToken(p.token)}</span> <span className="num">{(p.prob * 100).toFixed(1)}%</span></li>
        ))}
      </ol>
    </div>
  );
}

export function Summary({ r, isTrace }: { r: AttributeResponse; isTrace: boolean }) {
  const base = r.baseline_logit_diff;
  const label = isTrace ? "traced value" : r.target.distractor ? `logit(${showToken(String(r.target.target))}) − logit(${showToken(String(r.target.distractor))})` : `logit(${showToken(String(r.target.target))}) − mean logit`;
  return (
    <section className="summary">
      <div className="metric">
        <div className="label">{label} at position {r.position}</div>
        <div className="value" data-testid="logit-diff">{fmt(r.logit_diff)}</div>
        {base !== null && base !== undefined && (
          <div className="baseline">
            before interventions <span data-testid="baseline-logit-diff">{fmt(base)}</span>, change{" "}
            <span data-testid="logit-diff-change" className={r.logit_diff - base < 0 ? "neg" : "pos"}>{signed(r.logit_diff - base)}</span>
          </div>
        )}
        <div className="check" title="direct effects + bias terms reproduce the value">
          sum check: residual {r.sum_check.residual.toExponential(1)} · {r.n_nodes_total} nodes · {r.elapsed_ms.toFixed(0)} ms
        </div>
      </div>
      {!isTrace && <Predictions title={base != null ? "top predictions (now)" : "top predictions"} items={r.top_predictions} testid="predictions" />}
      {!isTrace && r.baseline_top_predictions && <Predictions title="before" items={r.baseline_top_predictions} testid="baseline-predictions" />}
    </section>
  );
}
