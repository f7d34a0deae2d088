// Store the investigation server-side and show its short link (a new id every time; stored
// investigations never change).
import { useState } from "react";
import { api, unwrap, type InvestigationState } from "../api/client";

export function ShareButton({ state }: { state: InvestigationState }) {
  const [link, setLink] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState<string | null>(null);
  const copy = async (url: string) => {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(url);
      setCopied("copied ✓");
    } catch {
      setCopied("select the link and copy it (the browser refused)");
    }
  };
  const share = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await unwrap(api.POST("/api/shares", { body: { state } }));
      const url = `${window.location.origin}/s/${r.id}`;
      setLink(url);
      setCopied(null);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="share">
      <button type="button" onClick={share} disabled={busy} data-testid="share">Share</button>
      {link && <input readOnly value={link} data-testid="share-link" aria-label="share link" onFocus={(e) => e.target.select()} size={36} />}
      {link && <button type="button" onClick={() => copy(link)} data-testid="share-copy">Copy</button>}
      {copied && <span className="copied" role="status" data-testid="share-copied">{copied}</span>}
      {error && <span className="error" role="alert">{error}</span>}
    </span>
  );
}
