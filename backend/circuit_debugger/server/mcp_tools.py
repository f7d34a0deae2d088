"""MCP tools over the HTTP API's own routes: one source for arguments, limits and messages.

Each tool names an HTTP route. Its input schema is the route's request model (the same pydantic
class FastAPI validates, extended only by the display arguments `rows` and `full`); a call is
validated by that model, worded by the same `validation_detail` as the HTTP 422, and then runs
the route's endpoint function itself, so a `UserError` carries the same message (and status)
as the 4xx. The result is compacted (mcp_compact) and gets the UI link that reproduces it
(mcp_links). Read-only except `create_share`, the one write, exactly as `POST /api/shares`.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import anyio
import mcp_types as types
import torch
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import PydanticUndefined

from ..errors import UserError
from .mcp_compact import COMPACT
from .mcp_links import link, share_link, state_for, state_of
from .routes import api_routes
from .schema_base import Strict
from .validation import validation_detail

log = logging.getLogger("circuit_debugger.mcp")

ROWS_MAX = 500
NODE_IDS = "Node ids: heads 'L1.H3', neurons 'L0.N17', sublayers 'L2.MLP' / 'L2.ATTN', residual 'L0.RESID', " \
           "transcoder / SAE latents 'L1.T300' / 'L1.S12'; '@7' pins a position (or '@S2' a prompt-set slot)."


@dataclass(frozen=True)
class ToolDef:
    name: str
    method: str
    path: str
    title: str
    description: str
    write: bool = False
    opt_in: bool = False  # a further write, offered only with --mcp-writes


TOOLS = [
    ToolDef("list_models", "GET", "/api/models", "List models",
            "The loaded models: architecture (layers, heads, widths, normalization, context), the dictionaries "
            "loaded on each (transcoders / SAEs per layer, with their widths) and any model that failed to load."),
    ToolDef("tokenize", "POST", "/api/tokenize", "Tokenize",
            "How a model tokenizes text. kind='output' checks that a target / distractor is exactly one token "
            "(mind the leading space: ' Mary')."),
    ToolDef("attribute", "POST", "/api/attribute", "Why A and not B",
            "Why does the model say `target` and not `distractor` after `prompt`? Every node's direct effect "
            "(exact: they sum to the logit difference) and act×grad total effect, optionally under "
            "interventions (zero / mean / patch / scale / add on any node; rows then carry baseline values). "
            "Rows are sorted by |total effect|. " + NODE_IDS),
    ToolDef("intervene", "POST", "/api/intervene", "Intervene",
            "Re-run the prompt with interventions (e.g. [{'node': 'L2.H1', 'op': 'zero'}]) and compare predictions "
            "and the target−distractor logit difference with the clean run (`change`). " + NODE_IDS),
    ToolDef("trace", "POST", "/api/trace", "Trace upstream",
            "The attribution table for an upstream quantity instead of the logits: a neuron's pre-activation "
            "(kind 'neuron'), a head's attention score from a query to a key (kind 'attention', through the "
            "query or the key side), a head's output along a later neuron's input (kind 'head_output'), or a "
            "transcoder / SAE latent (kind 'latent')."),
    ToolDef("exact_effects", "POST", "/api/effects", "Exact effects",
            "Check the act×grad estimate: every head's (and with neurons=true every neuron's) exact effect of zero- "
            "or mean-ablating it, beside the estimate and integrated gradients, with rows flagged where they "
            "disagree in sign or size. Sorted by |exact effect|. For a question (target / distractor) or a trace."),
    ToolDef("generate", "POST", "/api/generate", "Generate",
            "A continuation of the prompt with and without the interventions, token by token with probabilities "
            "(greedy at temperature 0)."),
    ToolDef("attention", "POST", "/api/attention", "Attention pattern",
            "A layer's attention patterns (or one head's). Compact: each head's strongest keys from the last "
            "query token; full=true gives pattern[query][key]."),
    ToolDef("logit_lens", "POST", "/api/logit-lens", "Logit lens",
            "The output tokens a node's write promotes and suppresses (weights alone, or on a prompt at a position)."),
    ToolDef("activations", "POST", "/api/activations", "Activations",
            "One head's, neuron's or latent's activation at every token of a prompt (heads: the norm of their write)."),
    ToolDef("node_explanation", "GET", "/api/explanations/{model:path}/node/{node}", "Explain a node",
            "A node's stored explanations with their scores, activation statistics and top-activating examples "
            "(the token the example is centred on is marked [[like this]]); offset / limit page through examples."),
    ToolDef("attribution_graph", "POST", "/api/graph", "Attribution graph",
            "The attribution graph through the transcoders (latents, embeddings, error nodes, the target), "
            "pruned by node and edge influence thresholds. Needs transcoders on the model (see list_models)."),
    ToolDef("dataset_attribute", "POST", "/api/dataset/attribute", "Dataset attribution",
            "Why A and not B over a whole prompt set (builtin 'ioi' / 'greater_than' / 'induction', a template, "
            "rows, JSONL/CSV text or a stored id): each node's mean and spread of total and direct effect, "
            "and per template slot (S1, IO, S2, END ...)."),
    ToolDef("dataset_ablate", "POST", "/api/dataset/ablate", "Ablate over a prompt set",
            "Ablate nodes (mean / resample / zero / patch; a node may be pinned to a slot, 'L1.H3@S2') on every "
            "prompt of a set: the metric before and after."),
    ToolDef("evaluate_circuit", "POST", "/api/circuit/evaluate", "Evaluate a circuit",
            "Faithfulness (the circuit alone vs the model vs nothing), completeness and minimality of a set of "
            "nodes (heads, optionally at slots, and latents) over a prompt set."),
    ToolDef("get_share", "GET", "/api/shares/{share_id}", "Open a share",
            "A stored investigation by id (what a /s/<id> link shows)."),
    ToolDef("create_share", "POST", "/api/shares", "Create a share",
            "Store an investigation (immutable, under a new unguessable id) and get its short link. Pass the "
            "`share_state` another tool returned as `state`. The only tool that writes by default.", write=True),
    ToolDef("create_promptset", "POST", "/api/promptsets", "Store a prompt set",
            "Store a prompt set (template, rows or JSONL/CSV text) under a new unguessable id, immutable like a "
            "share, so dataset tools can use it by id and their results get UI links.", write=True, opt_in=True),
    ToolDef("explain_node", "POST", "/api/explain", "Explain a node now",
            "Explain a node from its mined examples (offline) or with the configured LLM, and store the "
            "explanation in the model's explanations database.", write=True, opt_in=True),
    ToolDef("get_job", "GET", "/api/jobs/{job_id}", "Poll a job",
            "A job's status (queued / running / done / failed / cancelled) and progress (done of total); once done, "
            "its result (mining: the store; training: per-layer CE loss recovered, variance explained, L0; other "
            "jobs: full=true gives the result)."),
    ToolDef("train_autoencoders", "POST", "/api/jobs/autoencoders/train", "Train autoencoders (job)",
            "Submit ReLU+L1 transcoders (kind 'transcoder') or attention-output SAEs ('sae') of chosen layers as a "
            "job on the server's workers; returns the job at once: poll it with get_job. The same request resumes "
            "a cancelled or failed run. Needs a server started with --mining-dir.", write=True, opt_in=True),
    ToolDef("mine_explanations", "POST", "/api/jobs/explanations/mine", "Mine explanations (job)",
            "Submit explanation mining of a model's nodes as a job; returns the job at once: poll it with get_job. "
            "Once done, node_explanation serves the new store. Needs a server started with --mining-dir.",
            write=True, opt_in=True),
    ToolDef("cancel_job", "POST", "/api/jobs/{job_id}/cancel", "Cancel a job",
            "Stop a job (its worker is stopped at once; a finished job is unchanged).", write=True, opt_in=True),
]

INSTRUCTIONS = (
    "Circuit Debugger: ask why a transformer says token A and not token B, then test the answer. Typical "
    "investigation: list_models; attribute (prompt, target, distractor) to find the heads and neurons with the "
    "largest effects; intervene to ablate them and see the logit difference move; attention / logit_lens / "
    "node_explanation to read what a node does; dataset_attribute and evaluate_circuit to check a circuit over a "
    "prompt set (builtin 'ioi'). Results are compact (top rows, rounded; `rows` and `full` give more) and carry "
    "`link`, a URL that opens the same investigation in the web UI; create_share with the returned `share_state` "
    "stores it under a short link for a person to open. " + NODE_IDS)


class Display(Strict):
    """The two arguments every tool adds to its route's request model."""
    rows: Annotated[int, Field(ge=1, le=ROWS_MAX)] = Field(10, description="rows shown in the compact result")
    full: bool = Field(False, description="return the whole, unrounded HTTP API response instead of the compact view")
    node_kind: Optional[Annotated[str, Field(max_length=40)]] = Field(
        None, description="show only node rows of this kind ('head', 'neuron', 'mlp', 'attn', 'embed', ...)")


