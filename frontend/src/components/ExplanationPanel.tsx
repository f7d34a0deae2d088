// A node's top-activating examples first, then its explanations, each with its score: an
// explanation whose held-out score is near chance is never shown as a headline (it is
// flagged instead), and a weak one says so. For latents, which dictionary they belong to.
import { api, unwrap } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { showToken } from "../format";
import { parseNode } from "../nodeId";
import { TokenStrip } from "./TokenStrip";

type Expl = { explainer: string; text: string; score?: number | null; score_kind?: string | null };
export type Quality = "unscored" | "chance" | "weak" | "good";

// AUC-like scores (auc, attention_auc) have chance at 0.5; simulation correlations at 0.
export function quality(e: Expl): Quality {
  if (e.score == null) return "unscored";
  const [chance, weak] = e.score_kind === "simulation_correlation" ? [0.1, 0.3] : [0.6, 0.7];
  return e.score < chance ? "chance" : e.score < weak ? "weak" : "good";
}

const FLAG: Record<Quality, string> = {
  unscored: "unscored",
  chance: "≈ chance: this text does not describe the node",
  weak: "weak",
  good: "",
};

export function ExplanationList({ items }: { items: Expl[] }) {
  const headline = items.findIndex((e) => quality(e) === "good");
  return (
    <div data-testid="explanation-list">
      {items.map((e, i) => {
        const q = quality(e);
        const score = e.score != null ? `${e.score_kind ?? "score"} ${e.score.toFixed(2)}` : "no score";
        return (
          <p key={i} className={q === "good" ? "" : "muted"} data-quality={q}>
            {i === headline ? <b>{e.text}</b> : <span>{e.text}</span>}
            <span className="muted"> — {e.explainer}, {score}{FLAG[q] && <> · <i data-testid="explanation-flag">{FLAG[q]}</i></>}</span>
          </p>
        );
      })}
    </div>
  );
}

function Dictionary({ model, node }: { model: string; node: string }) {
  const n = parseNode(node);
  const latent = n.index !== null && (n.letter === "T" || n.letter === "S" || n.letter === "R");
  const models = useRequest(latent ? "models" : null, (signal) => unwrap(api.GET("/api/models", { signal })));
  if (!latent || !models.data) return null;
  const m = models.data.models.find((x) => x.name === model);
  const d = (m?.dictionaries ?? []).find((x) => x.letter === n.letter && (x.layer === n.layer || x.layers !== undefined));
  if (!d) return null;
  return <p className="muted" data-testid="dictionary">dictionary: {String(d.name)} · {String(d.site)} site · reads {String(d.hook_name)}{d.hook_name_out ? ` → ${String(d.hook_name_out)}` : ""} · {String(d.architecture)} · {String(d.source)}</p>;
}

export function ExplanationPanel({ model, node }: { model: string; node: string }) {
  const r = useRequest(JSON.stringify([model, node]), (signal) =>
    unwrap(api.GET("/api/explanations/{model}/node/{node}", { params: { path: { model, node }, query: { limit: 5 } }, signal })));
  if (r.loading && !r.data) return <p className="muted">loading explanation…</p>;
  if (r.error) return <><Dictionary model={model} node={node} /><p className="muted" data-testid="explanation-missing">No explanation: {r.error}</p></>;
  const x = r.data;
  if (!x) return null;
  const top = x.examples.top?.items ?? [];
  return (
    <div className="explanation" data-testid="explanation">
      <Dictionary model={model} node={node} />
      <p className="muted">density {(x.density * 100).toFixed(1)}% · mean {x.mean.toFixed(2)} · max {x.max.toFixed(2)} over {x.n_tokens} tokens</p>
      {x.head_pairs.length > 0 && <p className="muted">attends most: {x.head_pairs.slice(0, 4).map((p) => `${showToken(p.query)}→${showToken(p.key)}`).join(", ")}</p>}
      <h4>top activating examples</h4>
      {top.map((ex) => <TokenStrip key={ex.rank} tokens={ex.tokens} values={ex.acts} scale={x.max} center={ex.center} />)}
      <h4>explanations</h4>
      <ExplanationList items={x.explanations} />
    </div>
  );
}
