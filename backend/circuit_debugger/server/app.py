"""FastAPI app: a thin layer over `engine.Debugger`. Build it with `create_app(settings)`;
importing this module starts nothing and loads no model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import torch

from ..engine import Debugger, Limits
from ..errors import UserError
from ..promptsets import slot_order
from ..storage import Store
from . import graph_schemas as GS
from . import schemas as S
from .cli_security import LIMIT_DEFAULTS
from .hardening import document_statuses, install_guards
from .validation import validation_detail

log = logging.getLogger("circuit_debugger.server")
DEV_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")  # `npm run dev` (Vite)


@dataclass
class Settings:
    models: list[str] = field(default_factory=lambda: ["default"])  # 'default', directories or hub names
    autoencoders: dict[str, list[str]] = field(default_factory=dict)  # model name -> autoencoder directories
    explanations: dict[str, str] = field(default_factory=dict)  # model name -> explanations SQLite file
    # browser origins allowed to call the API cross-origin (same-origin pages need none): the Vite dev server
    cors_origins: list[str] = field(default_factory=lambda: list(DEV_ORIGINS))
    allowed_hosts: list[str] = field(default_factory=lambda: ["*"])  # Host header names served (the CLI narrows it)
    auth_token_file: Optional[str] = None  # hashed access tokens (see server/access.py); None: no tokens
    identity_header: Optional[str] = None  # a trusted reverse proxy's user header, e.g. X-Forwarded-User
    # limits: the defaults are the `serve` flags' (server/cli_security.py LIMITS), one table
    max_body_bytes: int = int(LIMIT_DEFAULTS["max_body_mb"] * 1024 * 1024)  # 413 above (before reading)
    body_timeout: float = LIMIT_DEFAULTS["body_timeout"]  # seconds a request body may take to arrive (408 after)
    max_pending_per_client: int = LIMIT_DEFAULTS["max_pending_per_client"]  # in flight per client (identity or address)
    rate_limit: int = LIMIT_DEFAULTS["rate_limit"]  # API requests per minute per client (0: no limit)
    max_streams_per_client: int = LIMIT_DEFAULTS["max_streams_per_client"]  # open job progress streams per client
    max_streams: int = LIMIT_DEFAULTS["max_streams"]  # open job progress streams in all
    stream_lifetime: float = LIMIT_DEFAULTS["stream_lifetime"]  # seconds before a progress stream asks to be reopened
    stream_heartbeat: float = 15.0  # seconds between a progress stream's `: ping` comments
    max_tokens: Optional[int] = LIMIT_DEFAULTS["max_tokens"]
    max_top_k: int = LIMIT_DEFAULTS["max_top_k"]
    max_graph_latents: int = LIMIT_DEFAULTS["max_graph_latents"]
    max_reference_prompts: int = LIMIT_DEFAULTS["max_reference_prompts"]
    max_pending: int = LIMIT_DEFAULTS["max_pending"]  # API requests in flight beyond which the server answers 503
    cache_size: int = LIMIT_DEFAULTS["cache_size"]  # whole results kept (LRU); clean passes and cores: a quarter
    response_cache_mb: float = LIMIT_DEFAULTS["response_cache_mb"]  # answers' bytes kept (server/response_cache.py); 0: off
    immediate_rows: int = LIMIT_DEFAULTS["immediate_rows"]  # the UI's line between immediate dataset routes and jobs
    device: Optional[str] = None
    dtype: Optional[str] = None  # 'float32' (default), 'float16' or 'bfloat16'
    device_map: Optional[str] = None  # 'auto', 'balanced' or JSON {module: device}; models other than 'default'
    offload_dir: Optional[str] = None  # where a device map's 'disk' modules keep their weights
    share_db: str = ":memory:"  # the database: an SQLite file, ':memory:' (this process only) or postgresql://...
    db_timeout: float = 2.0  # seconds a write waits for a locked database before answering 503
    job_workers: int = 1  # local worker processes for jobs (each holds its own model copies)
    ray: Optional[str] = None  # run jobs on Ray actors instead: 'auto' or a cluster address
    batch_size: int = 64  # prompts per forward in dataset attribution (bounds memory)
    job_time_limit: float = 3600.0  # seconds after which the server stops a job
    request_time_limit: float = 300.0  # seconds after which a dataset/circuit request is stopped (503)
    mining_dir: Optional[str] = None  # mining/training jobs: corpora in <dir>/corpora, output in <dir>/jobs (None: none)
    job_executor: object = None  # a ready executor (tests, embedding); default: built from the fields above
    frontend_dir: Optional[str] = None  # the built UI; default: the repository's frontend/dist
    serve_frontend: bool = True
    public_url: Optional[str] = None  # the UI's address in MCP results' links (default: the address the client used)
    mcp_hosts: list[str] = field(default_factory=list)  # Host names /mcp accepts beyond loopback ('*': any)
    mcp_writes: bool = False  # MCP tools beyond create_share that write (store prompt sets, explain nodes)


def limits_of(settings: Settings) -> Limits:
    return Limits(max_top_k=settings.max_top_k, max_graph_latents=settings.max_graph_latents,
                  max_reference_prompts=settings.max_reference_prompts)


def load_debugger(settings: Settings) -> tuple[Debugger, dict[str, str]]:
    """Load every configured model; one that fails is reported, the rest still load."""
    from ..loading import ModelLoadError, load_model

    dbg = Debugger(cache_size=settings.cache_size, limits=limits_of(settings))
    failed: dict[str, str] = {}
    for spec in dict.fromkeys(settings.models):
        try:
            m = load_model(spec, device=settings.device, dtype=getattr(torch, settings.dtype) if settings.dtype else None,
                           device_map=None if spec == "default" else settings.device_map,
                           offload_dir=settings.offload_dir)
        except Exception as e:  # whatever the reason, the other models still serve
            failed[spec] = str(e) if isinstance(e, (ModelLoadError, UserError)) else f"{type(e).__name__}: {e}"
            log.error("model %s not loaded: %s", spec, e)
            continue
        if settings.max_tokens:
            m.max_tokens = min(m.max_tokens, settings.max_tokens)
        from ..autoencoders import load_onto

        if m.dtype != torch.float32:  # the autoencoder paths compute in float32 only
            from ..autoencoders.splice import AutoencoderSet

            if m.autoencoders or settings.autoencoders.get(m.name):
                m.load_errors["autoencoders"] = f"SAEs and transcoders need float32 (the model is {m.dtype})"
            m.autoencoders = AutoencoderSet()
        else:
            for directory in settings.autoencoders.get(m.name, []):
                m.load_errors.update(load_onto(m, directory))
        for part, why in m.load_errors.items():
            failed[f"{m.name}: {part}"] = why
            log.error("%s: %s not loaded: %s", m.name, part, why)
        dbg.add_model(m)
        _attach_explanations(dbg, m.name, settings.explanations.get(m.name), failed)
    return dbg, failed


def _attach_explanations(dbg, name: str, path: Optional[str], failed: dict) -> None:
    """The database given for this model, else the one shipped for an embedded model (by name:
    explanations/default.sqlite, explanations/llama.sqlite) when it exists."""
    from ..embedded import EMBEDDED, embedded_name, shipped_explanations

    if path is None and name in EMBEDDED and embedded_name(dbg.model(name)) == name:
        path = str(shipped_explanations(name))
        if not Path(path).exists():
            return
    if path is None:
        return
    try:
        dbg.attach_explanations(name, path)
    except Exception as e:  # a missing or malformed database must not stop the server
        failed[f"{name}: explanations"] = f"{path}: {e}"


def _interventions(items: list[S.InterventionIn]) -> list[dict]:
    return [i.model_dump(exclude={"enabled"}) for i in items if i.enabled]


def create_app(settings: Settings | None = None, debugger: Debugger | None = None,
               failed: dict[str, str] | None = None) -> FastAPI:
    settings = settings or Settings()
    shares = Store(settings.share_db, settings.db_timeout)  # first: a bad database stops the start before models load
    if debugger is None:
        debugger, failed = load_debugger(settings)
    failed = failed or {}
    dbg = debugger
    app = FastAPI(title="Circuit Debugger", version="0.1.0",
                  description="Why did the model say A and not B? Attribute, intervene, trace upstream.")
    install_guards(app, settings)
    app.state.debugger = dbg
    app.state.shares = shares
    from .storage_errors import install as install_storage_errors

    install_storage_errors(app)

    @app.exception_handler(UserError)
    async def user_error(_: Request, e: UserError):
        return JSONResponse({"detail": e.message}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        return JSONResponse({"detail": validation_detail(e.errors())}, status_code=422)

    @app.exception_handler(MemoryError)
    @app.exception_handler(torch.OutOfMemoryError)
    async def out_of_memory(_: Request, e: Exception):
        log.error("request ran out of memory: %s", e)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return JSONResponse({"detail": "out of memory for this request: use a shorter prompt, fewer rows or a smaller "
                                       "graph"}, status_code=503)

    errors = {422: {"model": S.ErrorBody}, 404: {"model": S.ErrorBody}, 413: {"model": S.ErrorBody}}

    @app.get("/api/health", response_model=S.Health)
    def health():
        return {"status": "ok", "models": sorted(dbg.models)}

    @app.get("/api/models", response_model=S.ModelsResponse)
    def models():
        return {"models": [{**m.describe(), "supports": dbg.capabilities(m.name)} for m in dbg.models.values()],
                "failed": failed, "immediate_rows": settings.immediate_rows}

    @app.post("/api/attribute", response_model=S.AttributeResponse, responses=errors)
    def attribute(req: S.AttributeRequest):
        """Why the model says `target` and not `distractor`: every node's activation, direct
        effect and act×grad total effect (and, with interventions, the baseline beside them)."""
        return dbg.attribute(
            req.model, req.prompt, req.target, req.distractor, req.position,
            interventions=_interventions(req.interventions), counterfactual_prompt=req.counterfactual_prompt,
            reference_prompts=req.reference_prompts, top_k=req.top_k, granularity=req.granularity,
            verify_top=req.verify_top, mlp_basis=req.mlp_basis, attn_basis=req.attn_basis, resid_basis=req.resid_basis)

    @app.post("/api/trace", response_model=S.AttributeResponse, responses=errors)
    def trace(req: S.TraceRequest):
        """The same table with an upstream node as the target."""
        return dbg.trace(
            req.model, req.prompt, req.target.model_dump(),
            interventions=_interventions(req.interventions), counterfactual_prompt=req.counterfactual_prompt,
            reference_prompts=req.reference_prompts, top_k=req.top_k, granularity=req.granularity,
            verify_top=req.verify_top, mlp_basis=req.mlp_basis, attn_basis=req.attn_basis, resid_basis=req.resid_basis)

    @app.post("/api/intervene", response_model=S.InterveneResponse, responses=errors)
    def intervene(req: S.InterveneRequest):
        """Re-run with interventions; new and baseline predictions side by side."""
        return dbg.intervene(req.model, req.prompt, _interventions(req.interventions), target=req.target,
                             distractor=req.distractor, position=req.position,
                             counterfactual_prompt=req.counterfactual_prompt,
                             reference_prompts=req.reference_prompts, top=req.top)

    @app.post("/api/graph", response_model=GS.GraphResponse, responses=errors)
    def graph(req: GS.GraphRequest):
        """Attribution graph (heads, neurons, latents, errors as chosen; QK edges for heads); pruned."""
        return dbg.graph(req.model, req.prompt, req.target, req.distractor, req.position, req.node_threshold,
                         req.edge_threshold, req.max_latents, req.pruning, req.attn, req.mlp,
                         req.neurons_per_position, req.qk_per_head, _interventions(req.interventions), req.max_nodes)

    @app.post("/api/graph/export", responses=errors)
    def graph_export(req: GS.GraphExportRequest) -> dict:
        """The graph in circuit-tracer's / Neuronpedia's JSON, with pins, supernodes and notes."""
        return dbg.graph_export(req.graph.model_dump(), req.pins, [s.model_dump() for s in req.supernodes],
                                req.notes, req.slug)

    @app.post("/api/graph/import", response_model=GS.GraphImportResponse, responses=errors)
    def graph_import(data: dict):
        """Read a circuit-tracer / Neuronpedia graph JSON (ours or theirs) to view it."""
        return GS.validated_import(dbg.graph_import(data))

    @app.post("/api/latent/inputs", responses=errors)
    def latent_inputs(req: S.LatentInputsRequest) -> dict:
        """What feeds a transcoder latent on this prompt (contributions sum to its pre-activation)."""
        return dbg.latent_inputs(req.model, req.prompt, req.node, req.k)

    @app.post("/api/latent/weights", responses=errors)
    def latent_weights(req: S.LatentWeightsRequest) -> dict:
        """A transcoder latent's connections by weights alone: upstream, de-embedding, downstream."""
        return dbg.latent_weights(req.model, req.node, req.k)

    @app.get("/api/explanations/{model:path}/node/{node}", response_model=S.NodeExplanationResponse, responses=errors)
    def node_explanation(model: str, node: str, offset: int = 0, limit: int = 10):
        """A node's top-activating and sampled examples (paginated), statistics and explanations."""
        return dbg.node_explanation(model, node, offset, limit)

    @app.post("/api/explain", responses=errors)
    def explain(req: S.ExplainRequest) -> dict:
        """Explain a node now (offline, or with the configured LLM) and store the explanation."""
        return dbg.explain(req.model, req.node, req.explainer)

    @app.post("/api/outputs", response_model=S.OutputsResponse, responses=errors)
    def outputs(req: S.OutputsRequest):
        """The model's output at every position (testbeds: the program's output, decoded)."""
        return dbg.outputs(req.model, req.prompt)

    @app.get("/api/models/{name:path}/ground-truth", response_model=S.GroundTruthResponse, responses=errors)
    def ground_truth(name: str):
        """A tracr testbed's RASP ops and the heads / neurons implementing each."""
        return dbg.ground_truth(name)

    @app.post("/api/tokenize", response_model=S.TokenizeResponse, responses=errors)
    def tokenize(req: S.TokenizeRequest):
        return dbg.tokenize(req.model, req.text, req.kind)

    @app.post("/api/attention", response_model=S.AttentionResponse, responses=errors)
    def attention(req: S.AttentionRequest):
        return dbg.attention(req.model, req.prompt, req.layer, req.head)

    @app.post("/api/logit-lens", response_model=S.LogitLensResponse, responses=errors)
    def logit_lens(req: S.LogitLensRequest):
        return dbg.logit_lens(req.model, req.node, req.prompt, req.position, req.k)

    @app.post("/api/activations", response_model=S.ActivationsResponse, responses=errors)
    def activations(req: S.ActivationsRequest):
        """One node's activation at every token of the prompt."""
        return dbg.activations(req.model, req.prompt, req.node)

    @app.post("/api/shares", response_model=S.ShareResponse, status_code=201, responses=errors)
    def create_share(req: S.ShareCreate):
        """Store an investigation under a new unguessable id (stored ones never change)."""
        return shares.create(req.state.model_dump(mode="json"))

    @app.get("/api/shares/{share_id}", response_model=S.ShareResponse, responses=errors)
    def get_share(share_id: str):
        return shares.get(check_id(share_id))

    def promptset(spec: S.PromptSetSpec) -> dict:
        """A request's prompt set as an engine spec (a stored id becomes its rows)."""
        if spec.id is not None:
            if any(x is not None for x in (spec.builtin, spec.template, spec.text, spec.rows)):
                raise UserError("give a stored prompt set's id or a source, not both")
            stored = shares.get(check_id(spec.id), "promptsets")["state"]
            return {"rows": stored["rows"], "name": stored["name"]}
        return spec.model_dump(exclude={"id", "format"} if spec.text is None else {"id"}, exclude_none=True)

    def check_id(sid: str) -> str:
        if not (1 <= len(sid) <= 64 and sid.replace("-", "").replace("_", "").isalnum()):
            raise UserError("an id is 1-64 letters, digits, '-' or '_'", 404)
        return sid

    def promptset_out(sid, ps) -> dict:
        return {"id": sid, "name": ps["name"], "description": ps.get("description", ""),
                "slots": slot_order(r["slots"] for r in ps["rows"]), "rows": ps["rows"]}

    @app.post("/api/promptsets", response_model=S.PromptSetResponse, status_code=201, responses=errors)
    def create_promptset(req: S.PromptSetRequest):
        """Build a prompt set (ready-made, template, pasted JSONL/CSV or rows) and store it under
        a new unguessable id; stored sets never change."""
        if req.spec.id is not None:
            raise UserError("to create a prompt set give its source, not an id")
        ps = dbg.prompt_set(req.model, promptset(req.spec)).to_dict()
        return promptset_out(shares.create(ps, "promptsets")["id"], ps)

    @app.get("/api/promptsets/{set_id}", response_model=S.PromptSetResponse, responses=errors)
    def get_promptset(set_id: str):
        return promptset_out(set_id, shares.get(check_id(set_id), "promptsets")["state"])

    from .abandon import run_stoppable  # long requests stop when their client leaves or at the time limit

    @app.post("/api/dataset/attribute", response_model=S.DatasetAttributeResponse, responses=errors)
    async def dataset_attribute(req: S.DatasetAttributeRequest, request: Request):
        """Why A and not B over a prompt set (batched): per node mean and spread, per slot, per prompt."""
        return await run_stoppable(request, lambda: dbg.dataset_attribute(
            req.model, promptset(req.promptset), req.top_k, req.drill), settings.request_time_limit)

    @app.post("/api/dataset/ablate", response_model=S.DatasetAblateResponse, responses=errors)
    async def dataset_ablate(req: S.DatasetAblateRequest, request: Request):
        """Ablate nodes (optionally at a slot) on every prompt of a set; the metric before and after."""
        return await run_stoppable(request, lambda: dbg.dataset_ablate(
            req.model, promptset(req.promptset), req.nodes, req.ablation), settings.request_time_limit)

    @app.post("/api/circuit/evaluate", response_model=S.CircuitResponse, responses=errors)
    async def circuit_evaluate(req: S.CircuitRequest, request: Request):
        """Faithfulness, completeness and minimality of a circuit over a prompt set."""
        return await run_stoppable(request, lambda: dbg.evaluate_circuit(
            req.model, promptset(req.promptset), req.nodes, req.ablation, req.n_random, req.greedy_steps, req.seed),
            settings.request_time_limit)

    from .jobs_setup import attach_jobs

    attach_jobs(app, settings, dbg, shares, promptset, errors)

    from .ui_routes import router as ui_router

    app.include_router(ui_router(dbg, errors))

    from .mcp_server import mount_mcp

    mount_mcp(app, settings.public_url, settings.mcp_hosts, settings.mcp_writes)  # MCP at /mcp (before the UI's catch-all route)
    if settings.serve_frontend:
        from .static import mount_frontend

        mount_frontend(app, settings.frontend_dir)
    document_statuses(app, limits_of(settings))
    return app
