// The attribution graph: token position left to right, layer bottom to top; edge width by
// |weight|, red positive, blue negative. Thresholds re-prune on the server (cached per value);
// hover shows a node's strongest upstream and downstream paths with their weights; click
// selects (the view refits on it and its neighbours); arrow keys walk along edges; nodes can be
// pinned into a subgraph, grouped into labelled supernodes and annotated — all kept in the URL.
import { useEffect, useMemo, useState } from "react";
import { Background, Controls, Position, ReactFlow, ReactFlowProvider, useReactFlow, type Edge, type Node } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { api, unwrap, type InvestigationState, type Schemas } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { fmt } from "../format";
import { layout, nodeText, step, strongestPaths, subgraph, type GEdge } from "./graphModel";
import { GraphPanel } from "./GraphPanel";

export type GraphState = Schemas["GraphState"];
type Full = Required<Pick<GraphState, "node_threshold" | "edge_threshold" | "pruning" | "attn" | "pins" | "groups" | "notes" | "subgraph">>;
export const graphDefaults = (): Full => ({ node_threshold: 0.8, edge_threshold: 0.98, pruning: "circuit-tracer", attn: "ov", pins: [], groups: [], notes: {}, subgraph: false });
const W = 140, H = 22;

export function GraphView(props: {
  model: string; prompt: string; target: string; distractor: string; onSelect: (id: string) => void; selected: string | null;
  interventions?: InvestigationState["interventions"]; graph?: GraphState | null; onGraph?: (g: GraphState) => void;
}) {
  return <ReactFlowProvider><Inner {...props} /></ReactFlowProvider>;
}

