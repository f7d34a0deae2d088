// A node's explanation (with its score), statistics and top-activating examples, from the
// explanations database (absent for nodes or models without one).
import { api, unwrap } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { showToken } from "../format";
import { TokenStrip } from "./TokenStrip";

export function ExplanationPanel({ model, node }: { model: string; node: string }) {
  const r = useRequest(JSON.stringify([model, node]), (signal) =>
    unwrap(api.GET("/api/explanations/{model}/node/{node}", { params: { path: { model, node }, query: { limit: 5 } }, signal })));
  if (r.loading && !r.data) return <p className="muted">loading explanation…</p>;
  if (r.error) return <p className="muted" data-testid="explanation-missing">No explanation: {r.error}</p>;
  const x = r.data;
  if (!x) return null;
  const top = x.examples.top?.items ?? [];
  return (
    <div className="explanation" data-testid="explanation">
      {x.explanations.map((e, i) => (
        <p key={i}><b>{e.text}</b>{e.score != null && <span className="muted"> — {e.explainer}, {e.score_kind ?? "score"} {e.score.toFixed(2)}</span>}</p>
      ))}
      <p className="muted">density {(x.density * 100).toFixed(1)}% · mean {x.mean.toFixed(2)} · max {x.max.toFixed(2)} over {x.n_tokens} tokens</p>
      {x.head_pairs.length > 0 && <p className="muted">attends most: {x.head_pairs.slice(0, 4).map((p) => `${showToken(p.query)}→${showToken(p.key)}`).join(", ")}</p>}
      <h4>top activating examples</h4>
      {top.map((ex) => <TokenStrip key={ex.rank} tokens={ex.tokens} values={ex.acts} scale={x.max} center={ex.center} />)}
    </div>
  );
}
