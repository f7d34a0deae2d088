"""Wiring jobs into the app: the executor (local worker processes, or Ray with `--ray`), the
manager, the routes, and the dataset batch size."""

from __future__ import annotations


def attach_jobs(app, settings, dbg, store, promptset, errors) -> None:
    from ..jobs import JobManager, LocalExecutor, RayExecutor, recipes_for
    from .job_routes import add_job_routes

    dbg.batch_size = settings.batch_size
    executor = settings.job_executor
    if executor is None:
        recipes = recipes_for(dbg, settings)
        if settings.ray:
            executor = RayExecutor(recipes, n=settings.job_workers, address=settings.ray)
        else:
            executor = LocalExecutor(recipes, n=settings.job_workers)
    app.state.jobs = JobManager(store, dbg, executor, batch_size=settings.batch_size,
                                time_limit=settings.job_time_limit, mining_dir=settings.mining_dir)
    if settings.mining_dir is not None:  # a finished mining job's store is served at once, by every replica
        dbg.find_explanations = app.state.jobs.mined_store
    add_job_routes(app, app.state.jobs, promptset, errors, settings)
