// Pure helpers of the graph view: strongest paths through a node, sorted edge lists, pinned
// subgraphs with supernodes (edges between groups are sums), keyboard steps along edges, and
// the layout (token position → x, layer → y).
export type GEdge = { source: string; target: string; weight: number };
export type GNodeLite = { id: string; kind: string; layer?: number | null; position?: number | null; label?: string | null; token?: string | null };
export type Group = { label: string; ids: string[] };

export function incoming(edges: GEdge[], id: string): GEdge[] {
  return edges.filter((e) => e.target === id).sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight));
}

export function outgoing(edges: GEdge[], id: string): GEdge[] {
  return edges.filter((e) => e.source === id).sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight));
}

/** The strongest path upstream (follow the largest |weight| input) and downstream (largest
 * output) from a node, as edge keys "source>target". */
export function strongestPaths(edges: GEdge[], id: string, maxSteps = 64): Set<string> {
  const out = new Set<string>();
  for (const dir of ["up", "down"] as const) {
    let cur = id;
    const seen = new Set([id]);
    for (let i = 0; i < maxSteps; i++) {
      const next = (dir === "up" ? incoming(edges, cur) : outgoing(edges, cur))[0];
      if (!next) break;
      out.add(`${next.source}>${next.target}`);
      cur = dir === "up" ? next.source : next.target;
      if (seen.has(cur)) break;
      seen.add(cur);
    }
  }
  return out;
}

/** Keyboard: ArrowUp → the strongest output's target, ArrowDown → the strongest input's source
 * (`rank` picks the next strongest instead). */
export function step(edges: GEdge[], id: string, key: string, rank = 0): string | null {
  if (key === "ArrowUp") return outgoing(edges, id)[rank]?.target ?? null;
  if (key === "ArrowDown") return incoming(edges, id)[rank]?.source ?? null;
  return null;
}

/** Pinned subgraph: only pinned nodes; each group becomes one supernode `group:<label>` and the
 * edges between (super)nodes are the sums of the edges between their members. */
export function subgraph(nodes: GNodeLite[], edges: GEdge[], pins: string[], groups: Group[]) {
  const member = new Map<string, string>();
  for (const g of groups) for (const id of g.ids) member.set(id, `group:${g.label}`);
  const keep = new Set([...pins, ...groups.flatMap((g) => g.ids)]);
  const rep = (id: string) => member.get(id) ?? id;
  const outNodes: GNodeLite[] = [];
  const seen = new Set<string>();
  for (const n of nodes) {
    if (!keep.has(n.id)) continue;
    const r = rep(n.id);
    if (seen.has(r)) continue;
    seen.add(r);
    if (r === n.id) outNodes.push(n);
    else {
      const g = groups.find((x) => `group:${x.label}` === r)!;
      const ms = nodes.filter((m) => g.ids.includes(m.id));
      outNodes.push({ id: r, kind: "supernode", label: g.label, layer: Math.max(...ms.map((m) => m.layer ?? -1)),
        position: Math.max(...ms.map((m) => m.position ?? 0)) });
    }
  }
  const sums = new Map<string, number>();
  for (const e of edges) {
    if (!keep.has(e.source) || !keep.has(e.target)) continue;
    const s = rep(e.source), t = rep(e.target);
    if (s === t) continue;
    sums.set(`${s}>${t}`, (sums.get(`${s}>${t}`) ?? 0) + e.weight);
  }
  const outEdges: GEdge[] = [...sums].map(([k, w]) => {
    const [source, target] = k.split(">");
    return { source, target, weight: w };
  });
  return { nodes: outNodes, edges: outEdges };
}

export const ROW = (n: GNodeLite, nLayers: number) =>
  n.kind === "logit" ? nLayers + 1 : n.kind === "embed" || n.kind === "pos_embed" ? 0 : (n.layer ?? 0) + 1;

/** Position → column (positions without nodes take no space, so labels stay legible when the
 * graph is fitted), row (embeddings, layers, target) → band; the nodes of one cell stack within
 * their band. Returns {id: {x, y}}. */
export function layout(nodes: GNodeLite[], nLayers: number, X = 150, H = 26, GAP = 50) {
  const cells = new Map<string, number>();
  const order = nodes.map((n) => {
    const key = `${ROW(n, nLayers)}:${n.position ?? 0}`;
    const k = cells.get(key) ?? 0;
    cells.set(key, k + 1);
    return k;
  });
  const rows = nLayers + 2;
  const height = Array.from({ length: rows }, (_, r) => Math.max(1, ...[...cells].filter(([k]) => k.startsWith(`${r}:`)).map(([, c]) => c)));
  const top = height.map((_, r) => height.slice(r + 1).reduce((a, h) => a + h * H + GAP, 0));
  const cols = [...new Set(nodes.map((n) => n.position ?? 0))].sort((a, b) => a - b);
  const col = new Map(cols.map((p, i) => [p, i]));
  const pos: Record<string, { x: number; y: number }> = {};
  nodes.forEach((n, i) => { pos[n.id] = { x: col.get(n.position ?? 0)! * X, y: top[ROW(n, nLayers)] + order[i] * H }; });
  return pos;
}

export function nodeText(n: GNodeLite): string {
  const base = n.id.split("@")[0];
  if (n.kind === "embed" || n.kind === "pos_embed") return `${base} ${JSON.stringify(n.token ?? "")}`;
  if (n.kind === "logit") return `→ ${n.token ?? "target"}`;
  if (n.label) return `${base} ${n.label}`;
  return base;
}
