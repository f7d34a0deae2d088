// The debugger page: question on top, answer and node table on the left, the selected node on
// the right (resizable, collapsible). All state lives in the URL (state/url.ts); requests
// supersede each other. Results always belong to the question on screen: when the inputs
// change, the old answer is dimmed and says what changed, until Run.
import { lazy, Suspense, useCallback, useEffect, useMemo, useState } from "react";
import { api, unwrap, type AttributeResponse, type Intervention, type TraceTarget } from "./api/client";
import { useRequest } from "./hooks/useRequest";
import { useInvestigation } from "./state/useInvestigation";
import { humanize } from "./format";
import { Breadcrumb } from "./components/Breadcrumb";
import { Generate } from "./components/Generate";
import { Interventions } from "./components/Interventions";
import { NodeDetail, type Question } from "./components/NodeDetail";
import { NodeTable, type EffectRow } from "./components/NodeTable";
import { QueryBar, type Draft } from "./components/QueryBar";
import { ShareButton } from "./components/ShareButton";
import { Summary } from "./components/Summary";
import { basesOf } from "./state/bases";

// The graph (React Flow) and compare views load on first use, keeping the first page small.
const GraphView = lazy(() => import("./components/GraphView").then((m) => ({ default: m.GraphView })));
const DatasetView = lazy(() => import("./components/DatasetView").then((m) => ({ default: m.DatasetView })));
const CompareView = lazy(() => import("./components/CompareView").then((m) => ({ default: m.CompareView })));

const KINDS = ["", "head", "neuron", "transcoder", "sae", "attn", "mlp", "embed", "pos_embed", "transcoder_error", "sae_error", "resid_sae", "resid_sae_error"];
type FieldError = { field: string; message: string };

