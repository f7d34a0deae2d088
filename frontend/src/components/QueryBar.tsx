// Model, prompt (with its tokens), target A and distractor B. Edits are a draft until Run
// (or Enter); A and B are checked to be single tokens as you type.
import { useEffect, useState } from "react";
import { api, unwrap, type Schemas } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { showToken } from "../format";

type Draft = { model: string; prompt: string; target: string; distractor: string };

function useTokens(model: string, text: string, kind: "prompt" | "output") {
  return useRequest(text ? JSON.stringify([model, text, kind]) : null, (signal) =>
    unwrap(api.POST("/api/tokenize", { body: { model, text, kind }, signal })));
}

export function QueryBar(props: { value: Draft; models: Schemas["ModelInfo"][]; onRun: (d: Draft) => void; busy: boolean; onCancel: () => void }) {
  const [draft, setDraft] = useState<Draft>(props.value);
  useEffect(() => setDraft(props.value), [props.value.model, props.value.prompt, props.value.target, props.value.distractor]);
  const promptTokens = useTokens(draft.model, draft.prompt, "prompt");
  const a = useTokens(draft.model, draft.target, "output");
  const b = useTokens(draft.model, draft.distractor, "output");
  const errA = draft.target && a.error ? a.error : null;
  const errB = draft.distractor && b.error ? b.error : null;
  const canRun = !!draft.prompt && !!draft.target && !errA && !errB;
  const run = () => canRun && props.onRun(draft);
  const set = (patch: Partial<Draft>) => setDraft((d) => ({ ...d, ...patch }));
  const onKey = (e: React.KeyboardEvent) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey || !(e.target instanceof HTMLTextAreaElement))) {
      e.preventDefault();
      run();
    }
  };

  return (
    <section className="query" onKeyDown={onKey}>
      <label className="field model">
        <span>model</span>
        <select value={draft.model} onChange={(e) => set({ model: e.target.value })} data-testid="model">
          {props.models.map((m) => <option key={m.name} value={m.name}>{m.name}</option>)}
          {!props.models.some((m) => m.name === draft.model) && <option value={draft.model}>{draft.model}</option>}
        </select>
      </label>
      <label className="field prompt">
        <span>prompt <small>(Ctrl+Enter runs)</small></span>
        <textarea value={draft.prompt} rows={2} onChange={(e) => set({ prompt: e.target.value })} data-testid="prompt"
          placeholder="When Mary and John went to the store, John gave a drink to" />
      </label>
      <div className="tokens" data-testid="prompt-tokens" aria-label="prompt tokens">
        {promptTokens.error && <span className="error">{promptTokens.error}</span>}
        {promptTokens.data?.tokens.map((t, i) => <span key={i} className="tok" title={`position ${i}`}>{showToken(t)}</span>)}
      </div>
      <div className="targets">
        <label className="field">
          <span>target A</span>
          <input value={draft.target} onChange={(e) => set({ target: e.target.value })} data-testid="target" placeholder=" Mary" />
        </label>
        <button type="button" title="swap A and B" aria-label="swap target and distractor" data-testid="swap"
          onClick={() => set({ target: draft.distractor, distractor: draft.target })}>⇄</button>
        <label className="field">
          <span>distractor B <small>(empty: mean logit)</small></span>
          <input value={draft.distractor} onChange={(e) => set({ distractor: e.target.value })} data-testid="distractor" placeholder=" John" />
        </label>
        <button type="button" className="primary" disabled={!canRun} onClick={run} data-testid="run">Run</button>
        {props.busy && <button type="button" onClick={props.onCancel} data-testid="cancel">Cancel</button>}
      </div>
      {(errA || errB) && <div className="error" role="alert" data-testid="target-error">{errA ?? errB}</div>}
    </section>
  );
}
