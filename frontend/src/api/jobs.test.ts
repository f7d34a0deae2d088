import { afterEach, describe, expect, it, vi } from "vitest";
import { covers, followJob, hashWithJob, jobFromHash, mergeJob, type Job, type JobUpdate } from "./jobs";

const job = (over: Partial<Job> = {}): Job => ({
  id: "j1", kind: "dataset_attribute", model: "default", status: "queued", done: 0, total: 4, created: 0, updated: 0,
  deadline: 0, cancel: false, error: null, request: { model: "default" }, result: null, ...over,
});

/** A stand-in for the browser's EventSource: the test sends events and errors into it. */
class FakeSource {
  static all: FakeSource[] = [];
  readyState = 0;
  onerror: ((e: Event) => void) | null = null;
  listeners: Record<string, ((e: MessageEvent) => void)[]> = {};
  constructor(readonly url: string) { FakeSource.all.push(this); }
  addEventListener(type: string, f: (e: MessageEvent) => void) { (this.listeners[type] ??= []).push(f); }
  close() { this.readyState = 2; }
  emit(type: string, data: unknown) {
    this.readyState = 1;
    for (const f of this.listeners[type] ?? []) f(new MessageEvent(type, { data: JSON.stringify(data) }));
  }
  fail(closed: boolean) { this.readyState = closed ? 2 : 0; this.onerror?.(new Event("error")); }
}

const flush = () => new Promise((r) => setTimeout(r, 0));

function follow(fetched: Job[], ticket: string | null = null) {
  const seen: JobUpdate[] = [];
  const errors: string[] = [];
  const fetchJob = vi.fn(async () => fetched.length > 1 ? fetched.shift()! : fetched[0]);
  const stop = followJob("j1", (u) => seen.push(u), (m) => errors.push(m),
    { EventSource: FakeSource, fetchJob, ticket: async () => ticket, pollMs: 5 });
  return { seen, errors, fetchJob, stop };
}

afterEach(() => { FakeSource.all = []; });

describe("the job's id in the address", () => {
  it("reads and writes one key, keeping the others", () => {
    expect(jobFromHash("#attribute-job=a1&job=b2", "attribute-job")).toBe("a1");
    expect(jobFromHash("#attribute-job=a1&job=b2")).toBe("b2");
    expect(jobFromHash("", "ablate-job")).toBeNull();
    expect(hashWithJob("#job=b2", "attribute-job", "a1")).toBe("#job=b2&attribute-job=a1");
    expect(hashWithJob("#job=b2&attribute-job=a1", "attribute-job", "a3")).toBe("#job=b2&attribute-job=a3");
    expect(hashWithJob("#job=b2", "job", null)).toBe("");
  });
});

describe("merging the stream's and the polls' views of a job", () => {
  it("never goes back in status or progress, and keeps the request and result", () => {
    const running = mergeJob(job(), { id: "j1", status: "running", done: 2 });
    expect(running).toMatchObject({ status: "running", done: 2, request: { model: "default" } });
    expect(mergeJob(running, { id: "j1", status: "running", done: 1 })).toBe(running); // a late poll
    expect(mergeJob(running, { id: "j1", status: "queued", done: 0 })).toBe(running);
    const done = mergeJob(running, { ...job({ status: "done", done: 4, result: { n: 1 } }) });
    expect(mergeJob(done, { id: "j1", status: "running", done: 3 })).toBe(done);
    expect(mergeJob(done, { id: "j1", status: "done", done: 4 }).result).toEqual({ n: 1 }); // the stream's view has none
    expect(mergeJob(running, { id: "j1", status: "running", done: 2, cancel: true }).cancel).toBe(true);
    expect(mergeJob(running, { id: "j2", status: "queued" }).id).toBe("j2"); // another job replaces it
  });
  it("a stored request covers the body that asked it (the server adds defaults)", () => {
    const body = { model: "default", promptset: { builtin: "ioi", n: 40, seed: 0 }, top_k: 100 };
    const stored = { ...body, promptset: { ...body.promptset, id: null, text: null }, drill: 8 };
    expect(covers(stored, body)).toBe(true);
    expect(covers(stored, { ...body, promptset: { builtin: "ioi", n: 41, seed: 0 } })).toBe(false);
    expect(covers(undefined, body)).toBe(false);
    expect(covers({ nodes: ["L1.H3", "L2.H1"] }, { nodes: ["L1.H3"] })).toBe(false);
  });
});

describe("following a job", () => {
  it("the full job first, then the stream's events in order, then the full job with its result", async () => {
    const f = follow([job(), job({ status: "done", done: 4, result: { n: 4 } })]);
    await flush();
    expect(FakeSource.all).toHaveLength(1);
    const es = FakeSource.all[0];
    expect(es.url).toBe("/api/jobs/j1/events");
    es.emit("job", { id: "j1", status: "running", done: 1, total: 4 });
    es.emit("job", { id: "j1", status: "running", done: 3, total: 4 });
    es.emit("job", { id: "j1", status: "done", done: 4, total: 4 });
    expect(es.readyState).toBe(2); // closed at the end: the browser does not reconnect
    await flush();
    expect(f.seen.map((u) => [u.status, u.done])).toEqual([["queued", 0], ["running", 1], ["running", 3], ["done", 4], ["done", 4]]);
    expect(f.seen.at(-1)!.result).toEqual({ n: 4 });
    expect(f.fetchJob).toHaveBeenCalledTimes(2);
    expect(f.errors).toEqual([]);
  });

  it("a finished job is read once, with no stream", async () => {
    const f = follow([job({ status: "cancelled" })]);
    await flush();
    expect(FakeSource.all).toHaveLength(0);
    expect(f.seen.map((u) => u.status)).toEqual(["cancelled"]);
  });

  it("falls back to polling when the stream is refused or fails before any event, until the job ends", async () => {
    const f = follow([job(), job({ status: "running", done: 1 }), job({ status: "running", done: 2 }), job({ status: "done", done: 4 })]);
    await flush();
    FakeSource.all[0].fail(false); // connecting, never heard from: not left retrying
    expect(FakeSource.all[0].readyState).toBe(2);
    await vi.waitFor(() => expect(f.seen.at(-1)?.status).toBe("done"));
    expect(f.seen.map((u) => u.done)).toEqual([0, 1, 2, 4]);
    const calls = f.fetchJob.mock.calls.length;
    await new Promise((r) => setTimeout(r, 30));
    expect(f.fetchJob.mock.calls.length).toBe(calls); // stopped polling at the end
  });

  it("a stream that delivered may reconnect by itself; at its lifetime a new one opens; stop closes it", async () => {
    const f = follow([job()], "T.1");
    await flush();
    const es = FakeSource.all[0];
    expect(es.url).toBe("/api/jobs/j1/events?ticket=T.1"); // a token in this browser: a ticket, not the token
    es.emit("job", { id: "j1", status: "running", done: 1 });
    es.fail(false); // a dropped connection after events: the browser reconnects
    expect(es.readyState).toBe(0);
    expect(f.fetchJob).toHaveBeenCalledTimes(1);
    es.emit("reopen", { after_s: 600 });
    await flush();
    expect(FakeSource.all).toHaveLength(2);
    expect(es.readyState).toBe(2);
    f.stop();
    expect(FakeSource.all[1].readyState).toBe(2);
  });
});
