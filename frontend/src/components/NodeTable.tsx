// Every node with activation, direct and total effect (and baseline / change when interventions
// are active). AG Grid virtualises rows, so tables of thousands of nodes stay smooth.
import { useMemo } from "react";
import { AgGridReact } from "ag-grid-react";
import type { ColDef, ValueFormatterParams } from "ag-grid-community";
import type { NodeRow } from "../api/client";
import { diverging, fmt, maxAbs } from "../format";
import { gridTheme } from "../grid";


type Row = NodeRow & { delta_total?: number | null; delta_direct?: number | null };

const byAbs = (a: number | null | undefined, b: number | null | undefined) => Math.abs(a ?? 0) - Math.abs(b ?? 0);
const num = (p: ValueFormatterParams) => fmt(p.value as number | null);

export function NodeTable(props: {
  rows: NodeRow[]; withBaseline: boolean; search: string; kindFilter: string; selected: string | null;
  onSelect: (id: string) => void;
}) {
  const { rows, withBaseline, search, kindFilter, selected, onSelect } = props;
  const data: Row[] = useMemo(
    () => rows.filter((r) => !kindFilter || r.kind === kindFilter).map((r) => ({
      ...r,
      delta_total: withBaseline && r.total_effect != null && r.baseline_total_effect != null ? r.total_effect - r.baseline_total_effect : null,
      delta_direct: withBaseline && r.direct_effect != null && r.baseline_direct_effect != null ? r.direct_effect - r.baseline_direct_effect : null,
    })),
    [rows, kindFilter, withBaseline],
  );
  const scale = useMemo(() => ({
    total: maxAbs(data.map((r) => r.total_effect)), direct: maxAbs(data.map((r) => r.direct_effect)),
    act: maxAbs(data.map((r) => r.activation)),
  }), [data]);
  const hasLabel = rows.some((r) => r.label);
  const hasExact = rows.some((r) => r.exact_effect != null);

  const columns = useMemo<ColDef<Row>[]>(() => {
    const colour = (key: "total" | "direct" | "act") => (p: { value: unknown }) => ({ background: diverging(p.value as number, scale[key]) });
    const metric = (field: keyof Row, header: string, key: "total" | "direct" | "act", extra: Partial<ColDef<Row>> = {}): ColDef<Row> => ({
      field, headerName: header, width: 108, type: "numericColumn", filter: "agNumberColumnFilter",
      valueFormatter: num, comparator: byAbs, cellStyle: colour(key), ...extra,
    });
    const cols: ColDef<Row>[] = [
      { field: "id", headerName: "node", width: 120, pinned: "left", filter: "agTextColumnFilter", cellClass: "mono" },
      { field: "kind", width: 92, filter: "agTextColumnFilter" },
      { field: "layer", width: 70, filter: "agNumberColumnFilter" },
      { field: "position", headerName: "pos", width: 64, filter: "agNumberColumnFilter" },
      metric("activation", "activation", "act", { comparator: undefined }),
      metric("direct_effect", "direct", "direct"),
      metric("total_effect", "total", "total", { sort: "desc" }),
    ];
    if (withBaseline) {
      cols.push(metric("baseline_total_effect", "total (before)", "total"), metric("delta_total", "Δ total", "total"),
        metric("baseline_direct_effect", "direct (before)", "direct"), metric("delta_direct", "Δ direct", "direct"));
    }
    if (hasExact) cols.push(metric("exact_effect", "exact (zero-abl.)", "total"));
    if (hasLabel) cols.push({ field: "label", headerName: "ground truth", width: 220, filter: "agTextColumnFilter" });
    return cols;
  }, [withBaseline, hasLabel, hasExact, scale]);

  return (
    <div className="grid" data-testid="node-table">
      <AgGridReact<Row>
        theme={gridTheme}
        rowData={data}
        columnDefs={columns}
        quickFilterText={search}
        getRowId={(p) => p.data.id}
        onRowClicked={(e) => e.data && onSelect(e.data.id)}
        onCellKeyDown={(e) => {
          const k = (e.event as KeyboardEvent | null)?.key;
          if (k === "Enter" && e.data) onSelect(e.data.id);
        }}
        rowClassRules={{ "row-selected": (p) => p.data?.id === selected }}
        animateRows={false}
      />
    </div>
  );
}
