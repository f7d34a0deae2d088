"""Job routes: submit (202 + the job), poll, cancel. The work runs on the job executor's
workers, never on the model that answers interactive requests."""

from __future__ import annotations

from fastapi import FastAPI

from . import dataset_schemas as D
from .job_schemas import JobResponse, MineRequest, TrainRequest


def add_job_routes(app: FastAPI, jobs, promptset, errors: dict, settings) -> None:
    """`promptset`: the app's spec converter (a stored prompt set's id becomes its rows);
    `settings`: the progress streams' caps (server/job_events.py)."""

    def check(jid: str) -> str:
        from ..errors import NotFound

        if not (1 <= len(jid) <= 64 and jid.replace("-", "").replace("_", "").isalnum()):
            raise NotFound(f"no job with id {jid!r}"[:100])
        return jid

    @app.post("/api/jobs/dataset/attribute", response_model=JobResponse, status_code=202, responses=errors)
    def job_dataset_attribute(req: D.DatasetAttributeRequest):
        """Dataset attribution as a job (any set size; memory bounded by the server's batch size)."""
        return jobs.submit("dataset_attribute", req.model, promptset(req.promptset),
                           {"top_k": req.top_k, "drill": req.drill}, req.model_dump(mode="json"))

    @app.post("/api/jobs/dataset/ablate", response_model=JobResponse, status_code=202, responses=errors)
    def job_dataset_ablate(req: D.DatasetAblateRequest):
        """Ablation over a prompt set as a job."""
        return jobs.submit("dataset_ablate", req.model, promptset(req.promptset),
                           {"nodes": list(req.nodes), "ablation": req.ablation}, req.model_dump(mode="json"))

    @app.post("/api/jobs/circuit/evaluate", response_model=JobResponse, status_code=202, responses=errors)
    def job_circuit_evaluate(req: D.CircuitRequest):
        """Circuit evaluation (faithfulness, completeness, minimality) as a job."""
        return jobs.submit("circuit_evaluate", req.model, promptset(req.promptset),
                           {"nodes": list(req.nodes), "ablation": req.ablation, "n_random": req.n_random,
                            "greedy_steps": req.greedy_steps, "seed": req.seed}, req.model_dump(mode="json"))

    @app.post("/api/jobs/explanations/mine", response_model=JobResponse, status_code=202,
              responses={**errors, 409: errors[404]})  # 409: no mining folder, or already mining this
    def job_mine_explanations(req: MineRequest):
        """Explanation mining as a job (progress in miner batches); the same request resumes."""
        return jobs.submit("mine_explanations", req.model, {}, req.model_dump(exclude={"model"}),
                           req.model_dump(mode="json"))

    @app.post("/api/jobs/autoencoders/train", response_model=JobResponse, status_code=202,
              responses={**errors, 409: errors[404]})  # 409: no job folder, or already training this
    def job_train_autoencoders(req: TrainRequest):
        """ReLU+L1 autoencoder training as a job (progress in steps; cancellable); the same
        request resumes to the same weights. The result: metrics per layer and the folder."""
        params = req.model_dump(exclude={"model", "kind"})
        return jobs.submit("train_autoencoders", req.model, {}, {**params, "ae_kind": req.kind},
                           req.model_dump(mode="json"))

    @app.get("/api/jobs/{job_id}", response_model=JobResponse, responses=errors)
    def get_job(job_id: str):
        """A job's status and progress; its result once done."""
        return jobs.get(check(job_id))

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobResponse, responses=errors)
    def cancel_job(job_id: str):
        """Stop a job (its running work is stopped at once; finished jobs are unchanged)."""
        return jobs.cancel(check(job_id))

    from .job_events import add_job_event_routes

    add_job_event_routes(app, jobs, check, errors, per_client=settings.max_streams_per_client,
                         total=settings.max_streams, lifetime=settings.stream_lifetime,
                         heartbeat=settings.stream_heartbeat)
