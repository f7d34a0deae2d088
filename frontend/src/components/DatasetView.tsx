// Dataset mode: the question over a whole prompt set (mean ± spread per node, per slot, per
// prompt), and circuit evaluation: faithfulness, completeness and minimality of the nodes the
// user selects. The question over a small set (at most the server's `immediate_rows`) is asked
// of the immediate route; a larger one runs as a server job (progress, cancel, its id in the
// address as #attribute-job=ID), as does any set for which the address names a job. A model the
// server cannot run jobs for is always asked immediately. Both show the same result component.
import { useEffect, useMemo, useRef, useState } from "react";
import { AgGridReact } from "ag-grid-react";
import type { ColDef } from "ag-grid-community";
import { api, unwrap, type InvestigationState, type Schemas } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { useJob } from "../hooks/useJob";
import { covers, isFinal } from "../api/jobs";
import { datasetRoute, type LinkedJob } from "../api/datasetRoute";
import { JobProgress } from "./JobProgress";
import { diverging, fmt, maxAbs } from "../format";
import { gridTheme } from "../grid";
import { CircuitPanel } from "./CircuitPanel";

type Ref = NonNullable<InvestigationState["dataset"]>;
type Node = Schemas["DatasetNode"];

export const specOf = (ref: Ref): Schemas["PromptSetSpec"] => (ref.id ? { id: ref.id } : { builtin: ref.builtin ?? "ioi", n: ref.n, seed: ref.seed });

const postAttribute = (body: Schemas["DatasetAttributeRequest"]) => unwrap(api.POST("/api/jobs/dataset/attribute", { body }));

/** The question over the set: its route (api/datasetRoute.ts) and, as a job, the address's job
 * when it asked this question, else a new one (after a short pause, so typing a row count does
 * not submit a job per keystroke; a superseded job still running is cancelled). */
function useAttributionJob(body: Schemas["DatasetAttributeRequest"], usable: boolean, rows: number | null | undefined, immediateRows?: number) {
  const job = useJob("attribute-job", postAttribute);
  const key = JSON.stringify(body);
  const submitted = useRef<string | null>(null);
  const resuming = !!job.id && !job.job && !job.error;
  const matches = !!job.job && covers(job.job.request, body);
  const linked: LinkedJob = !job.id ? "none" : resuming ? "loading" : matches ? "matches" : "other";
  const route = datasetRoute({ rows, immediateRows, linked, unavailable: job.unavailable });
  const wanted = usable && route === "job";
  useEffect(() => {
    if (!wanted || resuming || matches || submitted.current === key) return;
    const t = setTimeout(() => {
      submitted.current = key;
      if (job.job && !isFinal(job.job)) job.cancel();
      job.submit(body);
    }, 300);
    return () => clearTimeout(t);
  }, [key, wanted, resuming, matches]); // eslint-disable-line react-hooks/exhaustive-deps
  const running = !!job.job && !isFinal(job.job);
  useEffect(() => { // the set became small: its job, still running for the old one, is not needed
    if (route === "immediate" && running && !matches && !job.job?.cancel) job.cancel();
  }, [route, running, matches]); // eslint-disable-line react-hooks/exhaustive-deps
  const rerun = () => { submitted.current = key; job.submit(body); };
  return { ...job, matches, route, rerun };
}

const BUILTIN_LABELS: Record<string, string> = { ioi: "IOI (held-out templates, ABBA/BABA)", greater_than: "greater-than", induction: "induction" };

