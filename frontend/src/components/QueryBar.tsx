// The question: model, prompt (tokenized live), target A and distractor B (each must be one
// token; the leading space is shown, since ' Mary' and 'Mary' are different questions). The
// draft is reported up, so results for another question are marked stale; field errors are
// reported up too and shown in the page's one error area.
import { useEffect, useState } from "react";
import { api, unwrap, type Schemas } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { humanize, showToken } from "../format";

export type Draft = { model: string; prompt: string; target: string; distractor: string };

function useTokens(model: string, text: string, kind: "prompt" | "output") {
  return useRequest(text ? JSON.stringify([model, text, kind]) : null, (signal) =>
    unwrap(api.POST("/api/tokenize", { body: { model, text, kind }, signal })));
}

function Spacing({ value, testid }: { value: string; testid: string }) {
  if (!value) return null;
  const lead = value.startsWith(" ");
  return <span className={"spacing" + (lead ? " lead" : "")} data-testid={testid}
    title={lead ? "starts with a space (a word in running text)" : "no leading space (a word at the start of a line or glued to the previous one)"}>
    {lead ? "␣ leading space" : "no leading space"}</span>;
}

export function QueryBar(props: {
  value: Draft; models: Schemas["ModelInfo"][]; onRun: (d: Draft) => void; busy: boolean; onCancel: () => void;
  onDraft: (d: Draft, errors: { field: string; message: string }[]) => void;
}) {
  const [draft, setDraft] = useState<Draft>(props.value);
  useEffect(() => setDraft(props.value), [props.value.model, props.value.prompt, props.value.target, props.value.distractor]);
  const info = props.models.find((m) => m.name === draft.model);
  const example = info?.supports?.examples?.[0];
  const textual = info?.supports?.generation !== false;  // a text tokenizer (testbeds split on spaces: spacing means nothing)
  const promptTokens = useTokens(draft.model, draft.prompt, "prompt");
  const a = useTokens(draft.model, draft.target, "output");
  const b = useTokens(draft.model, draft.distractor, "output");
  const errA = draft.target && a.error ? a.error : null;
  const errB = draft.distractor && b.error ? b.error : null;
  const errP = draft.prompt && promptTokens.error ? promptTokens.error : null;
  const same = !!draft.target && !!draft.distractor && !!a.data && !!b.data && a.data.token_ids[0] === b.data.token_ids[0];
  const errors = [
    ...(errP ? [{ field: "prompt", message: humanize(errP) }] : []),
    ...(errA ? [{ field: "target", message: humanize(errA) }] : []),
    ...(errB ? [{ field: "distractor", message: humanize(errB) }] : []),
    ...(same ? [{ field: "target", message: "target A and distractor B are the same token" }] : []),
  ];
  const errorKey = JSON.stringify(errors);
  const { onDraft } = props;
  useEffect(() => onDraft(draft, errors), [draft, errorKey, onDraft]); // eslint-disable-line react-hooks/exhaustive-deps
  // never enabled on a stale check: A and B must be tokenized as typed
  const canRun = !!draft.prompt.trim() && !!draft.target && errors.length === 0 && !a.loading && !b.loading;
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
        {!!info?.supports?.examples?.length && (
          <select value="" aria-label="example questions" data-testid="examples"
            onChange={(e) => { const ex = info.supports!.examples![Number(e.target.value)]; if (ex) set({ prompt: ex.prompt, target: ex.target, distractor: ex.distractor ?? "" }); }}>
            <option value="">examples…</option>
            {info.supports.examples.map((ex, i) => <option key={i} value={i}>{ex.label || ex.prompt}</option>)}
          </select>
        )}
      </label>
      <label className="field prompt">
        <span>prompt <small>(Ctrl+Enter runs)</small></span>
        <textarea value={draft.prompt} rows={1} onChange={(e) => set({ prompt: e.target.value })} data-testid="prompt" aria-invalid={!!errP}
          placeholder={example ? `e.g. ${example.prompt}` : "a prompt"} />
      </label>
      <div className="tokens" data-testid="prompt-tokens" aria-label="prompt tokens">
        {promptTokens.data?.tokens.map((t, i) => <span key={i} className="tok" title={`position ${i}`}>{showToken(promptTokens.data?.display?.[i] ?? t)}</span>)}
      </div>
      <div className="targets">
        <label className="field">
          <span>target A {textual && <Spacing value={draft.target} testid="target-spacing" />}</span>
          <input value={draft.target} onChange={(e) => set({ target: e.target.value })} data-testid="target" aria-invalid={!!errA || same}
            placeholder={example ? `e.g. "${example.target}"` : ""} />
        </label>
        <button type="button" title="swap A and B" aria-label="swap target and distractor" data-testid="swap"
          onClick={() => set({ target: draft.distractor, distractor: draft.target })}>⇄</button>
        <label className="field">
          <span>distractor B <small>(empty: mean logit)</small> {textual && <Spacing value={draft.distractor} testid="distractor-spacing" />}</span>
          <input value={draft.distractor} onChange={(e) => set({ distractor: e.target.value })} data-testid="distractor" aria-invalid={!!errB || same}
            placeholder={example?.distractor ? `e.g. "${example.distractor}"` : ""} />
        </label>
        <button type="button" className="primary" disabled={!canRun} onClick={run} data-testid="run">Run</button>
        {props.busy && <button type="button" onClick={props.onCancel} data-testid="cancel">Cancel</button>}
      </div>
    </section>
  );
}
