// A circuit (heads and neurons, optionally @SLOT) and its three numbers over the prompt set.
// Evaluation and "intervene over the set" can take minutes, so they run as server jobs:
// progress (streamed), cancel, and the jobs' ids in the address (#job=ID, #ablate-job=ID), so a
// person can leave and come back to them (or share the link). "Intervene over the set" on a
// small set (at most the server's `immediate_rows`) asks the immediate route instead: about a
// second, where the server's first job waits for its worker to start.
import { useEffect, useRef, useState } from "react";
import { api, unwrap, type Schemas } from "../api/client";
import { jobFromHash, setHashJob } from "../api/jobs";
import { runsAsJob } from "../api/datasetRoute";
import { useJob } from "../hooks/useJob";
import { useRequest } from "../hooks/useRequest";
import { fmt } from "../format";
import { JobProgress } from "./JobProgress";

const postEvaluate = (body: Schemas["CircuitRequest"]) => unwrap(api.POST("/api/jobs/circuit/evaluate", { body }));
const postAblate = (body: Schemas["DatasetAblateRequest"]) => unwrap(api.POST("/api/jobs/dataset/ablate", { body }));

export function CircuitPanel({ model, spec, rows, immediateRows, circuit, onCircuit, evaluated, onEvaluated }: {
  model: string; spec: Schemas["PromptSetSpec"]; circuit: string[]; onCircuit: (c: string[]) => void;
  evaluated?: string; onEvaluated?: (ablation: "" | "mean" | "resample") => void;
  /** the set's rows and the server's line between the immediate route and a job (undefined: a job) */
  rows?: number | null; immediateRows?: number;
}) {
  const [adding, setAdding] = useState("");
  const [ablation, setAblation] = useState<"mean" | "resample">(evaluated === "resample" ? "resample" : "mean");
  const body = { model, promptset: spec, nodes: circuit, ablation };
  const ev = useJob("job", postEvaluate);
  const job = ev.job;
  // a shared link that was evaluated evaluates again on open (same seed: the same numbers), unless the
  // address already names its job (#job=ID), which is resumed instead
  const autoRan = useRef(false);
  useEffect(() => {
    if (autoRan.current) return;
    autoRan.current = true;
    if (evaluated && circuit.length && !jobFromHash(window.location.hash)) {
      ev.submit({ model, promptset: spec, nodes: circuit, ablation: evaluated === "resample" ? "resample" : "mean" });
    }
  }, []); // eslint-disable-line react-hooks/exhaustive-deps
  const asked = job?.request as { model?: string; nodes?: string[]; ablation?: string; promptset?: unknown } | undefined;
  const current = !!asked && asked.model === model && asked.ablation === ablation &&
    JSON.stringify(asked.nodes) === JSON.stringify(circuit);
  const [setOp, setSetOp] = useState<"mean" | "resample" | "zero" | "patch">("mean");
  const abJob = useJob("ablate-job", postAblate);
  // the last immediate ask (a counter, so asking again asks again); null: the job's result is shown
  const [direct, setDirect] = useState<{ body: Schemas["DatasetAblateRequest"]; n: number } | null>(null);
  const abNow = useRequest(direct && JSON.stringify(direct), (signal) =>
    unwrap(api.POST("/api/dataset/ablate", { body: direct!.body, signal })));
  const ablateSet = () => {
    const abBody = { model, promptset: spec, nodes: circuit, ablation: setOp };
    if (runsAsJob(rows, immediateRows) === false) {
      setHashJob("ablate-job", null); // the address no longer names an older ablation job
      setDirect((d) => ({ body: abBody, n: (d?.n ?? 0) + 1 }));
    } else {
      setDirect(null);
      abJob.submit(abBody);
    }
  };
  const ab = direct ? abNow.data
    : abJob.job?.status === "done" ? (abJob.job.result as unknown as Schemas["DatasetAblateResponse"]) : null;
  const x = job?.status === "done" ? (job.result as unknown as Schemas["CircuitResponse"]) : null;
  const add = () => {
    const ids = adding.split(/[\s,]+/).filter(Boolean).filter((id) => !circuit.includes(id));
    if (ids.length) onCircuit([...circuit, ...ids]);
    setAdding("");
  };
  return (
    <section className="circuit" data-testid="circuit-panel">
      <h3>Circuit</h3>
      <div className="chips">
        {circuit.length === 0 && <span className="muted">No nodes yet: click rows above, or type ids.</span>}
        {circuit.map((id) => (
          <span key={id} className="chip mono">{id}
            <button type="button" aria-label={`remove ${id}`} onClick={() => onCircuit(circuit.filter((c) => c !== id))}>✕</button></span>
        ))}
      </div>
      <div className="inline">
        <input value={adding} onChange={(e) => setAdding(e.target.value)} placeholder="L1.H3, L0.H0@S2" aria-label="add nodes"
          onKeyDown={(e) => e.key === "Enter" && add()} data-testid="circuit-add" />
        <button type="button" onClick={add}>Add</button>
        <select value={ablation} onChange={(e) => setAblation(e.target.value as "mean" | "resample")} aria-label="ablation">
          <option value="mean">mean ablation</option><option value="resample">resample ablation</option>
        </select>
        <button type="button" className="primary" disabled={!circuit.length} data-testid="evaluate"
          onClick={() => { ev.submit(body); onEvaluated?.(ablation); }}>Evaluate</button>
        <span className="inline">
          <button type="button" disabled={!circuit.length} data-testid="ablate-set"
            title="intervene on these nodes (only) on every prompt of the set"
            onClick={ablateSet}>Intervene on them over the set:</button>
          <select value={setOp} onChange={(e) => setSetOp(e.target.value as typeof setOp)} aria-label="intervention over the set">
            <option value="mean">mean-ablate</option><option value="resample">resample-ablate</option>
            <option value="zero">zero-ablate</option><option value="patch">patch from counterfactuals</option>
          </select>
        </span>
      </div>
      <JobProgress job={job} what="evaluation" testid="job" onCancel={ev.cancel} />
      {ev.error && <p className="error" role="alert">{ev.error}</p>}
      {direct ? <>
        {abNow.loading && <p className="muted" data-testid="ablate-running">intervening over the set…{" "}
          <button type="button" onClick={abNow.cancel}>cancel</button></p>}
        {abNow.error && <p className="error" role="alert">{abNow.error}</p>}
      </> : <>
        <JobProgress job={abJob.job} what="intervention over the set" testid="ablate" onCancel={abJob.cancel} />
        {abJob.error && <p className="error" role="alert">{abJob.error}</p>}
      </>}
      {ab && (
        <p data-testid="ablate-result">Ablating {ab.nodes.join(", ")} ({ab.ablation}, over the {ab.reference}) on every prompt: mean metric{" "}
          {fmt(ab.before_mean)} → <b>{fmt(ab.after_mean)}</b> (change {fmt(ab.change_mean)} ± {fmt(ab.change_std)}).</p>
      )}
      {x && (
        <div className={"numbers" + (current ? "" : " stale")} data-testid="circuit-result">
          {!current && <p className="muted">(for another circuit: {asked?.nodes?.join(", ")}, {asked?.ablation} ablation; Evaluate again)</p>}
          <div className="three">
            <div><h4>faithfulness</h4><div className="value" data-testid="faithfulness">{fmt(x.faithfulness.fraction)}</div>
              <p className="muted">F(C) / F(M) = {fmt(x.faithfulness.circuit)} / {fmt(x.faithfulness.model)}; normalized by F(∅) = {fmt(x.faithfulness.empty)}:{" "}
                {fmt(x.faithfulness.normalized)}. The circuit alone, everything else in the universe ({x.universe.join(", ")}s) ablated.</p></div>
            <div><h4>incompleteness (worst found)</h4><div className="value" data-testid="incompleteness">{fmt(x.completeness.relative)}</div>
              <p className="muted">max |F(C∖K) − F(M∖K)| = {fmt(x.completeness.worst_incompleteness)} at K = {"{"}{x.completeness.worst_K.join(", ")}{"}"},
                over {x.completeness.n_subsets_tried} subsets (single nodes, random, greedy); relative to |F(M)|. Near 0: removing any part of the circuit hurts the circuit as it hurts the model.</p></div>
            <div><h4>minimality</h4>
              <p className="muted">per node v: the largest |F(C∖(K∪v)) − F(C∖K)| found, relative to |F(C)|; a node near 0 may be unnecessary.</p>
              <div className="bars">
                {x.minimality.map((mi) => (
                  <div key={mi.node} className="bar" title={`K = {${mi.K.join(", ")}}`}>
                    <span className="mono">{mi.node}</span>
                    <span className="track"><span className="fill" style={{ width: `${Math.min(100, mi.relative * 100)}%` }} /></span>
                    <span>{fmt(mi.relative, 2)}</span>
                  </div>
                ))}
              </div></div>
          </div>
          <p className="muted">{x.n_prompts} prompts, {x.ablation} ablation over the {x.reference}; {x.cost.configs} ablation sets in {x.cost.forwards} batched
            forwards, {(x.cost.elapsed_ms / 1000).toFixed(1)} s. {x.notes?.join(" ")}</p>
        </div>
      )}
    </section>
  );
}