@dataclass
class Entry:
    tool: ToolDef
    route: APIRoute
    args_model: type[BaseModel]
    body_model: Optional[type[BaseModel]]
    params: list[str]
    response: Optional[TypeAdapter]


def _args_model(tool: ToolDef, route: APIRoute) -> tuple[type[BaseModel], Optional[type[BaseModel]], list[str]]:
    """The tool's arguments: the route's body model (or its path/query parameters) plus `rows` and `full`."""
    extra = {k: (f.annotation, f) for k, f in Display.model_fields.items()}
    if route.dependant.body_params:
        body = route.dependant.body_params[0].field_info.annotation
        extra = {k: v for k, v in extra.items() if k not in body.model_fields}  # the route's own field wins
        return create_model(f"{tool.name}_arguments", __base__=body, __doc__=body.__doc__, **extra), body, []
    fields: dict[str, Any] = {}
    for p in route.dependant.path_params + route.dependant.query_params:
        info = p.field_info
        default = ... if info.default is PydanticUndefined else info.default
        if p.name == "model" and default is ...:  # as in every request body: the default model unless named
            default = "default"
        fields[p.name] = (info.annotation, Field(default, description=info.description))
    return create_model(f"{tool.name}_arguments", __base__=Strict, **fields, **extra), None, list(fields)


