// The selected node: its numbers, what it looks at or where it fires, what it writes, its
// explanation and ground truth, and the actions (ablate, patch, scale, steer, trace upstream).
import { useState } from "react";
import { api, unwrap, type Intervention, type NodeRow, type TraceTarget } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { fmt, showToken } from "../format";
import { isHead, isLatent, isNeuron, parseNode } from "../nodeId";
import { ExplanationPanel } from "./ExplanationPanel";
import { Heatmap } from "./Heatmap";
import { TokenStrip } from "./TokenStrip";

type Props = {
  model: string; prompt: string; id: string; row?: NodeRow; tokens: string[];
  onIntervene: (iv: Intervention) => void; onTrace: (t: TraceTarget) => void; onClose: () => void;
};

function Lens({ model, node, prompt, position }: { model: string; node: string; prompt?: string; position?: number | null }) {
  const r = useRequest(JSON.stringify([model, node, prompt, position]), (signal) =>
    unwrap(api.POST("/api/logit-lens", { body: { model, node, prompt: prompt ?? null, position: position ?? null, k: 8 }, signal })));
  if (r.error) return <p className="muted">logit lens: {r.error}</p>;
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

function Attention({ model, prompt, layer, head, onPick }: { model: string; prompt: string; layer: number; head: number; onPick: (q: number, k: number) => void }) {
  const r = useRequest(JSON.stringify([model, prompt, layer, head]), (signal) =>
    unwrap(api.POST("/api/attention", { body: { model, prompt, layer, head }, signal })));
  if (r.error) return <p className="error">{r.error}</p>;
  const pattern = r.data?.heads[`L${layer}.H${head}`];
  return pattern ? <Heatmap pattern={pattern} tokens={r.data!.tokens} onPick={onPick} /> : <p className="muted">loading attention…</p>;
}

function Activations({ model, prompt, node }: { model: string; prompt: string; node: string }) {
  const r = useRequest(JSON.stringify([model, prompt, node]), (signal) =>
    unwrap(api.POST("/api/activations", { body: { model, prompt, node }, signal })));
  if (r.error) return <p className="error">{r.error}</p>;
  return r.data ? <><h4>activation per token <small className="muted">(clean run)</small></h4><TokenStrip tokens={r.data.tokens} values={r.data.values} testid="token-activations" /></> : null;
}

export function NodeDetail({ model, prompt, id, row, tokens, onIntervene, onTrace, onClose }: Props) {
  const n = parseNode(id);
  const [factor, setFactor] = useState("0.5");
  const [steer, setSteer] = useState("5");
  const last = Math.max(0, tokens.length - 1);
  const [key, setKey] = useState<number>(0);
  const pos = n.position ?? undefined;
  const traceHead = (through: "query" | "key", q: number | null = null, k: number = key) =>
    onTrace({ kind: "attention", node: n.base, query: q, key: k, through });

  return (
    <aside className="detail" data-testid="node-detail" aria-label={`node ${id}`}>
      <header>
        <h2 className="mono">{id}</h2>
        <button type="button" aria-label="close node panel" onClick={onClose}>✕</button>
      </header>
      {row && (
        <table className="kv">
          <tbody>
            <tr><th>kind</th><td>{row.kind}</td></tr>
            <tr><th>activation</th><td data-testid="detail-activation">{fmt(row.activation)}</td></tr>
            <tr><th>direct effect</th><td data-testid="detail-direct">{fmt(row.direct_effect)}</td></tr>
            <tr><th>total effect</th><td data-testid="detail-total">{fmt(row.total_effect)}</td></tr>
            {row.exact_effect != null && <tr><th>exact (zero-ablation)</th><td>{fmt(row.exact_effect)}</td></tr>}
            {row.label && <tr><th>ground truth</th><td data-testid="ground-truth">{row.label}</td></tr>}
          </tbody>
        </table>
      )}
      <div className="actions" role="group" aria-label="interventions on this node">
        <button type="button" data-testid="ablate-zero" onClick={() => onIntervene({ node: id, op: "zero" })}>Zero-ablate</button>
        <button type="button" data-testid="ablate-mean" onClick={() => onIntervene({ node: id, op: "mean" })}>Mean-ablate</button>
        <button type="button" data-testid="patch" onClick={() => onIntervene({ node: id, op: "patch" })} title="from the counterfactual prompt">Patch</button>
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
      <div className="actions" role="group" aria-label="trace upstream">
        {isNeuron(n) && <button type="button" data-testid="trace" onClick={() => onTrace({ kind: "neuron", node: n.base, position: pos ?? null })}>Trace pre-activation ↑</button>}
        {isLatent(n) && <button type="button" data-testid="trace" onClick={() => onTrace({ kind: "latent", node: n.base, position: pos ?? null })}>Trace latent ↑</button>}
        {isHead(n) && (
          <>
            <label className="inline">key <select value={key} onChange={(e) => setKey(Number(e.target.value))} aria-label="key position">
              {tokens.slice(0, (pos ?? last) + 1).map((t, i) => <option key={i} value={i}>{i} {showToken(t)}</option>)}
            </select></label>
            <button type="button" data-testid="trace" onClick={() => traceHead("query", pos ?? null)}>Why attend? (via query) ↑</button>
            <button type="button" onClick={() => traceHead("key", pos ?? null)}>(via key) ↑</button>
          </>
        )}
      </div>
      {isHead(n) && <><h4>attention pattern <small className="muted">(clean run)</small></h4>
        <Attention model={model} prompt={prompt} layer={n.layer!} head={n.index!} onPick={(q, k) => { setKey(k); traceHead("query", q, k); }} /></>}
      {(isNeuron(n) || isLatent(n)) && <Activations model={model} prompt={prompt} node={n.base} />}
      <Lens model={model} node={n.base} prompt={isNeuron(n) ? undefined : prompt} position={pos} />
      {(isHead(n) || isNeuron(n) || isLatent(n)) && <><h3>explanation</h3><ExplanationPanel model={model} node={n.base} /></>}
    </aside>
  );
}
