// The debugger page: question on top, answer and node table on the left, the selected node on
// the right. All state lives in the URL (state/url.ts); requests supersede each other.
import { lazy, Suspense, useEffect, useMemo } from "react";
import { api, unwrap, type AttributeResponse, type Intervention, type TraceTarget } from "./api/client";
import { useRequest } from "./hooks/useRequest";
import { useInvestigation } from "./state/useInvestigation";
import { Breadcrumb } from "./components/Breadcrumb";
import { Interventions } from "./components/Interventions";
import { NodeDetail } from "./components/NodeDetail";
import { NodeTable } from "./components/NodeTable";
import { QueryBar } from "./components/QueryBar";
import { ShareButton } from "./components/ShareButton";
import { Summary } from "./components/Summary";

// The graph (React Flow) and compare views load on first use, keeping the first page small.
const GraphView = lazy(() => import("./components/GraphView").then((m) => ({ default: m.GraphView })));
const DatasetView = lazy(() => import("./components/DatasetView").then((m) => ({ default: m.DatasetView })));
const CompareView = lazy(() => import("./components/CompareView").then((m) => ({ default: m.CompareView })));

const KINDS = ["", "head", "neuron", "transcoder", "sae", "attn", "mlp", "embed", "pos_embed", "transcoder_error", "sae_error"];

export function App() {
  const { state: s, update, loadingShare, shareError } = useInvestigation();
  const models = useRequest("models", (signal) => unwrap(api.GET("/api/models", { signal })));
  const trace = s.traces.at(-1) ?? null;
  const common = {
    model: s.model, prompt: s.prompt, interventions: s.interventions,
    counterfactual_prompt: s.counterfactual_prompt || null, top_k: s.top_k === 0 ? null : s.top_k,
    granularity: s.granularity, mlp_basis: s.mlp_basis, attn_basis: s.attn_basis,
  };
  const ready = !loadingShare && !!s.prompt && (!!s.target || !!trace);
  const key = ready ? JSON.stringify([common, s.target, s.distractor, trace]) : null;
  const result = useRequest<AttributeResponse>(key, (signal) => trace
    ? unwrap(api.POST("/api/trace", { body: { ...common, target: trace }, signal }))
    : unwrap(api.POST("/api/attribute", { body: { ...common, target: s.target, distractor: s.distractor || null }, signal })));
  const r = result.data;
  const rowById = useMemo(() => new Map((r?.nodes ?? []).map((n) => [n.id, n])), [r]);
  useEffect(() => {  // Escape closes the node panel (unless typing in a field)
    const onKey = (e: KeyboardEvent) => {
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
      if (e.key === "Escape" && !typing) update({ node: null });
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [update]);
  const addIntervention = (iv: Intervention) => update({ interventions: [...s.interventions, { ...iv, enabled: true }] });
  const pushTrace = (t: TraceTarget) => update({ traces: [...s.traces, t], node: null, view: "table" });

  return (
    <div className="app">
      <header className="top">
        <h1>Circuit Debugger</h1>
        <nav className="views" role="tablist" aria-label="view">
          {(["table", "graph", "compare", "dataset"] as const).map((v) => (
            <button key={v} type="button" role="tab" aria-selected={s.view === v} className={s.view === v ? "on" : ""}
              data-testid={`view-${v}`} onClick={() => update({ view: v })}>{v}</button>
          ))}
        </nav>
        <ShareButton state={s} />
      </header>
      {shareError && <div className="error banner" role="alert">{shareError}</div>}
      {models.data?.failed && Object.keys(models.data.failed).length > 0 && (
        <div className="warn banner">not loaded: {Object.entries(models.data.failed).map(([k, v]) => `${k} (${v})`).join("; ")}</div>
      )}
      <QueryBar value={{ model: s.model, prompt: s.prompt, target: s.target, distractor: s.distractor }} models={models.data?.models ?? []}
        busy={result.loading} onCancel={result.cancel}
        onRun={(d) => update({ ...d, traces: [], node: null })} />
      <main className={s.node ? "with-detail" : ""}>
        <div className={"primary-pane" + (result.loading ? " stale" : "")} aria-busy={result.loading}>
          <Suspense fallback={<p className="muted">loading view…</p>}>
          {s.view === "dataset" ? (
            <DatasetView model={s.model} dataset={s.dataset} circuit={s.circuit} onDataset={(dataset) => update({ dataset })}
              onCircuit={(circuit) => update({ circuit })} onSelect={(id) => update({ node: id })} />
          ) : s.view === "compare" ? (
            <CompareView q={{ model: s.model, target: s.target, distractor: s.distractor, mlp_basis: s.mlp_basis, attn_basis: s.attn_basis }}
              left={s.prompt} right={s.compare_prompt} onRight={(p) => update({ compare_prompt: p })} onSelect={(id) => update({ node: id })} />
          ) : s.view === "graph" ? (
            <GraphView model={s.model} prompt={s.prompt} target={s.target} distractor={s.distractor}
              selected={s.node} onSelect={(id) => update({ node: id })} interventions={s.interventions}
              graph={s.graph} onGraph={(graph) => update({ graph })} />
          ) : (
            <>
              <Breadcrumb traces={s.traces} onGo={(depth) => update({ traces: s.traces.slice(0, depth), node: null })} />
              {result.loading && <div className="progress" role="status" data-testid="loading">running… <button type="button" onClick={result.cancel}>cancel</button></div>}
              {result.error && result.error !== "cancelled" && <div className="error" role="alert" data-testid="run-error">{result.error}</div>}
              {!ready && !loadingShare && <p className="muted">Type a prompt and a target token, then Run.</p>}
              {r && <Summary r={r} isTrace={!!trace} />}
              <Interventions items={s.interventions} onChange={(interventions) => update({ interventions })}
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
                  <select value={s.mlp_basis} onChange={(e) => update({ mlp_basis: e.target.value as typeof s.mlp_basis })} aria-label="MLP basis">
                    <option value="neurons">MLP neurons</option><option value="transcoders">transcoder latents</option>
                  </select>
                  <select value={s.attn_basis} onChange={(e) => update({ attn_basis: e.target.value as typeof s.attn_basis })} aria-label="attention basis">
                    <option value="heads">heads</option><option value="saes">attention SAE latents</option>
                  </select>
                  <select value={s.top_k} onChange={(e) => update({ top_k: Number(e.target.value) })} aria-label="rows">
                    {[20, 100, 500, 0].map((k) => <option key={k} value={k}>{k ? `top ${k} per metric` : "all nodes"}</option>)}
                  </select>
                  <span className="muted">{r.nodes.length} of {r.n_nodes_total} nodes</span>
                </section>
              )}
              {r && <NodeTable rows={r.nodes} withBaseline={r.baseline_logit_diff != null} search={s.search} kindFilter={s.kind_filter}
                selected={s.node} onSelect={(id) => update({ node: id })} />}
            </>
          )}
          </Suspense>
        </div>
        {s.node && (
          <NodeDetail key={s.node} model={s.model} prompt={s.prompt} id={s.node} row={rowById.get(s.node)} tokens={r?.tokens ?? []}
            onIntervene={addIntervention} onTrace={pushTrace} onClose={() => update({ node: null })} />
        )}
      </main>
    </div>
  );
}
