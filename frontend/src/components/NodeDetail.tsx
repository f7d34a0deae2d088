// The selected node: its numbers now and before interventions (fetched for this node, so they
// are there whatever the table lists, whichever basis), what it looks at (clean and after the
// interventions) or where it fires, its direct effect by source position, what it writes, its
// explanation, and the actions (ablate, patch, scale, steer, trace upstream).
import { useEffect, useState } from "react";
import { api, unwrap, type Intervention, type NodeRow, type Schemas, type TraceTarget } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { fmt, humanize, showToken } from "../format";
import { isHead, isLatent, isNeuron, parseNode } from "../nodeId";
import { basesOf, type Bases } from "../state/bases";
import { Counterfactual } from "./Counterfactual";
import { ExplanationPanel } from "./ExplanationPanel";
import { Heatmap } from "./Heatmap";
import { TokenStrip } from "./TokenStrip";

export type Question = {
  model: string; prompt: string; target: string; distractor: string; trace: TraceTarget | null;
  interventions: Intervention[]; counterfactual_prompt: string;
} & Bases;

type Props = {
  q: Question; id: string; row?: NodeRow; tokens: string[]; meanAblation: boolean;
  onIntervene: (iv: Intervention) => void; onPatch: (iv: Intervention, counterfactual: string) => void;
  onTrace: (t: TraceTarget) => void; onClose: () => void;
};

function Lens({ model, node, prompt, position }: { model: string; node: string; prompt?: string; position?: number | null }) {
  const r = useRequest(JSON.stringify([model, node, prompt, position]), (signal) =>
    unwrap(api.POST("/api/logit-lens", { body: { model, node, prompt: prompt ?? null, position: position ?? null, k: 8 }, signal })));
  if (r.error) return <p className="muted">logit lens: {humanize(r.error)}</p>;
  if (!r.data) return null;
  return (
    <div className="lens" data-testid="logit-lens">
      <h4>logit lens <small className="muted">({r.data.source})</small></h4>
      <div className="cols">
        <div>promotes {r.data.promoted.map((t) => <span key={t.id} className="tok pos" title={t.value.toFixed(3)}>{showToken(t.token)}</span>)}</div>
        <div>suppresses {r.data.suppressed.map((t) => <span key={t.id} className="tok neg" title={t.value.toFixed(3)}>{showToken(t.token)}</span>)}</div>
      </div>
    </div>
  );
}

const active = (ivs: Intervention[]) => ivs.filter((i) => i.enabled !== false);

function Attention({ q, layer, head, selectedKey, onPick, onLook, onDefaultKey }: {
  q: Question; layer: number; head: number; selectedKey: number; onPick: (qp: number, k: number) => void;
  onLook: (k: number) => void; onDefaultKey: (k: number) => void;
}) {
  const { model, prompt } = q;
  const r = useRequest(JSON.stringify([model, prompt, layer, head]), (signal) =>
    unwrap(api.POST("/api/attention", { body: { model, prompt, layer, head }, signal })));
  const ivs = active(q.interventions);
  const after = useRequest(ivs.length ? JSON.stringify([model, prompt, layer, head, ivs, q.counterfactual_prompt]) : null, (signal) =>
    unwrap(api.POST("/api/attention/intervened", { body: { model, prompt, layer, head, interventions: ivs,
      counterfactual_prompt: q.counterfactual_prompt || null }, signal })));
  const pattern = r.data?.heads[`L${layer}.H${head}`];
  useEffect(() => {
    if (!pattern) return;
    const row = pattern[pattern.length - 1];
    onDefaultKey(row.indexOf(Math.max(...row)));
  }, [pattern]); // eslint-disable-line react-hooks/exhaustive-deps
  if (r.error) return <p className="error">{humanize(r.error)}</p>;
  const afterPattern = after.data?.heads[`L${layer}.H${head}`];
  return pattern ? (
    <div className="patterns">
      <div><h4>attention pattern <small className="muted">(clean run)</small></h4>
        <Heatmap pattern={pattern} tokens={r.data!.tokens} onPick={onPick} onHover={(_, k) => onLook(k)} selectedKey={selectedKey} /></div>
      {ivs.length > 0 && (
        <div><h4>after interventions</h4>
          {after.error ? <p className="error">{humanize(after.error)}</p> : afterPattern ?
            <Heatmap pattern={afterPattern} tokens={after.data!.tokens} onPick={onPick} selectedKey={selectedKey} testid="attention-heatmap-after" /> :
            <p className="muted">loading…</p>}
        </div>
      )}
    </div>
  ) : <p className="muted">loading attention…</p>;
}

