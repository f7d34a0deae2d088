// The question's answer at a glance: the logit difference (before / after interventions) and
// the top next-token predictions.
import { api, unwrap, type AttributeResponse, type Schemas } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { changeClass, fmt, otherSpacing, showToken, signed } from "../format";

/** Predicted tokens that are a byte of a split character ('�') shown as their bytes ('⟨c3⟩'). */
function useReadable(model: string, items: Schemas["Prediction"][]): Map<number, string> {
  const ids = items.filter((p) => p.token.includes("\ufffd")).map((p) => p.id);
  const r = useRequest(ids.length ? JSON.stringify([model, ids]) : null, (signal) =>
    unwrap(api.POST("/api/tokens/display", { body: { model, ids }, signal })));
  return new Map((r.data?.ids ?? []).map((id, i) => [id, r.data!.display[i]]));
}

function Predictions({ title, items, testid, model }: { title: string; items: Schemas["Prediction"][]; testid: string; model: string }) {
  const readable = useReadable(model, items);
  return (
    <div className="predictions" data-testid={testid}>
      <h4>{title}</h4>
      <ol>
        {items.slice(0, 6).map((p) => (
          <li key={p.id}><span className="tok">{showToken(readable.get(p.id) ?? p.token)}</span> <span className="num">{(p.prob * 100).toFixed(1)}%</span></li>
        ))}
      </ol>
    </div>
  );
}

/** What a traced value is, in words: the quantity, the node and the positions. */
export function tracedQuantity(t: Record<string, unknown>, tokens: string[]): string {
  const at = (p: unknown) => (typeof p === "number" ? `${p} ${showToken(tokens[p])}` : "?");
  if (t.kind === "attention_score")
    return `attention score of head ${t.node}, query ${at(t.query)} → key ${at(t.key)} (traced through the ${t.through})`;
  if (t.kind === "neuron_pre") return `pre-activation of neuron ${t.node} at ${at(t.position)}`;
  if (t.kind === "latent_pre") return `pre-activation of latent ${t.node} at ${at(t.position)}`;
  if (t.kind === "head_output") return `output of head ${t.node} at ${at(t.position)} along ${t.direction}`;
  return `${String(t.kind).replace(/_/g, " ")} of ${t.node ?? "?"}`;
}

export function Summary({ r, isTrace }: { r: AttributeResponse; isTrace: boolean }) {
  const base = r.baseline_logit_diff;
  const tgt = String(r.target.target ?? "");
  const top = r.top_predictions[0]?.token ?? "";
  const spacing = !isTrace && otherSpacing(tgt, top);
  const label = isTrace ? tracedQuantity(r.target as Record<string, unknown>, r.tokens) : r.target.distractor ? `logit(${showToken(String(r.target.target))}) − logit(${showToken(String(r.target.distractor))})` : `logit(${showToken(String(r.target.target))}) − mean logit`;
  return (
    <section className="summary">
      <div className="metric">
        <div className="label" data-testid="metric-label">{isTrace ? label : <>{label} at position {r.position}</>}</div>
        <div className="value" data-testid="logit-diff">{fmt(r.logit_diff)}</div>
        {base !== null && base !== undefined && (
          <div className="baseline">
            before interventions <span data-testid="baseline-logit-diff">{fmt(base)}</span>, change{" "}
            <span data-testid="logit-diff-change" className={changeClass(r.logit_diff - base)}>{signed(r.logit_diff - base)}</span>
          </div>
        )}
        <div className="check" title="direct effects + bias terms reproduce the value">
          sum check: residual {r.sum_check.residual.toExponential(1)} · {r.n_nodes_total} nodes · {r.elapsed_ms.toFixed(0)} ms
        </div>
      </div>
      {spacing && (
        <div className="warn" role="status" data-testid="spacing-warning">
          The model's top prediction is <span className="tok">{showToken(top)}</span>, the same word as your target{" "}
          <span className="tok">{showToken(tgt)}</span> with {top.startsWith(" ") ? "a leading space" : "no leading space"}: you may be asking about the wrong token.
        </div>
      )}
      {!isTrace && <Predictions title={base != null ? "top predictions (now)" : "top predictions"} items={r.top_predictions} testid="predictions" model={r.model} />}
      {!isTrace && r.baseline_top_predictions && <Predictions title="before" items={r.baseline_top_predictions} testid="baseline-predictions" model={r.model} />}
    </section>
  );
}
