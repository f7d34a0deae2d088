// A job's line while it runs (status, progress bar, cancel) and after it stopped without a
// result (cancelled, failed). `testid` prefixes the test ids: job-progress, job-cancel, ...
import type { Job } from "../api/jobs";
import { isFinal } from "../api/jobs";

export function JobProgress({ job, what, testid, onCancel, onRerun }: {
  job: Job | null; what: string; testid: string; onCancel: () => void; onRerun?: () => void;
}) {
  if (!job) return null;
  if (!isFinal(job)) {
    return (
      <p className="muted" data-testid={`${testid}-progress`}>{what} job <span className="mono">{job.id}</span> {job.status}
        {job.total > 1 ? ` (${job.done}/${job.total})` : ""}… you can leave this page and come back with its address.{" "}
        <progress max={Math.max(1, job.total)} value={job.done} data-testid={`${testid}-bar`} />{" "}
        <button type="button" onClick={onCancel} data-testid={`${testid}-cancel`} disabled={job.cancel}>
          {job.cancel ? "cancelling…" : "cancel"}</button></p>
    );
  }
  const again = onRerun && <button type="button" onClick={onRerun} data-testid={`${testid}-rerun`}>run again</button>;
  if (job.status === "cancelled") return <p className="muted" data-testid={`${testid}-cancelled`}>{what} job {job.id} was cancelled. {again}</p>;
  if (job.status === "failed") return <p className="error" role="alert">{what} job {job.id} failed: {job.error} {again}</p>;
  return null;
}
