// Where the dataset view sends work over a prompt set: a small set to the immediate route
// (/api/dataset/attribute, /api/dataset/ablate: about a second, and no job worker to start, which
// takes 5-30 s for the server's first job), a large one as a job (progress, cancel, its id in
// the address). The line is the server's (GET /api/models `immediate_rows`, `serve
// --immediate-rows`), never a number of the page's own.

export type Route = "immediate" | "job" | "wait";

/** The job named in the address, as far as it is known: none, still being fetched, the job for
 * this very question, or a job for another one (another set, another model). */
export type LinkedJob = "none" | "loading" | "matches" | "other";

/** Whether a set of `rows` prompts runs as a job under the server's `immediateRows`; null until
 * the server said (the caller waits rather than guess). An unknown size runs as a job. */
export function runsAsJob(rows: number | null | undefined, immediateRows: number | null | undefined): boolean | null {
  if (immediateRows === null || immediateRows === undefined) return null;
  return rows === null || rows === undefined || !(rows <= immediateRows);
}

/** The route of the question over the set. A job the address names is followed whatever the
 * set's size (a link to a job opens that job); a model the server runs no jobs for (409) is
 * asked immediately; otherwise the set's size decides. */
export function datasetRoute(o: { rows: number | null | undefined; immediateRows: number | null | undefined;
  linked: LinkedJob; unavailable: boolean }): Route {
  if (o.unavailable) return "immediate";
  if (o.linked === "loading") return "wait";
  if (o.linked === "matches") return "job";
  const job = runsAsJob(o.rows, o.immediateRows);
  return job === null ? "wait" : job ? "job" : "immediate";
}