function Inner({ model, prompt, target, distractor, onSelect, selected, interventions = [], graph, onGraph }: Parameters<typeof GraphView>[0]) {
  const gs: Full = { ...graphDefaults(), ...(graph ?? {}) } as Full;
  const set = (patch: Partial<Full>) => onGraph?.({ ...gs, ...patch });
  // sliders move freely; the request follows 250 ms after the last move
  const [nt, setNt] = useState(gs.node_threshold), [et, setEt] = useState(gs.edge_threshold);
  useEffect(() => { setNt(gs.node_threshold); setEt(gs.edge_threshold); }, [gs.node_threshold, gs.edge_threshold]);
  useEffect(() => {
    if (nt === gs.node_threshold && et === gs.edge_threshold) return;
    const t = setTimeout(() => set({ node_threshold: nt, edge_threshold: et }), 250);
    return () => clearTimeout(t);
  });
  const ivs = interventions.filter((i) => i.enabled !== false);
  const body = { model, prompt, target, distractor: distractor || null, node_threshold: gs.node_threshold, edge_threshold: gs.edge_threshold,
    pruning: gs.pruning, attn: gs.attn === "heads" ? "heads" as const : null, interventions: ivs };
  const r = useRequest(prompt && target ? JSON.stringify(body) : null, (signal) => unwrap(api.POST("/api/graph", { body, signal })));
  const [hover, setHover] = useState<string | null>(null);
  const g = r.data;
  const view = useMemo(() => {
    if (!g) return null;
    const edges: GEdge[] = g.edges;
    return gs.subgraph ? subgraph(g.nodes, edges, gs.pins, gs.groups) : { nodes: g.nodes, edges };
  }, [g, gs.subgraph, JSON.stringify(gs.pins), JSON.stringify(gs.groups)]);
  const lit = useMemo(() => (view && hover ? strongestPaths(view.edges, hover) : new Set<string>()), [view, hover]);
  const flowNodes = useMemo(() => {
    if (!view || !g) return [] as Node[];
    const L = g.n_layers ?? Math.max(0, ...g.nodes.map((n) => n.layer ?? 0)) + 1;
    const pos = layout(view.nodes, L, W + 10, H + 4);
    const nodes: Node[] = view.nodes.map((n) => ({
      id: n.id, position: pos[n.id], data: { label: nodeText(n) },
      className: `gnode ${n.kind}` + (n.id === selected ? " selected" : "") + (gs.pins.includes(n.id) ? " pinned" : ""),
      sourcePosition: Position.Top, targetPosition: Position.Bottom,
      style: { width: W, fontSize: 11, padding: 1, height: H, overflow: "hidden", whiteSpace: "nowrap", textOverflow: "ellipsis" },
      ariaLabel: n.id,
    }));
    return nodes;
  }, [view, g, selected, JSON.stringify(gs.pins)]);
  const flowEdges = useMemo(() => {
    if (!view) return [] as Edge[];
    const maxW = Math.max(1e-9, ...view.edges.map((e) => Math.abs(e.weight)));
    const edges: Edge[] = view.edges.map((e) => {
      const key = `${e.source}>${e.target}`, on = lit.has(key);
      return { id: key, source: e.source, target: e.target, label: on ? fmt(e.weight) : undefined,
        className: on ? "lit" : undefined, zIndex: on ? 10 : 0, interactionWidth: 0, focusable: false,
        style: { stroke: e.weight >= 0 ? "#d33" : "#36c", strokeWidth: 0.5 + 3 * Math.abs(e.weight) / maxW, opacity: hover ? (on ? 1 : 0.12) : 0.55 } };
    });
    return edges;
  }, [view, hover, lit]);
  // hover lights nodes through a style rule, not the nodes' props: re-rendering the node under
  // the pointer between mouse down and up would swallow the click
  const litCss = useMemo(() => {
    const ids = new Set([...lit].flatMap((k) => k.split(">")));
    if (hover) ids.add(hover);
    return [...ids].map((id) => `.react-flow__node[data-id=${JSON.stringify(id)}]`).join(",") + (ids.size ? "{box-shadow:0 0 0 2px #f90}" : "");
  }, [lit, hover]);

  const rf = useReactFlow();
  useEffect(() => {  // a new graph (another model, prompt or question) is fitted whole; ReactFlow's own fitView is on mount only
    if (!g || selected) return;
    const t = setTimeout(() => rf.fitView({ duration: 200 }), 30);
    return () => clearTimeout(t);
  }, [g]);
  useEffect(() => {  // refit on the selection and its direct neighbours
    if (!selected || !view) return;
    const near = new Set([selected, ...view.edges.filter((e) => e.source === selected || e.target === selected).flatMap((e) => [e.source, e.target])]);
    const t = setTimeout(() => rf.fitView({ nodes: [...near].map((id) => ({ id })), duration: 200, maxZoom: 1.5 }), 30);
    return () => clearTimeout(t);
  }, [selected, view]);

  const onKey = (e: React.KeyboardEvent) => {
    if (!selected || !view || (e.target as HTMLElement).closest("input,textarea")) return;
    const next = step(view.edges, selected, e.key);
    if (next) { e.preventDefault(); onSelect(next); }
  };
  const selNode = g?.nodes.find((n) => n.id === selected) ?? null;

  return (
    <section className="graph" data-testid="graph-view" tabIndex={0} onKeyDown={onKey}>
      <div className="graph-controls">
        <label>node threshold <input type="range" min={0.05} max={1} step={0.01} value={nt} data-testid="node-threshold"
          onChange={(e) => setNt(Number(e.target.value))} /> {nt.toFixed(2)}</label>
        <label>edge threshold <input type="range" min={0.05} max={1} step={0.01} value={et} data-testid="edge-threshold"
          onChange={(e) => setEt(Number(e.target.value))} /> {et.toFixed(2)}</label>
        <label>pruning <select value={gs.pruning} onChange={(e) => set({ pruning: e.target.value as Full["pruning"] })}>
          <option value="circuit-tracer">circuit-tracer</option><option value="ours">ours</option></select></label>
        <label>attention <select value={gs.attn} data-testid="graph-attn" onChange={(e) => set({ attn: e.target.value as Full["attn"] })}>
          <option value="ov">through OV (frozen)</option><option value="heads">heads as nodes</option></select></label>
        <label><input type="checkbox" checked={gs.subgraph} data-testid="subgraph-toggle" onChange={(e) => set({ subgraph: e.target.checked })} /> pinned subgraph ({gs.pins.length})</label>
      </div>
      {r.loading && <p className="muted">building the attribution graph… <button type="button" onClick={r.cancel}>cancel</button></p>}
      {r.error && <p className="error" role="alert">{r.error}</p>}
      {g && (g.interventions ?? []).length > 0 && (
        <p className="notice" data-testid="graph-intervened">Graph of the intervened model ({(g.interventions ?? []).join(", ")}). Frozen: {g.frozen}.</p>
      )}
      {g && (
        <p className="muted" data-testid="graph-stats">
          {view?.nodes.length} nodes, {view?.edges.length} edges (of {g.n_nodes_total} / {g.n_edges_total}) · {g.pruning} pruning · completeness {fmt(g.completeness)} ·
          replacement {fmt(g.replacement_score)} · {g.n_latents_kept}/{g.n_active_latents} active latents kept · {g.elapsed_ms.toFixed(0)} ms
        </p>
      )}
      <style>{litCss}</style>
      <div className="graph-body">
        <div className="flow">
          <ReactFlow nodes={flowNodes} edges={flowEdges} fitView minZoom={0.05} nodesDraggable={false} nodesConnectable={false}
            onNodeClick={(_, n) => onSelect(n.id)} onNodeMouseEnter={(_, n) => setHover(n.id)} onNodeMouseLeave={() => setHover(null)}
            proOptions={{ hideAttribution: false }}>
            <Background />
            <Controls showInteractive={false} />
          </ReactFlow>
        </div>
        {g && selected && view && (
          <GraphPanel id={selected} node={selNode} edges={view.edges} qk={(g.qk ?? []).find((q) => q.node === selected) ?? null}
            state={gs} onState={set} onSelect={onSelect} />
        )}
      </div>
    </section>
  );
}
