// Two prompts side by side (e.g. clean vs corrupted IOI): the same question on each, and every
// node's total effect on both with the difference.
import { useMemo } from "react";
import { AgGridReact } from "ag-grid-react";
import type { ColDef } from "ag-grid-community";
import { api, unwrap, type AttributeResponse } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { diverging, fmt, maxAbs } from "../format";
import { gridTheme } from "../grid";
import { basesOf, type Bases } from "../state/bases";

type Q = { model: string; target: string; distractor: string } & Bases;
type Row = { id: string; kind: string; left: number | null; right: number | null; diff: number | null };

function useAttribution(q: Q, prompt: string) {
  return useRequest<AttributeResponse>(prompt && q.target ? JSON.stringify([q, prompt]) : null, (signal) =>
    unwrap(api.POST("/api/attribute", { body: { model: q.model, target: q.target, ...basesOf(q), prompt, distractor: q.distractor || null, top_k: null }, signal })));
}

export function CompareView({ q, left, right, onRight, onSelect }: { q: Q; left: string; right: string; onRight: (p: string) => void; onSelect: (id: string) => void }) {
  const a = useAttribution(q, left);
  const b = useAttribution(q, right);
  const rows = useMemo<Row[]>(() => {
    if (!a.data || !b.data) return [];
    const other = new Map(b.data.nodes.map((n) => [n.id, n.total_effect ?? null]));
    return a.data.nodes.map((n) => {
      const l = n.total_effect ?? null, r = other.get(n.id) ?? null;
      return { id: n.id, kind: n.kind, left: l, right: r, diff: l !== null && r !== null ? l - r : null };
    });
  }, [a.data, b.data]);
  const s = maxAbs(rows.flatMap((r) => [r.left, r.right]));
  const colour = (p: { value: unknown }) => ({ background: diverging(p.value as number, s) });
  const cols: ColDef<Row>[] = [
    { field: "id", headerName: "node", width: 120, cellClass: "mono" }, { field: "kind", width: 100 },
    { field: "left", headerName: "total (left)", valueFormatter: (p) => fmt(p.value), cellStyle: colour, width: 120 },
    { field: "right", headerName: "total (right)", valueFormatter: (p) => fmt(p.value), cellStyle: colour, width: 120 },
    { field: "diff", headerName: "left − right", valueFormatter: (p) => fmt(p.value), cellStyle: colour, width: 120, sort: "desc",
      comparator: (x, y) => Math.abs(x ?? 0) - Math.abs(y ?? 0) },
  ];
  return (
    <section className="compare" data-testid="compare-view">
      <div className="pair">
        <div><h4>left</h4><p className="mono">{left}</p><div className="value" data-testid="compare-left">{a.error ?? fmt(a.data?.logit_diff)}</div></div>
        <div><h4>right</h4>
          <input value={right} onChange={(e) => onRight(e.target.value)} data-testid="compare-prompt" placeholder="a second prompt, e.g. the corrupted one" />
          <div className="value" data-testid="compare-right">{b.error ?? fmt(b.data?.logit_diff)}</div></div>
      </div>
      <div className="grid">
        <AgGridReact<Row> theme={gridTheme} rowData={rows} columnDefs={cols}
          getRowId={(p) => p.data.id} onRowClicked={(e) => e.data && onSelect(e.data.id)} />
      </div>
    </section>
  );
}
