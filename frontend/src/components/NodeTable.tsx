// Every node with activation, direct and total effect (and baseline / change when interventions
// are active, and the exact effects column when asked). AG Grid virtualises rows, so tables of
// thousands of nodes stay smooth. The first click on a column sorts by descending |value|; the
// sort lives in the URL. Per node, the activation is at the question's position while the
// effects are summed over positions: the headers say so.
import { useMemo, useRef } from "react";
import { AgGridReact } from "ag-grid-react";
import type { ColDef, GridApi, SortChangedEvent, ValueFormatterParams } from "ag-grid-community";
import type { NodeRow, Schemas } from "../api/client";
import { diverging, fmt, maxAbs } from "../format";
import { gridTheme } from "../grid";

export type EffectRow = Schemas["EffectRow"];
type Row = NodeRow & { delta_total?: number | null; delta_direct?: number | null; fx_exact?: number | null; fx_estimate?: number | null;
  fx_ig?: number | null; fx_flag?: string | null; fx_ig_flag?: string | null };

const byAbs = (a: number | null | undefined, b: number | null | undefined) => Math.abs(a ?? 0) - Math.abs(b ?? 0);
const num = (p: ValueFormatterParams) => fmt(p.value as number | null);

export function NodeTable(props: {
  rows: NodeRow[]; withBaseline: boolean; search: string; kindFilter: string; selected: string | null;
  onSelect: (id: string) => void; position: number; perPosition: boolean; sort: string; onSort: (sort: string) => void;
  effects?: Map<string, EffectRow> | null; ablation?: string; onCount?: (shown: number) => void;
}) {
  const { rows, withBaseline, search, kindFilter, selected, onSelect, effects } = props;
  const gridApi = useRef<GridApi<Row> | null>(null);
  const data: Row[] = useMemo(
    () => rows.filter((r) => !kindFilter || r.kind === kindFilter).map((r) => {
      const fx = effects?.get(r.id);
      return {
        ...r,
        delta_total: withBaseline && r.total_effect != null && r.baseline_total_effect != null ? r.total_effect - r.baseline_total_effect : null,
        delta_direct: withBaseline && r.direct_effect != null && r.baseline_direct_effect != null ? r.direct_effect - r.baseline_direct_effect : null,
        ...(fx ? { fx_exact: fx.exact, fx_estimate: fx.estimate, fx_ig: fx.ig ?? null, fx_flag: fx.flag ?? null, fx_ig_flag: fx.ig_flag ?? null } : {}),
      };
    }),
    [rows, kindFilter, withBaseline, effects],
  );
  const scale = useMemo(() => ({
    total: maxAbs(data.map((r) => r.total_effect)), direct: maxAbs(data.map((r) => r.direct_effect)),
    act: maxAbs(data.map((r) => r.activation)),
  }), [data]);
  const hasLabel = rows.some((r) => r.label);
  const hasExact = rows.some((r) => r.exact_effect != null);
  const [sortCol, sortDir] = props.sort ? props.sort.split(":") : ["total_effect", "desc"];

  const columns = useMemo<ColDef<Row>[]>(() => {
    const colour = (key: "total" | "direct" | "act") => (p: { value: unknown }) => ({ background: diverging(p.value as number, scale[key]) });
    const metric = (field: keyof Row, header: string, key: "total" | "direct" | "act", extra: Partial<ColDef<Row>> = {}): ColDef<Row> => ({
      field, headerName: header, flex: 1, minWidth: 92, cellClass: "num-cell", filter: "agNumberColumnFilter",
      filterParams: { defaultOption: "greaterThan", maxNumConditions: 2 },
      valueFormatter: num, comparator: byAbs, cellStyle: colour(key), sortingOrder: ["desc", "asc", null],
      sort: field === sortCol ? (sortDir as "asc" | "desc") : null, ...extra,
    });
    const sum = props.perPosition ? "" : " Σpos";
    const cols: ColDef<Row>[] = [
      { field: "id", headerName: "node", width: 112, pinned: "left", filter: "agTextColumnFilter", cellClass: "mono",
        filterParams: { defaultOption: "contains" } },
      { field: "kind", headerName: "kind", width: 84, filter: "agTextColumnFilter" },
      { field: "layer", headerName: "layer", width: 70, filter: "agNumberColumnFilter", filterParams: { defaultOption: "equals" } },
      { field: "position", headerName: "pos", width: 62, filter: "agNumberColumnFilter", filterParams: { defaultOption: "equals" } },
      metric("activation", props.perPosition ? "activation" : `activation @${props.position}`, "act",
        { headerTooltip: props.perPosition ? "activation at this row's position" : `activation at the question's position ${props.position}; the effects are summed over every position` }),
      metric("direct_effect", "direct" + sum, "direct", { headerTooltip: "direct effect through the readout" + (props.perPosition ? "" : ", summed over positions") }),
      metric("total_effect", "total" + sum, "total", { headerTooltip: "act×grad estimate of the total effect" + (props.perPosition ? "" : ", summed over positions") }),
    ];
    if (withBaseline) {
      cols.push(metric("baseline_total_effect", "total before", "total"), metric("delta_total", "Δ total", "total"),
        metric("baseline_direct_effect", "direct before", "direct"), metric("delta_direct", "Δ direct", "direct"));
    }
    if (effects) {
      const flagged = (flag: keyof Row) => ({ "cell-flag": (p: { data?: Row }) => !!p.data?.[flag] });
      cols.push(
        metric("fx_exact", `exact (${props.ablation})`, "total", { headerTooltip: "value − value with this node ablated (one batched forward)" }),
        metric("fx_estimate", "estimate", "total", { cellClassRules: flagged("fx_flag"), headerTooltip: "act×grad estimate of the same change; ⚠ where it disagrees with exact in sign or by more than half",
          valueFormatter: (p) => fmt(p.value as number | null) + (p.data?.fx_flag ? " ⚠" : "") }),
        metric("fx_ig", "IG", "total", { cellClassRules: flagged("fx_ig_flag"), headerTooltip: "integrated gradients (see README); ⚠ where it disagrees with exact",
          valueFormatter: (p) => fmt(p.value as number | null) + (p.data?.fx_ig_flag ? " ⚠" : "") }),
      );
    }
    if (hasExact) cols.push(metric("exact_effect", "exact (zero-abl.)", "total"));
    if (hasLabel) cols.push({ field: "label", headerName: "ground truth", width: 220, filter: "agTextColumnFilter" });
    return cols;
  }, [withBaseline, hasLabel, hasExact, scale, effects, props.ablation, props.perPosition, props.position, sortCol, sortDir]);

  const count = () => props.onCount?.(gridApi.current?.getDisplayedRowCount() ?? data.length);
  const onSortChanged = (e: SortChangedEvent<Row>) => {
    if (e.source === "api" || e.source === "gridOptionsChanged") return;  // our own column definitions, not a click
    const c = (e.columns ?? []).find((col) => col.getSort());
    props.onSort(c ? `${c.getColId()}:${c.getSort()}` : "");
  };

  return (
    <div className="grid" data-testid="node-table">
      <AgGridReact<Row>
        theme={gridTheme}
        rowData={data}
        columnDefs={columns}
        quickFilterText={search}
        getRowId={(p) => p.data.id}
        onGridReady={(e) => { gridApi.current = e.api; count(); }}
        onModelUpdated={count}
        onSortChanged={onSortChanged}
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