export function App() {
  const { state: s, update, loadingShare, shareError } = useInvestigation();
  const models = useRequest("models", (signal) => unwrap(api.GET("/api/models", { signal })));
  const info = models.data?.models.find((m) => m.name === s.model);
  const sup = info?.supports;
  const trace = s.traces.at(-1) ?? null;
  const filtered = !!s.kind_filter || !!s.search;  // filters apply to every node, never to a top-k cut
  const common = {
    model: s.model, prompt: s.prompt, interventions: s.interventions,
    counterfactual_prompt: s.counterfactual_prompt || null, top_k: s.top_k === 0 || filtered ? null : s.top_k,
    granularity: s.granularity, mlp_basis: s.mlp_basis, attn_basis: s.attn_basis, resid_basis: s.resid_basis ?? "none",
  };
  const ready = !loadingShare && !!s.prompt && (!!s.target || !!trace);
  const key = ready ? JSON.stringify([common, s.target, s.distractor, trace]) : null;
  const result = useRequest<AttributeResponse>(key, (signal) => trace
    ? unwrap(api.POST("/api/trace", { body: { ...common, target: trace }, signal }))
    : unwrap(api.POST("/api/attribute", { body: { ...common, target: s.target, distractor: s.distractor || null }, signal })));
  const r = result.data;
  const fxBody = { model: s.model, prompt: s.prompt, interventions: s.interventions.filter((i) => i.enabled !== false),
    counterfactual_prompt: s.counterfactual_prompt || null, ablation: (s.effects || "zero") as "zero" | "mean",
    neurons: s.effects_neurons, ig_steps: s.ig_steps, ...(trace ? { trace } : { target: s.target, distractor: s.distractor || null }) };
  const fx = useRequest(ready && s.effects && s.granularity === "component" ? JSON.stringify(fxBody) : null, (signal) =>
    unwrap(api.POST("/api/effects", { body: fxBody, signal })));
  const fxRows = useMemo(() => (fx.data ? new Map<string, EffectRow>(fx.data.rows.map((x) => [x.id, x])) : null), [fx.data]);
  const rowById = useMemo(() => new Map((r?.nodes ?? []).map((n) => [n.id, n])), [r]);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [fieldErrors, setFieldErrors] = useState<FieldError[]>([]);
  const [shown, setShown] = useState<number | null>(null);
  const [panelWidth, setPanelWidth] = useState(420);
  const [collapsed, setCollapsed] = useState(false);
  const onDraft = useCallback((d: Draft, errors: FieldError[]) => { setDraft(d); setFieldErrors(errors); }, []);
  useEffect(() => {  // Escape closes the node panel (unless typing in a field)
    const onKey = (e: KeyboardEvent) => {
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
      if (e.key === "Escape" && !typing) update({ node: null });
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [update]);
  const addIntervention = (iv: Intervention) => update({ interventions: [...s.interventions, { ...iv, enabled: true }] });
  const pushTrace = (t: TraceTarget) => update({ traces: [...s.traces, t], view: "table" });

  // what differs between the inputs on screen and the question the results answer
  const changed = draft ? (["model", "prompt", "target", "distractor"] as const).filter((k) => draft[k] !== s[k]) : [];
  const runError = result.error && result.error !== "cancelled" ? humanize(result.error) : null;
  const stale = changed.length > 0 || fieldErrors.length > 0 || !!runError;
  const errors: { testid: string; text: string }[] = [
    ...fieldErrors.map((e) => ({ testid: `${e.field === "prompt" ? "prompt" : "target"}-error`, text: `${e.field}: ${e.message}` })),
    ...(runError && !fieldErrors.length ? [{ testid: "run-error", text: runError }] : []),
    ...(shareError ? [{ testid: "share-error", text: shareError }] : []),
  ];
  const question: Question = { model: s.model, prompt: s.prompt, target: s.target, distractor: s.distractor, trace,
    interventions: s.interventions, counterfactual_prompt: s.counterfactual_prompt, ...basesOf(s) };
  const views = (["table", "graph", "compare", "dataset"] as const).filter((v) =>
    v === "graph" ? sup?.graph !== false || s.view === "graph" : true);
  const withPanel = !!s.node && !collapsed;

  return (
    <div className="app">
      <header className="top">
        <h1>Circuit Debugger</h1>
        <nav className="views" role="tablist" aria-label="view">
          {views.map((v) => (
            <button key={v} type="button" role="tab" aria-selected={s.view === v} className={s.view === v ? "on" : ""}
              data-testid={`view-${v}`} onClick={() => update({ view: v })}>{v}</button>
          ))}
        </nav>
        <ShareButton state={s} />
      </header>
      {models.data?.failed && Object.keys(models.data.failed).length > 0 && (
        <div className="warn banner">not loaded: {Object.entries(models.data.failed).map(([k, v]) => `${k} (${v})`).join("; ")}</div>
      )}
      <QueryBar value={{ model: s.model, prompt: s.prompt, target: s.target, distractor: s.distractor }} models={models.data?.models ?? []}
        busy={result.loading} onCancel={result.cancel} onDraft={onDraft}
        onRun={(d) => update({ ...d, traces: [], node: null })} />
      {errors.length > 0 && (
        <div className="errors" role="alert" data-testid="errors">
          {errors.map((e, i) => <div key={i} className="error" data-testid={e.testid}>{e.text}</div>)}
        </div>
      )}
      <main className={withPanel ? "with-detail" : ""} style={withPanel ? { gridTemplateColumns: `minmax(0, 1fr) 6px ${panelWidth}px` } : undefined}>
        <div className={"primary-pane" + (result.loading || stale ? " stale" : "")} aria-busy={result.loading}>
          <Suspense fallback={<p className="muted">loading view…</p>}>
          {s.view === "dataset" ? (
            <DatasetView model={s.model} dataset={s.dataset} circuit={s.circuit} onDataset={(dataset) => update({ dataset, circuit_eval: "" })}
              onCircuit={(circuit) => update({ circuit, circuit_eval: "" })} onSelect={(id) => update({ node: id })}
              promptSets={sup?.prompt_sets} circuitEval={s.circuit_eval} onCircuitEval={(circuit_eval) => update({ circuit_eval })}
              immediateRows={models.data?.immediate_rows} />
          ) : s.view === "compare" ? (
            <CompareView q={{ model: s.model, target: s.target, distractor: s.distractor, ...basesOf(s) }}
              left={s.prompt} right={s.compare_prompt || s.counterfactual_prompt} onRight={(p) => update({ compare_prompt: p })} onSelect={(id) => update({ node: id })} />
          ) : s.view === "graph" ? (
            <GraphView model={s.model} prompt={s.prompt} target={s.target} distractor={s.distractor}
              selected={s.node} onSelect={(id) => update({ node: id })} interventions={s.interventions}
              graph={s.graph} onGraph={(graph) => update({ graph })} />
          ) : (
            <>
              <Breadcrumb traces={s.traces} onGo={(depth) => update({ traces: s.traces.slice(0, depth) })} />
              {result.loading && <div className="progress" role="status" data-testid="loading">running… <button type="button" onClick={result.cancel}>cancel</button></div>}
              {stale && r && (
                <div className="stale-note" role="status" data-testid="stale">
                  {changed.length > 0 ? <>These results are for the previous question: {changed.map((k) => k === "distractor" ? "distractor B" : k === "target" ? "target A" : k).join(", ")} changed{draft && !draft.prompt ? " (the prompt is empty)" : ""}. Run to update.</>
                    : "These results are for the last question that ran; the current one failed (see the error above)."}
                </div>
              )}
              {!ready && !loadingShare && <p className="muted">Type a prompt and a target token, then Run.</p>}
              {r && <Summary r={r} isTrace={!!trace} />}
              <Interventions items={s.interventions} onChange={(interventions) => update({ interventions })} model={s.model} prompt={s.prompt}
                counterfactual={s.counterfactual_prompt} onCounterfactual={(counterfactual_prompt) => update({ counterfactual_prompt })} />
              {r && (
                <section className="table-controls">
                  <input type="search" placeholder="search node id…" value={s.search} aria-label="search nodes" data-testid="search"
                    onChange={(e) => update({ search: e.target.value })} />
                  <select value={s.kind_filter} onChange={(e) => update({ kind_filter: e.target.value })} aria-label="node type" data-testid="kind-filter">
                    {KINDS.map((k) => <option key={k} value={k}>{k || "all types"}</option>)}
                  </select>
                  <select value={s.granularity} onChange={(e) => update({ granularity: e.target.value as typeof s.granularity })} aria-label="granularity">
                    <option value="component">per node</option><option value="position">per node and position</option>
                  </select>
                  {(sup?.transcoders || s.mlp_basis === "transcoders") && (
                    <select value={s.mlp_basis} onChange={(e) => update({ mlp_basis: e.target.value as typeof s.mlp_basis })} aria-label="MLP basis">
                      <option value="neurons">MLP neurons</option><option value="transcoders">transcoder latents</option>
                    </select>)}
                  {(sup?.saes || s.attn_basis === "saes") && (
                    <select value={s.attn_basis} onChange={(e) => update({ attn_basis: e.target.value as typeof s.attn_basis })} aria-label="attention basis">
                      <option value="heads">heads</option><option value="saes">attention SAE latents</option>
                    </select>)}
                  {(Object.keys(info?.resid_saes ?? {}).length > 0 || s.resid_basis === "saes") && (
                    <select value={s.resid_basis ?? "none"} onChange={(e) => update({ resid_basis: e.target.value as "none" | "saes" })}
                      aria-label="residual basis" data-testid="resid-basis"
                      title="SAE latents: the residual-stream SAEs are spliced in; their latents (L{l}.R{i}) and error (L{l}.RERR) replace everything upstream of them">
                      <option value="none">residual: none</option><option value="saes">residual: SAE latents</option>
                    </select>)}
                  <select value={s.top_k} onChange={(e) => update({ top_k: Number(e.target.value) })} aria-label="rows" disabled={filtered}
                    title={filtered ? "a type filter or search looks at every node" : ""}>
                    {[20, 100, 500, 0].map((k) => <option key={k} value={k}>{k ? `top ${k} per metric` : "all nodes"}</option>)}
                  </select>
                  <select value={s.effects} onChange={(e) => update({ effects: e.target.value as typeof s.effects })} aria-label="exact effects" data-testid="effects"
                    disabled={s.granularity !== "component"}>
                    <option value="">no exact effects</option><option value="zero">exact: zero-ablation</option>
                    {sup?.mean_ablation !== false && <option value="mean">exact: mean-ablation</option>}
                  </select>
                  {s.effects && <label className="inline"><input type="checkbox" checked={s.effects_neurons} onChange={(e) => update({ effects_neurons: e.target.checked })} /> neurons too</label>}
                  <span className="muted" data-testid="row-count">
                    {shown ?? r.nodes.length} shown · {r.nodes.length} {filtered || s.top_k === 0 ? "nodes" : `rows (top ${s.top_k} per metric)`} of {r.n_nodes_total}
                  </span>
                  {fx.loading && <span className="muted">computing exact effects…</span>}
                  {fx.error && <span className="error">exact effects: {humanize(fx.error)}</span>}
                  {fx.data && <span className="muted" data-testid="effects-summary">
                    heads: Spearman(estimate, exact) {fx.data.spearman_heads.estimate?.toFixed(2) ?? "–"}
                    {fx.data.spearman_heads.ig != null && `, (IG, exact) ${fx.data.spearman_heads.ig.toFixed(2)}`};
                    {" "}{fx.data.sign_disagreements.estimate} sign disagreements · {fx.data.elapsed_ms.toFixed(0)} ms</span>}
                </section>
              )}
              {r && <NodeTable rows={r.nodes} withBaseline={r.baseline_logit_diff != null} search={s.search} kindFilter={s.kind_filter}
                selected={s.node} onSelect={(id) => update({ node: id })} position={r.position} perPosition={s.granularity === "position"}
                sort={s.sort} onSort={(sort) => update({ sort })} effects={fxRows} ablation={s.effects} onCount={setShown} />}
              {r && !trace && sup?.generation !== false && (
                <Generate model={s.model} prompt={s.prompt} interventions={s.interventions} counterfactual={s.counterfactual_prompt} />
              )}
            </>
          )}
          </Suspense>
        </div>
        {withPanel && (
          <div className="splitter" role="separator" aria-orientation="vertical" aria-label="resize the node panel" data-testid="splitter"
            onPointerDown={(e) => {
              const startX = e.clientX, startW = panelWidth;
              const move = (ev: PointerEvent) => setPanelWidth(Math.max(280, Math.min(window.innerWidth - 420, startW + startX - ev.clientX)));
              const up = () => { window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up); };
              window.addEventListener("pointermove", move);
              window.addEventListener("pointerup", up);
            }} />
        )}
        {s.node && collapsed && (
          <button type="button" className="panel-tab" onClick={() => setCollapsed(false)} data-testid="panel-expand">◀ {s.node}</button>
        )}
        {withPanel && (
          <div className="detail-wrap">
            <button type="button" className="collapse" onClick={() => setCollapsed(true)} aria-label="collapse the node panel" data-testid="panel-collapse">▶</button>
            <NodeDetail key={s.node} q={question} id={s.node!} row={rowById.get(s.node!)} tokens={r?.tokens ?? []}
              meanAblation={sup?.mean_ablation !== false}
              onIntervene={addIntervention}
              onPatch={(iv, cf) => update({ counterfactual_prompt: cf, interventions: [...s.interventions, { ...iv, enabled: true }] })}
              onTrace={pushTrace} onClose={() => update({ node: null })} />
          </div>
        )}
      </main>
    </div>
  );
}