def _response_adapter(route: APIRoute) -> Optional[TypeAdapter]:
    rm = route.response_model
    return TypeAdapter(rm) if inspect.isclass(rm) and issubclass(rm, BaseModel) else None


def error_result(detail: str, status: int = 422) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=detail)],
                                structured_content={"status": status, "detail": detail}, is_error=True)


class McpTools:
    """The tool table bound to one FastAPI app's routes (the app a server serves, or one built for stdio)."""

    def __init__(self, app: FastAPI, public_url: Optional[str] = None, writes: bool = False):
        self.app = app
        self.public_url = public_url.rstrip("/") if public_url else None
        routes = {(m, path): r for path, r in api_routes(app.routes) for m in r.methods}
        self.entries: dict[str, Entry] = {}
        for t in TOOLS:
            if t.opt_in and not writes:
                continue
            route = routes.get((t.method, t.path))
            if route is None:  # a route renamed elsewhere: leave the tool out rather than fail to start
                log.warning("MCP tool %s: no route %s %s", t.name, t.method, t.path)
                continue
            args, body, params = _args_model(t, route)
            self.entries[t.name] = Entry(t, route, args, body, params, _response_adapter(route))

        self.listing = [types.Tool(
            name=name, title=e.tool.title, description=e.tool.description, input_schema=e.args_model.model_json_schema(),
            annotations=types.ToolAnnotations(title=e.tool.title, read_only_hint=not e.tool.write, destructive_hint=False,
                                              idempotent_hint=not e.tool.write, open_world_hint=False))
            for name, e in self.entries.items()]

    async def run_route(self, name: str, arguments: dict) -> tuple[Any, BaseModel, dict]:
        """Validate `arguments` for tool `name` and run its route: (request, display args, JSON result).
        Raises UserError (the HTTP 4xx) for anything wrong with the arguments."""
        e = self.entries.get(name)
        if e is None:
            raise UserError(f"no tool {name!r}; the tools are: {', '.join(self.entries)}", 404)
        if not isinstance(arguments, dict):
            raise UserError("arguments must be an object")
        try:
            args = e.args_model.model_validate(arguments)
        except ValidationError as exc:
            raise UserError(validation_detail(exc.errors(include_url=False))) from None
        own = (e.body_model or Strict).model_fields
        rest = {k: v for k, v in arguments.items() if k not in Display.model_fields or k in own}
        # routes that watch their HTTP connection (abandon.run_stoppable) take `request`; a tool
        # call has none, so only the server's time limit stops it
        conn = {"request": None} if "request" in inspect.signature(e.route.endpoint).parameters else {}
        if e.body_model is not None:
            req = e.body_model.model_validate(rest)
            call = lambda: e.route.endpoint(req, **conn)  # noqa: E731
        else:
            req = args
            kwargs = {p: getattr(args, p) for p in e.params}
            call = lambda: e.route.endpoint(**kwargs, **conn)  # noqa: E731
        if inspect.iscoroutinefunction(e.route.endpoint):
            result = await call()
        else:  # the engine is synchronous: keep the event loop free, as FastAPI does
            result = await anyio.to_thread.run_sync(call)
        if e.response is not None:
            result = e.response.dump_python(e.response.validate_python(result), mode="json")
        return req, args, jsonable_encoder(result)

    async def call(self, name: str, arguments: Optional[dict], base_url: Optional[str] = None) -> types.CallToolResult:
        base = self.public_url or (base_url or "http://127.0.0.1:8000").rstrip("/")
        try:
            req, args, result = await self.run_route(name, arguments or {})
        except UserError as exc:
            return error_result(exc.message, exc.status)
        except (MemoryError, torch.OutOfMemoryError) as exc:
            log.error("MCP tool %s ran out of memory: %s", name, exc)
            return error_result("out of memory for this request: use a shorter prompt, fewer rows or a smaller graph", 503)
        except Exception:
            log.exception("MCP tool %s failed", name)
            return error_result("internal error (logged on the server)", 500)
        try:
            return self._present(name, req, args, result, base)
        except Exception:  # a bug in presenting a result must read as an error result, not a protocol error
            log.exception("MCP tool %s: presenting the result failed", name)
            return error_result("internal error (logged on the server)", 500)

    def _present(self, name: str, req, args, result: dict, base: str) -> types.CallToolResult:
        kind = getattr(args, "node_kind", None)
        if kind and isinstance(result.get("nodes"), list):
            result = {**result, "nodes": [n for n in result["nodes"] if n.get("kind") == kind]}
        out = dict(result) if args.full else COMPACT[name](result, req, args.rows)
        if name == "create_promptset":
            out["link"] = link(base, state_of(model=req.model, view="dataset", dataset={"id": result["id"], "n": len(result["rows"])}))
        elif name in ("create_share", "get_share"):
            out["link"] = share_link(base, result["id"])
            if result.get("state"):
                out["ui_link"] = link(base, result["state"])
        else:
            state = state_for(name, req, result)
            if state is not None and kind and name in ("attribute", "trace"):
                state["kind_filter"] = kind
            if state is not None:
                out["link"] = link(base, state)
                out["share_state"] = _non_default(state)
            elif name == "list_models":
                out["link"] = base + "/"
            elif name.startswith(("dataset_", "evaluate_")):
                out["link"] = None
                out["link_note"] = ("an inline prompt set has no UI link: store it (POST /api/promptsets) and pass "
                                    "its id, or use a builtin set")
        if not args.full and out.get("more") is None:
            out.pop("more", None)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(out, ensure_ascii=False))],
                                    structured_content=out)


def _non_default(state: dict) -> dict:
    from .schemas import InvestigationState

    return InvestigationState.model_validate(state).model_dump(mode="json", exclude_defaults=True)