function Activations({ model, prompt, node }: { model: string; prompt: string; node: string }) {
  const r = useRequest(JSON.stringify([model, prompt, node]), (signal) =>
    unwrap(api.POST("/api/activations", { body: { model, prompt, node }, signal })));
  if (r.error) return <p className="muted">activations: {humanize(r.error)}</p>;
  return r.data ? <><h4>activation per token <small className="muted">(clean run)</small></h4><TokenStrip tokens={r.data.tokens} values={r.data.values} testid="token-activations" /></> : null;
}

type ValuesResult = { data: Schemas["NodeValuesResponse"] | null; error: string | null; loading: boolean };

function useNodeValues(q: Question, id: string): ValuesResult {
  const ivs = active(q.interventions);
  const body = {
    model: q.model, prompt: q.prompt, node: id, interventions: ivs, counterfactual_prompt: q.counterfactual_prompt || null,
    ...basesOf(q),
    ...(q.trace ? { trace: q.trace } : { target: q.target, distractor: q.distractor || null }),
  };
  return useRequest(q.prompt && (q.target || q.trace) ? JSON.stringify(body) : null, (signal) =>
    unwrap(api.POST("/api/node-values", { body, signal })));
}

function Values({ r }: { r: ValuesResult }) {
  if (r.error) return <p className="muted" data-testid="detail-values-missing">numbers: {humanize(r.error)}</p>;
  const row = r.data?.row;
  const has = row?.baseline_total_effect != null;
  const line = (label: string, testid: string, now?: number | null, before?: number | null) => (
    <tr><th>{label}</th><td data-testid={testid}>{row ? fmt(now) : "…"}</td>{has && <td data-testid={`${testid}-before`}>{fmt(before)}</td>}</tr>
  );
  return (
    <table className={"kv" + (r.loading ? " stale" : "")} data-testid="detail-values">
      <thead><tr><th /><th>{has ? "now" : "value"}</th>{has && <th>before interventions</th>}</tr></thead>
      <tbody>
        <tr><th>kind</th><td>{row?.kind ?? "…"}</td></tr>
        {line(`activation${row?.position == null && r.data ? ` @${r.data.position}` : ""}`, "detail-activation", row?.activation, row?.baseline_activation)}
        {line("direct effect", "detail-direct", row?.direct_effect, row?.baseline_direct_effect)}
        {line("total effect", "detail-total", row?.total_effect, row?.baseline_total_effect)}
        {row?.label && <tr><th>ground truth</th><td data-testid="ground-truth">{row.label}</td></tr>}
      </tbody>
    </table>
  );
}

