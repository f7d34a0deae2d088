// Following a server job: its progress as Server-Sent Events (GET /api/jobs/{id}/events), with
// polling when the stream cannot be used; and the job's id kept in the address's hash
// (#job=, #attribute-job=, #ablate-job=), so a person can leave, reload or send the link.
import { api, unwrap, type Schemas } from "./client";
import { storedToken } from "./auth";

export type Job = Schemas["JobResponse"];
/** What the stream sends: the job without its request and result. */
export type JobUpdate = Partial<Job> & Pick<Job, "id" | "status">;

export const FINAL: readonly string[] = ["done", "failed", "cancelled"];
export const isFinal = (j: { status: string }) => FINAL.includes(j.status);
const RANK: Record<string, number> = { queued: 0, running: 1, done: 2, failed: 2, cancelled: 2 };

/** A job id from the address's hash under `key` (`#attribute-job=ID&job=ID2`). */
export function jobFromHash(hash: string, key = "job"): string | null {
  return new URLSearchParams(hash.replace(/^#/, "")).get(key);
}

/** The hash with `key` set to `id` (or removed), other keys kept. */
export function hashWithJob(hash: string, key: string, id: string | null): string {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  if (id) p.set(key, id);
  else p.delete(key);
  const s = p.toString();
  return s ? `#${s}` : "";
}

export function setHashJob(key: string, id: string | null) {
  const { pathname, search, hash } = window.location;
  window.history.replaceState(window.history.state, "", `${pathname}${search}${hashWithJob(hash, key, id)}`);
}

/** Whether a job's stored request asked what `body` asks: every field of `body` is the same
 * there (the server's copy also holds the defaults the body left out). */
export function covers(asked: unknown, body: unknown): boolean {
  if (body === null || body === undefined) return asked === null || asked === undefined;
  if (typeof body !== "object") return asked === body;
  if (Array.isArray(body)) return Array.isArray(asked) && asked.length === body.length && body.every((b, i) => covers(asked[i], b));
  if (typeof asked !== "object" || asked === null || Array.isArray(asked)) return false;
  return Object.entries(body as Record<string, unknown>).every(([k, v]) => covers((asked as Record<string, unknown>)[k], v));
}

/** The newer of two views of one job. The stream and a poll may cross, so a view never goes
 * back in status or progress; the stream's views (no request, no result) keep those of the
 * full one. */
export function mergeJob(prev: Job | null, next: JobUpdate): Job {
  if (!prev || prev.id !== next.id) return next as Job;
  const back = RANK[next.status] < RANK[prev.status] || (isFinal(prev) && !isFinal(next)) ||
    (RANK[next.status] === RANK[prev.status] && (next.done ?? prev.done) < prev.done);
  if (back) return prev;
  return { ...prev, ...next, request: next.request ?? prev.request, result: next.result ?? prev.result,
    cancel: prev.cancel || !!next.cancel };
}

type EventSourceLike = {
  readyState: number;
  onerror: ((e: Event) => void) | null;
  addEventListener(type: string, listener: (e: MessageEvent) => void): void;
  close(): void;
};

export type FollowDeps = {
  /** null: no EventSource here (polling only) */
  EventSource: (new (url: string) => EventSourceLike) | null;
  fetchJob: (id: string) => Promise<Job>;
  /** a ticket for the stream when this browser holds an access token (EventSource sends no headers) */
  ticket: (id: string) => Promise<string | null>;
  pollMs: number;
};

const defaults = (): FollowDeps => ({
  EventSource: typeof EventSource === "undefined" ? null : EventSource,
  fetchJob: (id) => unwrap(api.GET("/api/jobs/{job_id}", { params: { path: { job_id: id } } })),
  ticket: async (id) => (storedToken()
    ? (await unwrap(api.POST("/api/jobs/{job_id}/ticket", { params: { path: { job_id: id } } }))).ticket ?? null
    : null),
  pollMs: 1000,
});

/** Follow job `id` until it ends: its full state first, then the event stream (falling back to
 * polling when the stream fails), and its full state (with the result) at the end. Returns a
 * stop function. */
export function followJob(id: string, onJob: (u: JobUpdate) => void, onError: (message: string) => void,
  deps: Partial<FollowDeps> = {}): () => void {
  const d = { ...defaults(), ...deps };
  let stopped = false;
  let source: EventSourceLike | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fail = (e: unknown) => { if (!stopped) onError(`job ${id}: ${(e as Error).message}`); };

  const poll = async () => {
    if (stopped) return;
    try {
      const j = await d.fetchJob(id);
      if (stopped) return;
      onJob(j);
      if (!isFinal(j)) timer = setTimeout(poll, d.pollMs);
    } catch (e) {
      fail(e);
    }
  };

  const stream = async () => {
    if (stopped) return;
    if (!d.EventSource) return poll();
    let url = `/api/jobs/${encodeURIComponent(id)}/events`;
    try {
      const t = await d.ticket(id);
      if (t) url += `?ticket=${encodeURIComponent(t)}`;
    } catch {
      return poll();
    }
    if (stopped) return;
    const es = new d.EventSource(url);
    source = es;
    let heard = 0; // events since the last error: a stream that delivered may reconnect by itself
    es.addEventListener("job", (e) => {
      heard++;
      const j = JSON.parse(e.data) as JobUpdate;
      onJob(j);
      if (isFinal(j)) {
        es.close();
        poll(); // the full job, with its result
      }
    });
    es.addEventListener("reopen", () => { es.close(); stream(); }); // the stream's lifetime: a new one (new ticket)
    es.onerror = () => {
      if (stopped || source !== es) return;
      if (es.readyState === 2 || heard === 0) { // refused, or failing without a word: poll instead
        es.close();
        source = null;
        poll();
      } else heard = 0;
    };
  };

  (async () => {
    try {
      const j = await d.fetchJob(id); // the full job (request, result) first
      if (stopped) return;
      onJob(j);
      if (!isFinal(j)) stream();
    } catch (e) {
      fail(e);
    }
  })();

  return () => {
    stopped = true;
    source?.close();
    clearTimeout(timer);
  };
}
