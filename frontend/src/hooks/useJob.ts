// A server job in a component: submitted here or resumed from the address (#KEY=ID), followed
// until it ends (api/jobs.ts), cancellable. `unavailable`: the server cannot run this model's
// jobs (409), so the caller may use the immediate route instead.
import { useCallback, useEffect, useState } from "react";
import { api, unwrap, ApiError } from "../api/client";
import { followJob, jobFromHash, mergeJob, setHashJob, type Job } from "../api/jobs";

export function useJob<B>(key: string, post: (body: B) => Promise<Job>) {
  const [id, setId] = useState<string | null>(() => jobFromHash(window.location.hash, key));
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [unavailable, setUnavailable] = useState(false);
  useEffect(() => {
    if (!id) return;
    return followJob(id, (u) => setJob((prev) => mergeJob(prev, u)), setError);
  }, [id]);
  const submit = useCallback(async (body: B) => {
    setError(null);
    try {
      const j = await post(body);
      setJob(j);
      setId(j.id);
      setHashJob(key, j.id);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) setUnavailable(true);
      setError((e as Error).message);
    }
  }, [key, post]);
  const cancel = useCallback(async () => {
    if (!id) return;
    try {
      setJob((prev) => mergeJob(prev, { ...(prev ?? {}), id, status: prev?.status ?? "queued", cancel: true }));
      const j = await unwrap(api.POST("/api/jobs/{job_id}/cancel", { params: { path: { job_id: id } } }));
      setJob((prev) => mergeJob(prev, j));
    } catch (e) {
      setError((e as Error).message);
    }
  }, [id]);
  return { id, job, error, unavailable, submit, cancel };
}
