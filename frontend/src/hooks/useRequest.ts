// Run an async request whenever its key changes. A newer key aborts the older request, and a
// result only lands if it belongs to the newest key, so results never arrive out of order.
import { useCallback, useEffect, useRef, useState } from "react";

export type RequestState<T> = { data: T | null; error: string | null; loading: boolean; cancel: () => void };

export function latestOnly() {
  let current = 0;
  let controller: AbortController | null = null;
  return {
    start(): { id: number; signal: AbortSignal } {
      controller?.abort();
      controller = new AbortController();
      return { id: ++current, signal: controller.signal };
    },
    isCurrent: (id: number) => id === current,
    cancel() {
      controller?.abort();
      current++;
    },
  };
}

export function useRequest<T>(key: string | null, run: (signal: AbortSignal) => Promise<T>): RequestState<T> {
  const gate = useRef(latestOnly());
  const runRef = useRef(run);
  runRef.current = run;
  const [state, setState] = useState<{ data: T | null; error: string | null; loading: boolean }>({ data: null, error: null, loading: false });

  useEffect(() => {
    if (key === null) {
      gate.current.cancel();
      setState({ data: null, error: null, loading: false });
      return;
    }
    const { id, signal } = gate.current.start();
    setState((s) => ({ ...s, loading: true, error: null }));
    runRef.current(signal).then(
      (data) => gate.current.isCurrent(id) && setState({ data, error: null, loading: false }),
      (e: unknown) => {
        if (!gate.current.isCurrent(id) || signal.aborted) return;
        setState((s) => ({ data: s.data, error: e instanceof Error ? e.message : String(e), loading: false }));
      },
    );
  }, [key]);

  useEffect(() => () => gate.current.cancel(), []);
  const cancel = useCallback(() => {
    gate.current.cancel();
    setState((s) => ({ ...s, loading: false, error: "cancelled" }));
  }, []);
  return { ...state, cancel };
}
