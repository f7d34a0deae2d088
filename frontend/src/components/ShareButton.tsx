// Store the investigation server-side and show its short link (a new id every time; stored
// investigations never change).
import { useState } from "react";
import { api, unwrap, type InvestigationState } from "../api/client";

export function ShareButton({ state }: { state: InvestigationState }) {
  const [link, setLink] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const share = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await unwrap(api.POST("/api/shares", { body: { state } }));
      const url = `${window.location.origin}/s/${r.id}`;
      setLink(url);
      await navigator.clipboard?.writeText(url).catch(() => undefined);
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
      {error && <span className="error" role="alert">{error}</span>}
    </span>
  );
}
