// The transcoder attribution graph: token position left to right, layer bottom to top; edge
// width by |weight|, red positive, blue negative. Click a node for its detail panel.
import { useMemo } from "react";
import { Background, Controls, Position, ReactFlow, type Edge, type Node } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { api, unwrap } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { fmt, showToken } from "../format";

const X = 120, H = 22, GAP = 60;

export function GraphView({ model, prompt, target, distractor, onSelect, selected }: {
  model: string; prompt: string; target: string; distractor: string; onSelect: (id: string) => void; selected: string | null;
}) {
  const r = useRequest(prompt && target ? JSON.stringify([model, prompt, target, distractor]) : null, (signal) =>
    unwrap(api.POST("/api/graph", { body: { model, prompt, target, distractor: distractor || null }, signal })));
  const flow = useMemo(() => {
    if (!r.data) return { nodes: [] as Node[], edges: [] as Edge[] };
    const g = r.data;
    const L = Math.max(0, ...g.nodes.map((n) => n.layer ?? 0)) + 1;
    const row = (n: (typeof g.nodes)[number]) => n.kind === "logit" ? L + 1 : n.kind === "embed" || n.kind === "pos_embed" ? 0 : (n.layer ?? 0) + 1;
    // stack the nodes of one (row, position) cell vertically; each row is as tall as its tallest cell
    const cells = new Map<string, number>();
    const order = g.nodes.map((n) => {
      const key = `${row(n)}:${n.position}`;
      const k = cells.get(key) ?? 0;
      cells.set(key, k + 1);
      return k;
    });
    const height = Array.from({ length: L + 2 }, (_, r) => Math.max(1, ...[...cells].filter(([k]) => k.startsWith(`${r}:`)).map(([, c]) => c)));
    const top = height.map((_, r) => height.slice(r + 1).reduce((a, h) => a + h * H + GAP, 0));
    const nodes: Node[] = g.nodes.map((n, i) => ({
      id: n.id, position: { x: (n.position ?? 0) * X, y: top[row(n)] + order[i] * H },
      data: { label: n.kind === "embed" || n.kind === "pos_embed" ? `${n.id} ${showToken(n.token)}` : n.id },
      className: `gnode ${n.kind}` + (n.id === selected ? " selected" : ""),
      sourcePosition: Position.Top, targetPosition: Position.Bottom,
      style: { width: X - 14, fontSize: 10, padding: 1, height: H - 4 },
    }));
    const maxW = Math.max(1e-9, ...g.edges.map((e) => Math.abs(e.weight)));
    const edges: Edge[] = g.edges.map((e) => ({
      id: `${e.source}>${e.target}`, source: e.source, target: e.target,
      style: { stroke: e.weight >= 0 ? "#d33" : "#36c", strokeWidth: 0.5 + 3 * Math.abs(e.weight) / maxW, opacity: 0.6 },
    }));
    return { nodes, edges };
  }, [r.data, selected]);

  return (
    <section className="graph" data-testid="graph-view">
      {r.loading && <p className="muted">building the attribution graph… <button type="button" onClick={r.cancel}>cancel</button></p>}
      {r.error && <p className="error" role="alert">{r.error}</p>}
      {r.data && (
        <p className="muted" data-testid="graph-stats">
          {r.data.nodes.length} nodes, {r.data.edges.length} edges · completeness {fmt(r.data.completeness)} ·
          replacement {fmt(r.data.replacement_score)} · {r.data.n_latents_kept}/{r.data.n_active_latents} active latents kept · {r.data.elapsed_ms.toFixed(0)} ms
        </p>
      )}
      <div className="flow">
        <ReactFlow nodes={flow.nodes} edges={flow.edges} fitView minZoom={0.1} nodesDraggable={false} nodesConnectable={false}
          onNodeClick={(_, n) => onSelect(n.id)} proOptions={{ hideAttribution: false }}>
          <Background />
          <Controls showInteractive={false} />
        </ReactFlow>
      </div>
    </section>
  );
}