export function NodeDetail({ q, id, row, tokens, meanAblation, onIntervene, onPatch, onTrace, onClose }: Props) {
  const n = parseNode(id);
  const [factor, setFactor] = useState("0.5");
  const [steer, setSteer] = useState("5");
  const [patching, setPatching] = useState(false);
  const last = Math.max(0, tokens.length - 1);
  const [key, setKey] = useState<number | null>(null);
  const k = key ?? 0;
  const pos = n.position ?? undefined;
  const traceHead = (through: "query" | "key", qp: number | null = null, kk: number = k) =>
    onTrace({ kind: "attention", node: n.base, query: qp, key: kk, through });
  const values = useNodeValues(q, id);
  const bySource = values.data?.row.direct_by_source ?? row?.direct_by_source;

  return (
    <aside className="detail" data-testid="node-detail" aria-label={`node ${id}`}>
      <header>
        <h2 className="mono">{id}</h2>
        <button type="button" aria-label="close node panel" onClick={onClose}>✕</button>
      </header>
      <Values r={values} />
      {bySource && bySource.length > 0 && (
        <div data-testid="direct-by-source">
          <h4>direct effect by source position <small className="muted">(what each attended token contributes)</small></h4>
          <TokenStrip tokens={tokens.slice(0, bySource.length)} values={bySource} />
        </div>
      )}
      <div className="actions" role="group" aria-label="interventions on this node">
        <button type="button" data-testid="ablate-zero" onClick={() => onIntervene({ node: id, op: "zero" })}>Zero-ablate</button>
        <button type="button" data-testid="ablate-mean" disabled={!meanAblation} title={meanAblation ? "" : "this model has no reference corpus"}
          onClick={() => onIntervene({ node: id, op: "mean" })}>Mean-ablate</button>
        <button type="button" data-testid="patch" onClick={() => setPatching(true)} title="from a counterfactual prompt">Patch…</button>
        <span className="inline">
          <input aria-label="scale factor" value={factor} onChange={(e) => setFactor(e.target.value)} size={4} />
          <button type="button" data-testid="scale" disabled={!Number.isFinite(Number(factor))}
            onClick={() => onIntervene({ node: id, op: "scale", value: Number(factor) })}>Scale</button>
        </span>
        {(isNeuron(n) || isLatent(n)) && (
          <span className="inline">
            <input aria-label="steering value" value={steer} onChange={(e) => setSteer(e.target.value)} size={4} />
            <button type="button" data-testid="steer" disabled={!Number.isFinite(Number(steer))}
              onClick={() => onIntervene({ node: id, op: "add", vector: [Number(steer)] })}>Steer (+)</button>
          </span>
        )}
      </div>
      {patching && (
        <Counterfactual model={q.model} prompt={q.prompt} value={q.counterfactual_prompt} applyLabel={`Patch ${id}`}
          onApply={(cf) => { onPatch({ node: id, op: "patch" }, cf); setPatching(false); }} />
      )}
      <div className="actions" role="group" aria-label="trace upstream">
        {isNeuron(n) && <button type="button" data-testid="trace" onClick={() => onTrace({ kind: "neuron", node: n.base, position: pos ?? null })}>Trace pre-activation ↑</button>}
        {isLatent(n) && <button type="button" data-testid="trace" onClick={() => onTrace({ kind: "latent", node: n.base, position: pos ?? null })}>Trace latent ↑</button>}
        {isHead(n) && (
          <>
            <label className="inline">key <select value={k} onChange={(e) => setKey(Number(e.target.value))} aria-label="key position">
              {tokens.slice(0, (pos ?? last) + 1).map((t, i) => <option key={i} value={i}>{i} {showToken(t)}</option>)}
            </select></label>
            <button type="button" data-testid="trace" onClick={() => traceHead("query", pos ?? null)}>Why attend? (via query) ↑</button>
            <button type="button" onClick={() => traceHead("key", pos ?? null)}>(via key) ↑</button>
          </>
        )}
      </div>
      {isHead(n) && <Attention q={q} layer={n.layer!} head={n.index!} selectedKey={k}
        onDefaultKey={(kk) => setKey((cur) => cur ?? kk)} onLook={setKey} onPick={(qp, kk) => { setKey(kk); traceHead("query", qp, kk); }} />}
      {(isNeuron(n) || isLatent(n)) && <Activations model={q.model} prompt={q.prompt} node={n.base} />}
      <Lens model={q.model} node={n.base} prompt={isNeuron(n) || isLatent(n) ? undefined : q.prompt} position={pos} />
      {(isHead(n) || isNeuron(n) || isLatent(n)) && <><h3>explanation</h3><ExplanationPanel model={q.model} node={n.base} /></>}
    </aside>
  );
}
