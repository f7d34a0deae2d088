// The investigation state, mirrored into the URL on every change (so the address bar is
// always a working link). A short link /s/<id> is resolved once, then replaced by the full URL.
// Navigations a person would undo (open a node, trace, switch view or basis, run a new
// question) push a history entry; Back and Forward restore the state from the URL.
import { useCallback, useEffect, useRef, useState } from "react";
import { api, unwrap, type InvestigationState } from "../api/client";
import { decode, defaults, encode } from "./url";

export const shareIdFromPath = (path: string): string | null => path.match(/^\/s\/([A-Za-z0-9_-]{1,64})\/?$/)?.[1] ?? null;

/** Fields whose change is a navigation (a history entry); the rest (typing in filters) replace it. */
const NAVIGATIONS: (keyof InvestigationState)[] = ["model", "prompt", "target", "distractor", "node", "view", "traces",
  "granularity", "mlp_basis", "attn_basis", "resid_basis", "interventions", "counterfactual_prompt", "dataset", "effects", "top_k", "kind_filter", "sort"];

export function useInvestigation() {
  const shareId = shareIdFromPath(window.location.pathname);
  const [state, setState] = useState<InvestigationState>(() => (shareId ? defaults() : decode(window.location.search)));
  const [loadingShare, setLoadingShare] = useState<boolean>(shareId !== null);
  const [shareError, setShareError] = useState<string | null>(null);
  const push = useRef(false);

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
    if (window.location.pathname + window.location.search === url) return;
    if (push.current && !shareIdFromPath(window.location.pathname)) window.history.pushState(null, "", url);
    else window.history.replaceState(null, "", url + window.location.hash);  // keeps #job=ID (an evaluation job)
    push.current = false;
  }, [state, loadingShare]);

  useEffect(() => {
    const onPop = () => {
      if (!shareIdFromPath(window.location.pathname)) setState(decode(window.location.search));
    };
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const update = useCallback((patch: Partial<InvestigationState>) => setState((s) => {
    if (NAVIGATIONS.some((k) => k in patch && JSON.stringify(patch[k]) !== JSON.stringify(s[k]))) push.current = true;
    return { ...s, ...patch };
  }), []);
  return { state, update, setState, loadingShare, shareError };
}
