// Long work as jobs in the page: dataset attribution over a prompt set is submitted as a job,
// its progress streamed (Server-Sent Events), its id kept in the address (#attribute-job=ID) so
// a reload follows the same job to its result; cancel stops it and stays cancelled on reload;
// "intervene over the set" is a job too (#ablate-job=ID). Sets above the server's immediate_rows
// (GET /api/models, `serve --immediate-rows`, 64 by default) run as jobs; a link naming a job
// opens that job whatever the set's size.
import { expect, test, type Page } from "@playwright/test";
import { open, shot } from "./helpers";

const hashJob = (page: Page, key: string) => new URLSearchParams(new URL(page.url()).hash.replace(/^#/, "")).get(key);

/** Requests the page makes whose path matches. */
function watch(page: Page, pattern: RegExp) {
  const urls: string[] = [];
  page.on("request", (r) => { if (pattern.test(new URL(r.url()).pathname)) urls.push(`${r.method()} ${new URL(r.url()).pathname}`); });
  return urls;
}

test("dataset attribution runs as a job: progress streamed, a reload follows the same job to its result", async ({ page, request }) => {
  test.setTimeout(150_000); // a 300-row attribution, then an ablation over the set, on a small CPU box
  const submits = watch(page, /^\/api\/jobs\/dataset\/attribute$/);
  const streams = watch(page, /^\/api\/jobs\/[^/]+\/events$/);
  await open(page, { view: "dataset", ds: JSON.stringify({ builtin: "ioi", id: null, n: 300, seed: 5 }) });
  await expect(page.getByTestId("attribute-progress")).toBeVisible({ timeout: 15_000 });
  await expect(page.getByTestId("attribute-bar")).toBeVisible();
  await shot(page, "jobs-01-attribution-progress");
  const id = hashJob(page, "attribute-job");
  expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
  expect(submits).toEqual(["POST /api/jobs/dataset/attribute"]); // one job, not one per render
  await expect.poll(() => streams.length).toBeGreaterThan(0); // progress came over the event stream
  expect(streams[0]).toBe(`GET /api/jobs/${id}/events`);

  await page.reload(); // mid-way (or just after): the address names the job, which is followed, not submitted again
  await expect(page.getByTestId("dataset-metric")).toBeVisible({ timeout: 60_000 });
  expect(hashJob(page, "attribute-job")).toBe(id);
  expect(submits).toHaveLength(1);
  const job = await (await request.get(`/api/jobs/${id}`)).json();
  expect(job.status).toBe("done");
  expect(job.request.promptset).toMatchObject({ builtin: "ioi", n: 300, seed: 5 });
  await expect(page.getByTestId("dataset-metric")).toHaveText(job.result.metric_mean.toFixed(3));
  await expect(page.getByText(`${job.result.n_prompts} prompts`)).toBeVisible();
  await expect(page.getByTestId("attribute-progress")).toHaveCount(0);
  await shot(page, "jobs-02-attribution-done");

  // leave for another page and come back with the address: the stored result at once, no new job
  const address = page.url();
  await page.goto("about:blank");
  await page.goto(address);
  await expect(page.getByTestId("dataset-metric")).toHaveText(job.result.metric_mean.toFixed(3), { timeout: 30_000 });
  expect(submits).toHaveLength(1);

  // intervene over the set: a job as well, its id beside the attribution's in the address
  await page.getByTestId("add-top").click();
  await page.getByTestId("ablate-set").click();
  await expect(page.getByTestId("ablate-result")).toBeVisible({ timeout: 60_000 });
  const ablateId = hashJob(page, "ablate-job");
  expect(hashJob(page, "attribute-job")).toBe(id);
  const ablated = await (await request.get(`/api/jobs/${ablateId}`)).json();
  expect(ablated.kind).toBe("dataset_ablate");
  await expect(page.getByTestId("ablate-result")).toContainText(ablated.result.after_mean.toFixed(3));
  await page.reload();
  await expect(page.getByTestId("ablate-result")).toContainText(ablated.result.after_mean.toFixed(3), { timeout: 30_000 });
});

test("a running attribution job is cancelled from the page, and stays cancelled after a reload", async ({ page, request }) => {
  const submits = watch(page, /^\/api\/jobs\/dataset\/attribute$/);
  await open(page, { view: "dataset", ds: JSON.stringify({ builtin: "ioi", id: null, n: 500, seed: 6 }) });
  await expect(page.getByTestId("attribute-cancel")).toBeVisible({ timeout: 15_000 });
  await page.getByTestId("attribute-cancel").click();
  await expect(page.getByTestId("attribute-cancelled")).toBeVisible({ timeout: 15_000 });
  const id = hashJob(page, "attribute-job");
  expect((await (await request.get(`/api/jobs/${id}`)).json()).status).toBe("cancelled");
  await expect(page.getByTestId("dataset-metric")).toHaveCount(0);
  await shot(page, "jobs-03-attribution-cancelled");
  await page.reload();
  await expect(page.getByTestId("attribute-cancelled")).toBeVisible({ timeout: 15_000 });
  expect(submits).toHaveLength(1); // the cancelled job is shown, not silently run again
  await page.getByTestId("attribute-rerun").click(); // until asked
  await expect(page.getByTestId("attribute-progress")).toBeVisible({ timeout: 15_000 });
  expect(hashJob(page, "attribute-job")).not.toBe(id);
  await page.getByTestId("attribute-cancel").click();
  await expect(page.getByTestId("attribute-cancelled")).toBeVisible({ timeout: 15_000 });
});

test("a link naming a job for a small set opens that job, not the immediate route", async ({ page, request }) => {
  const immediate = watch(page, /^\/api\/dataset\/attribute$/);
  const submits = watch(page, /^\/api\/jobs\/dataset\/attribute$/);
  const ds = { builtin: "ioi", id: null, n: 12, seed: 7 };
  expect((await (await request.get("/api/models")).json()).immediate_rows).toBeGreaterThanOrEqual(ds.n);
  const posted = await (await request.post("/api/jobs/dataset/attribute", { data: {
    model: "default", promptset: { builtin: ds.builtin, n: ds.n, seed: ds.seed }, top_k: 100, drill: 8 } })).json();
  await page.goto("/?" + new URLSearchParams({ v: "1", view: "dataset", ds: JSON.stringify(ds) }).toString() +
    `#attribute-job=${posted.id}`);
  await expect(page.getByTestId("dataset-metric")).toBeVisible({ timeout: 60_000 });
  const job = await (await request.get(`/api/jobs/${posted.id}`)).json();
  expect(job.status).toBe("done");
  await expect(page.getByTestId("dataset-metric")).toHaveText(job.result.metric_mean.toFixed(3));
  expect(hashJob(page, "attribute-job")).toBe(posted.id);
  expect(immediate).toEqual([]);
  expect(submits).toEqual([]);
  // the same set without the link: the immediate route, the same numbers, no job
  await page.goto("/?" + new URLSearchParams({ v: "1", view: "dataset", ds: JSON.stringify(ds) }).toString());
  await expect(page.getByTestId("dataset-metric")).toHaveText(job.result.metric_mean.toFixed(3), { timeout: 30_000 });
  expect(immediate).toEqual(["POST /api/dataset/attribute"]);
  expect(submits).toEqual([]);
  expect(hashJob(page, "attribute-job")).toBeNull();
});
