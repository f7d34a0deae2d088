// The investigation state, mirrored into the URL on every change (so the address bar is
// always a working link). A short link /s/<id> is resolved once, then replaced by the full URL.
import { useCallback, useEffect, useState } from "react";
import { api, unwrap, type InvestigationState } from "../api/client";
import { decode, defaults, encode } from "./url";

export const shareIdFromPath = (path: string): string | null => path.match(/^\/s\/([A-Za-z0-9_-]{1,64})\/?$/)?.[1] ?? null;

export function useInvestigation() {
  const shareId = shareIdFromPath(window.location.pathname);
  const [state, setState] = useState<InvestigationState>(() => (shareId ? defaults() : decode(window.location.search)));
  const [loadingShare, setLoadingShare] = useState<boolean>(shareId !== null);
  const [shareError, setShareError] = useState<string | null>(null);

  useEffect(() => {
    if (!shareId) return;
    unwrap(api.GET("/api/shares/{share_id}", { params: { path: { share_id: shareId } } })).then(
      (r) => {
        const s = r.state ? decode(encode(r.state as InvestigationState)) : defaults();
        setState(s);
        setLoadingShare(false);
      },
      (e: Error) => {
        setShareError(`shared investigation ${shareId}: ${e.message}`);
        setLoadingShare(false);
      },
    );
  }, [shareId]);

  useEffect(() => {
    if (loadingShare) return;
    const url = `/?${encode(state)}`;
    // the fragment (#job=ID: a running evaluation job) is kept
    if (window.location.pathname + window.location.search !== url) window.history.replaceState(null, "", url + window.location.hash);
  }, [state, loadingShare]);

  const update = useCallback((patch: Partial<InvestigationState>) => setState((s) => ({ ...s, ...patch })), []);
  return { state, update, setState, loadingShare, shareError };
}
