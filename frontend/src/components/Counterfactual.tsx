// The counterfactual prompt of a patch: typed first, its token length checked here (one
// tokenize call, no attribution request per keystroke), sent once when it matches.
import { useState } from "react";
import { api, unwrap } from "../api/client";
import { useRequest } from "../hooks/useRequest";
import { humanize } from "../format";

export function Counterfactual({ model, prompt, value, onApply, applyLabel, testid = "counterfactual" }: {
  model: string; prompt: string; value: string; onApply: (text: string) => void; applyLabel: string; testid?: string;
}) {
  const [text, setText] = useState(value);
  const [debounced, setDebounced] = useState(value);
  const [timer, setTimer] = useState<number | null>(null);
  const change = (t: string) => {
    setText(t);
    if (timer) window.clearTimeout(timer);
    setTimer(window.setTimeout(() => setDebounced(t), 250));
  };
  const tok = (t: string) => (signal: AbortSignal) => unwrap(api.POST("/api/tokenize", { body: { model, text: t, kind: "prompt" }, signal }));
  const mine = useRequest(prompt ? JSON.stringify([model, prompt]) : null, tok(prompt));
  const theirs = useRequest(debounced ? JSON.stringify([model, debounced]) : null, tok(debounced));
  const n = mine.data?.tokens.length, m = theirs.data?.tokens.length;
  const settled = debounced === text && !theirs.loading;
  const ok = settled && !!text && n != null && m != null && n === m && !theirs.error;
  const problem = !text || !settled ? null : theirs.error ? humanize(theirs.error) : n != null && m != null && n !== m
    ? `the counterfactual is ${m} tokens long, the prompt ${n}: patching needs the same length` : null;
  return (
    <div className="counterfactual" data-testid={`${testid}-form`}>
      <label className="field">
        <span>counterfactual prompt (the patch source, same token length{n != null ? `: ${n} tokens` : ""})</span>
        <input value={text} onChange={(e) => change(e.target.value)} data-testid={testid}
          onKeyDown={(e) => { if (e.key === "Enter" && ok) { e.preventDefault(); onApply(text); } }}
          placeholder="e.g. the prompt with one name swapped" />
      </label>
      <span className="inline">
        <button type="button" className="primary" disabled={!ok} onClick={() => onApply(text)} data-testid={`${testid}-apply`}>{applyLabel}</button>
        {settled && m != null && !problem && text && <span className="muted">{m} tokens ✓</span>}
        {problem && <span className="error" data-testid={`${testid}-problem`}>{problem}</span>}
      </span>
    </div>
  );
}