function SetPicker({ model, value, onChange, promptSets }: { model: string; value: Ref; onChange: (r: Ref) => void; promptSets?: string[] }) {
  const [text, setText] = useState("");
  const [format, setFormat] = useState<"jsonl" | "csv">("jsonl");
  const [error, setError] = useState<string | null>(null);
  const store = async () => {
    setError(null);
    try {
      const r = await unwrap(api.POST("/api/promptsets", { body: { model, spec: { text, format } } }));
      onChange({ id: r.id ?? null, builtin: null, n: r.rows.length, seed: 0 });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <div className="set-picker">
      <label className="inline">prompt set
        <select value={value.id ? "stored" : value.builtin ?? "ioi"} data-testid="dataset-builtin"
          onChange={(e) => e.target.value !== "stored" && onChange({ builtin: e.target.value as Ref["builtin"], id: null, n: value.n, seed: value.seed })}>
          {(promptSets ?? Object.keys(BUILTIN_LABELS)).map((b) => <option key={b} value={b}>{BUILTIN_LABELS[b] ?? b}</option>)}
          {!value.id && promptSets && !promptSets.includes(value.builtin ?? "ioi") && <option value={value.builtin ?? "ioi"}>none ready-made for this model: paste your own</option>}
          {value.id && <option value="stored">stored {value.id}</option>}
        </select>
      </label>
      {!value.id && <>
        <label className="inline">rows <input type="number" min={1} max={500} value={value.n} size={4}
          onChange={(e) => onChange({ ...value, n: Math.max(1, Math.min(500, Number(e.target.value) || 1)) })} /></label>
        <label className="inline">seed <input type="number" min={0} value={value.seed} size={3}
          onChange={(e) => onChange({ ...value, seed: Math.max(0, Number(e.target.value) || 0) })} /></label>
      </>}
      <details>
        <summary>paste or upload your own (JSONL or CSV)</summary>
        <textarea rows={4} value={text} onChange={(e) => setText(e.target.value)} data-testid="dataset-paste"
          placeholder={'{"prompt": "When Mary and John went to the store, John gave a drink to", "target": " Mary", "distractor": " John"}'} />
        <input type="file" accept=".jsonl,.json,.csv,.txt" aria-label="upload a JSONL or CSV file" onChange={async (e) => {
          const f = e.target.files?.[0];
          if (!f) return;
          setText(await f.text());
          setFormat(f.name.toLowerCase().endsWith(".csv") ? "csv" : "jsonl");
        }} />
        <select value={format} onChange={(e) => setFormat(e.target.value as "jsonl" | "csv")} aria-label="format">
          <option value="jsonl">JSONL</option><option value="csv">CSV (prompt,target,distractor,counterfactual)</option>
        </select>
        <button type="button" onClick={store} disabled={!text.trim()}>Store and use</button>
        {error && <span className="error" role="alert">{error}</span>}
      </details>
    </div>
  );
}

export function DatasetView(props: {
  model: string; dataset: Ref | null; circuit: string[]; onDataset: (r: Ref) => void; onCircuit: (c: string[]) => void; onSelect: (id: string) => void;
  promptSets?: string[]; circuitEval?: string; onCircuitEval?: (ablation: "" | "mean" | "resample") => void;
  /** the server's line between the immediate routes and jobs (GET /api/models); undefined until known */
  immediateRows?: number;
}) {
  const ref = props.dataset ?? { builtin: (props.promptSets?.[0] ?? "ioi") as Ref["builtin"], id: null, n: 100, seed: 0 };
  const spec = specOf(ref);
  const [topK, setTopK] = useState(5);
  // a ready-made set the model cannot read is never sent (the UI offers only what applies)
  const usable = !!ref.id || !props.promptSets || props.promptSets.includes(ref.builtin ?? "ioi");
  const body = { model: props.model, promptset: spec, top_k: 100, drill: 8 };
  const job = useAttributionJob(body, usable, ref.n, props.immediateRows);
  // a small set (or a model the server runs no jobs for): the immediate route, no worker to wait for
  const r = useRequest(usable && job.route === "immediate" ? JSON.stringify([props.model, spec]) : null, (signal) =>
    unwrap(api.POST("/api/dataset/attribute", { body, signal })));
  const data = job.matches && job.job?.status === "done" ? (job.job.result as unknown as Schemas["DatasetAttributeResponse"]) : r.data;
  const inCircuit = useMemo(() => new Set(props.circuit), [props.circuit]);
  const toggle = (id: string) => props.onCircuit(inCircuit.has(id) ? props.circuit.filter((x) => x !== id) : [...props.circuit, id]);
  const nodes = data?.nodes ?? [];
  const s = maxAbs(nodes.flatMap((n) => [n.total_mean, n.direct_mean]));
  const colour = (p: { value: unknown }) => ({ background: diverging(p.value as number, s) });
  const cols = useMemo<ColDef<Node>[]>(() => [
    { headerName: "circuit", width: 78, valueGetter: (p) => (p.data && inCircuit.has(p.data.id) ? "✓" : ""), cellClass: "center" },
    { field: "id", headerName: "node", width: 100, cellClass: "mono", filter: "agTextColumnFilter" },
    { field: "total_mean", headerName: "total (mean)", width: 116, valueFormatter: (p) => fmt(p.value), cellStyle: colour, sort: "desc",
      comparator: (a, b) => Math.abs(a) - Math.abs(b) },
    { field: "total_std", headerName: "± sd", width: 80, valueFormatter: (p) => fmt(p.value) },
    { field: "direct_mean", headerName: "direct (mean)", width: 116, valueFormatter: (p) => fmt(p.value), cellStyle: colour,
      comparator: (a, b) => Math.abs(a) - Math.abs(b) },
    { field: "direct_std", headerName: "± sd", width: 80, valueFormatter: (p) => fmt(p.value) },
    ...(data?.slots ?? []).map((slot): ColDef<Node> => ({
      headerName: `@${slot}`, width: 84, valueGetter: (p) => p.data?.slots[slot] ?? null, valueFormatter: (p) => fmt(p.value), cellStyle: colour,
    })),
  ], [data, inCircuit, s]);
  const addTop = () => {
    const ranked = [...nodes].sort((a, b) => Math.abs(b.total_mean) - Math.abs(a.total_mean)).map((n) => n.id);
    props.onCircuit([...new Set([...props.circuit, ...ranked.filter((id) => !inCircuit.has(id)).slice(0, topK)])]);
  };

  return (
    <section className="dataset" data-testid="dataset-view">
      <SetPicker model={props.model} promptSets={props.promptSets} value={ref} onChange={props.onDataset} />
      {job.matches && <JobProgress job={job.job} what="attribution over the set" testid="attribute" onCancel={job.cancel} onRerun={job.rerun} />}
      {job.error && job.route === "job" && <p className="error" role="alert">{job.error}</p>}
      {r.loading && <p className="muted">running the question over the set… <button type="button" onClick={r.cancel}>cancel</button></p>}
      {r.error && <p className="error" role="alert">{r.error}</p>}
      {data && (
        <>
          <p><b data-testid="dataset-metric">{fmt(data.metric_mean)}</b> ± {fmt(data.metric_std)} mean logit difference over{" "}
            {data.n_prompts} prompts ({data.name}) · slots {data.slots.join(", ")} · {data.elapsed_ms.toFixed(0)} ms.{" "}
            <span className="muted">Click a row to add it to the circuit (or remove it); double-click to open the node.</span></p>
          <div className="inline">
            <button type="button" onClick={addTop} data-testid="add-top">Add top</button>
            <input type="number" min={1} max={50} value={topK} size={3} aria-label="how many"
              onChange={(e) => setTopK(Math.max(1, Number(e.target.value) || 1))} /> nodes by |total effect| to the circuit
          </div>
          <div className="grid short">
            <AgGridReact<Node> theme={gridTheme} rowData={nodes} columnDefs={cols} getRowId={(p) => p.data.id}
              onRowClicked={(e) => e.data && toggle(e.data.id)} onRowDoubleClicked={(e) => e.data && props.onSelect(e.data.id)} />
          </div>
        </>
      )}
      <CircuitPanel model={props.model} spec={spec} rows={ref.n} immediateRows={props.immediateRows} circuit={props.circuit}
        onCircuit={props.onCircuit} evaluated={props.circuitEval} onEvaluated={props.onCircuitEval} />
      {data && (
        <details>
          <summary>per-prompt drill-down</summary>
          <table className="drill">
            <thead><tr><th>prompt</th><th>metric</th>{data.drill_nodes.map((n) => <th key={n} className="mono">{n}</th>)}</tr></thead>
            <tbody>
              {data.prompts.map((p, i) => (
                <tr key={i}><td>{p.prompt} <span className="muted">→{p.target}{p.distractor ? ` / ${p.distractor}` : ""}</span></td>
                  <td>{fmt(p.metric)}</td>{p.total.map((v, j) => <td key={j} style={{ background: diverging(v, s) }}>{fmt(v)}</td>)}</tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </section>
  );
}
