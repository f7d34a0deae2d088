// What the model then says: a continuation with and without the interventions, side by side,
// token by token with the model's probability of each (hover: the top alternatives).
import { useState } from "react";
import { api, unwrap, type Intervention, type Schemas } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { humanize, showToken } from "../format";

type Step = Schemas["GenStep"];

function Column({ title, steps, other, testid }: { title: string; steps: Step[]; other?: Step[] | null; testid: string }) {
  return (
    <div className="gen-col" data-testid={testid}>
      <h4>{title}</h4>
      <div className="gen-tokens">
        {steps.map((s, i) => (
          <span key={i} className={"tok gen" + (other && other[i]?.id !== s.id ? " differs" : "")} data-testid="gen-token"
            title={s.top.map((t) => `${showToken(t.token)} ${(t.prob * 100).toFixed(1)}%`).join("\n")}>
            {showToken(s.token)}<sub>{(s.prob * 100).toFixed(0)}%</sub>
          </span>
        ))}
      </div>
    </div>
  );
}

export function Generate({ model, prompt, interventions, counterfactual }: { model: string; prompt: string; interventions: Intervention[]; counterfactual: string }) {
  const [n, setN] = useState(12);
  const [mode, setMode] = useState<"greedy" | "sample">("greedy");
  const [temperature, setTemperature] = useState(1);
  const [seed, setSeed] = useState(0);
  const [asked, setAsked] = useState<string | null>(null);
  const body = { model, prompt, interventions: interventions.filter((i) => i.enabled !== false), counterfactual_prompt: counterfactual || null,
    max_new_tokens: n, temperature: mode === "greedy" ? 0 : temperature, seed };
  const key = JSON.stringify(body);
  const r = useRequest(asked, (signal) => unwrap(api.POST("/api/generate", { body: JSON.parse(asked!), signal })));
  const stale = asked !== null && asked !== key;
  return (
    <section className="generate" data-testid="generate">
      <h3>What the model says next</h3>
      <div className="inline">
        <label className="inline">tokens <input type="number" min={1} max={64} value={n} aria-label="tokens to generate"
          onChange={(e) => setN(Math.max(1, Math.min(64, Number(e.target.value) || 1)))} style={{ width: 52 }} /></label>
        <select value={mode} onChange={(e) => setMode(e.target.value as "greedy" | "sample")} aria-label="decoding">
          <option value="greedy">greedy</option><option value="sample">sampled</option>
        </select>
        {mode === "sample" && <>
          <label className="inline">T <input type="number" step={0.1} min={0.1} max={10} value={temperature} aria-label="temperature"
            onChange={(e) => setTemperature(Number(e.target.value) || 1)} style={{ width: 52 }} /></label>
          <label className="inline">seed <input type="number" min={0} value={seed} aria-label="seed"
            onChange={(e) => setSeed(Math.max(0, Math.floor(Number(e.target.value) || 0)))} style={{ width: 64 }} /></label>
        </>}
        <button type="button" onClick={() => setAsked(key)} data-testid="generate-run" disabled={!prompt}>Generate</button>
        {r.loading && <span className="muted">generating…</span>}
      </div>
      {r.error && r.error !== "cancelled" && <p className="error" role="alert">{humanize(r.error)}</p>}
      {r.data && (
        <div className={"gen-pair" + (stale ? " stale" : "")}>
          {stale && <p className="muted" data-testid="generate-stale">(for other settings or interventions; Generate again)</p>}
          <Column title="without interventions" steps={r.data.baseline} testid="gen-baseline" />
          {r.data.intervened ? <Column title={`with ${r.data.interventions.join(", ")}`} steps={r.data.intervened} other={r.data.baseline} testid="gen-intervened" />
            : <p className="muted">No active interventions: add one to compare.</p>}
          <p className="muted small">Interventions act at every generated position unless they name positions (those are prompt positions); a patch acts at the prompt's positions.
            {r.data.stopped_at_context && " Stopped at the model's context length."}</p>
        </div>
      )}
    </section>
  );
}
