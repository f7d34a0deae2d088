"""The MCP server, driven by the official SDK's own client over both transports: streamable HTTP
(a real uvicorn server on a loopback port, the app `serve` runs, MCP at /mcp) and stdio (a
`circuit-debugger mcp` subprocess). An agent's investigation of the default model — why Mary and
not John, ablate the top head, evaluate a 3-head circuit on the IOI set, share it — must give the
numbers the HTTP API gives (checked across processes, so no shared cache), the ablation must match
plain HuggingFace hooks, and bad arguments must come back as error results carrying the HTTP 4xx
message, with the session still usable."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "When Mary and John went to the store, John gave a drink to"
WHY = {"prompt": PROMPT, "target": " Mary", "distractor": " John"}
IOI = {"builtin": "ioi", "n": 16, "seed": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_http(db: Path):
    """The app `circuit-debugger serve` runs (its settings from the same command line, so the same
    embedded models as the stdio server), under uvicorn in a thread."""
    import uvicorn

    from circuit_debugger.cli import parser, settings_from
    from circuit_debugger.server.app import create_app

    ap = parser()
    settings = settings_from(ap, ap.parse_args(["serve", "--share-db", str(db)]))
    settings.serve_frontend = False
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _data(result) -> dict:
    assert not result.is_error, result.content[0].text
    out = json.loads(result.content[0].text)
    assert out == result.structured_content
    return out


def _heads(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows if r["kind"] == "head"]


async def _investigate(session, api: httpx.AsyncClient, base: str) -> dict:
    """What an agent does; returns the numbers it saw. Checks each step against the HTTP API."""
    from mcp_types import Tool

    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert {"list_models", "tokenize", "attribute", "intervene", "trace", "attention", "logit_lens", "activations",
            "node_explanation", "attribution_graph", "dataset_attribute", "evaluate_circuit", "create_share",
            "exact_effects", "generate"} <= set(tools)
    assert all(isinstance(t, Tool) for t in tools.values())
    # one source: the tool's schema is the HTTP request model's, plus the display arguments
    from circuit_debugger.server.schemas import AttributeRequest

    schema = tools["attribute"].input_schema
    assert set(schema["properties"]) == set(AttributeRequest.model_json_schema()["properties"]) | {"rows", "full", "node_kind"}
    assert tools["create_share"].annotations.read_only_hint is False
    assert all(t.annotations.read_only_hint for n, t in tools.items() if n != "create_share")

    models = _data(await session.call_tool("list_models", {}))
    assert models["models"][0]["name"] == "default" and models["models"][0]["transcoders"]
    assert models["models"][0]["architecture"]["family"] == "gpt2"

    why = _data(await session.call_tool("attribute", {**WHY, "rows": 8}))
    full = (await api.post("/api/attribute", json=WHY)).json()
    assert why["logit_diff"] == round(full["logit_diff"], 3) and why["tokens"] == full["tokens"]
    by_total = sorted(full["nodes"], key=lambda n: -abs(n["total_effect"]))
    assert [r["id"] for r in why["nodes_by_abs_total_effect"]] == [n["id"] for n in by_total[:8]]
    assert "rows=N" in why["more"] and why["link"].startswith(base + "/?v=1&")
    heads = _data(await session.call_tool("attribute", {**WHY, "node_kind": "head", "rows": 3}))
    top3 = _heads(heads["nodes_by_abs_total_effect"])
    assert top3 == _heads(by_total)[:3] and "kind=head" in heads["link"]

    # ablate the top head
    ablate = [{"node": top3[0], "op": "zero"}]
    iv = _data(await session.call_tool("intervene", {**WHY, "interventions": ablate}))
    http_iv = (await api.post("/api/intervene", json={**WHY, "interventions": ablate})).json()
    assert iv["logit_diff"] == round(http_iv["logit_diff"], 3) and iv["change"] == round(http_iv["change"], 3)
    assert iv["baseline_logit_diff"] == why["logit_diff"]

    # a 3-head circuit over the IOI set
    body = {"promptset": IOI, "nodes": top3, "n_random": 2, "greedy_steps": 1}
    circ = _data(await session.call_tool("evaluate_circuit", body))
    http_circ = (await api.post("/api/circuit/evaluate", json=body)).json()
    assert circ["faithfulness"] == {k: (round(v, 3) if v is not None else None) for k, v in http_circ["faithfulness"].items()}
    assert [m["node"] for m in circ["minimality"]] == top3
    assert "view=dataset" in circ["link"] and "circ=" in circ["link"]

    # the investigation with the head ablated, shared
    ablated = _data(await session.call_tool("attribute", {**WHY, "interventions": ablate, "rows": 5}))
    share = _data(await session.call_tool("create_share", {"state": ablated["share_state"]}))
    assert share["link"].endswith("/s/" + share["id"])
    return {"why": why, "iv": iv, "circ": circ, "ablated": ablated, "share": share, "top3": top3,
            "full_token_ids": full["token_ids"]}


P_ARGS = {"prompt": PROMPT}
EVERY_TOOL = [  # tool, arguments, the HTTP request giving the same JSON
    ("tokenize", {"text": PROMPT}, "POST", "/api/tokenize"),
    ("trace", {**P_ARGS, "target": {"kind": "attention", "node": "L2.H1", "key": 2}, "top_k": 5}, "POST", "/api/trace"),
    ("attention", {**P_ARGS, "layer": 2}, "POST", "/api/attention"),
    ("logit_lens", {**P_ARGS, "node": "L2.H1"}, "POST", "/api/logit-lens"),
    ("activations", {**P_ARGS, "node": "L2.H1"}, "POST", "/api/activations"),
    ("node_explanation", {"node": "L2.H1", "limit": 2}, "GET", "/api/explanations/default/node/L2.H1?limit=2"),
    ("attribution_graph", {**WHY, "max_latents": 50}, "POST", "/api/graph"),
    ("dataset_attribute", {"promptset": IOI, "top_k": 5}, "POST", "/api/dataset/attribute"),
    ("dataset_ablate", {"promptset": IOI, "nodes": ["L2.H1"]}, "POST", "/api/dataset/ablate"),
    ("exact_effects", {**WHY, "ig_steps": 4}, "POST", "/api/effects"),
    ("generate", {**P_ARGS, "interventions": [{"node": "L1.H3", "op": "zero"}], "max_new_tokens": 4}, "POST",
     "/api/generate"),
]
VOLATILE = {"elapsed_ms", "cost", "link", "share_state"}


async def _every_tool_is_its_route(session, api: httpx.AsyncClient) -> None:
    """`full: true` returns exactly the HTTP route's JSON (timings aside); the compact view has a link."""
    def strip(x: dict) -> dict:
        return {k: v for k, v in x.items() if k not in VOLATILE}

    for tool, args, method, route in EVERY_TOOL:
        full = _data(await session.call_tool(tool, {**args, "full": True}))
        http = await (api.post(route, json=args) if method == "POST" else api.get(route))
        assert http.status_code == 200, http.text
        assert strip(full) == strip(http.json()), tool
        compact = _data(await session.call_tool(tool, {**args, "rows": 3}))
        assert compact["link"].startswith(str(api.base_url).rstrip("/") + "/?v=1"), tool
        assert len(json.dumps(compact)) < len(json.dumps(full)) or tool == "tokenize", tool


BAD = [
    ("attribute", {"prompt": PROMPT, "target": " Maryx"}, "/api/attribute", 422),
    ("attribute", {"target": " Mary", "bogus": 1}, "/api/attribute", 422),
    ("attribute", {**WHY, "top_k": 10**9}, "/api/attribute", 422),
    ("attribute", {**WHY, "model": "no-such-model"}, "/api/attribute", 404),
    ("intervene", {**WHY, "interventions": [{"node": "L9.H9", "op": "zero"}]}, "/api/intervene", 422),
    ("evaluate_circuit", {"promptset": {"builtin": "ioi", "n": 5}, "nodes": ["L1.MLP"]}, "/api/circuit/evaluate", 422),
]


async def _bad_arguments(session, api: httpx.AsyncClient) -> None:
    for tool, args, route, status in BAD:
        res = await session.call_tool(tool, args)
        http = await api.post(route, json=args)
        assert http.status_code == status, http.text
        assert res.is_error and res.content[0].text == http.json()["detail"], (tool, args, res.content[0].text)
        assert res.structured_content == {"status": status, "detail": http.json()["detail"]}
    res = await session.call_tool("attribute", {**WHY, "rows": 0})
    assert res.is_error and "rows: Input should be greater than or equal to 1" in res.content[0].text
    res = await session.call_tool("no_such_tool", {})
    assert res.is_error and "no tool 'no_such_tool'" in res.content[0].text
    assert not (await session.call_tool("list_models", {})).is_error  # the session survived


@asynccontextmanager
async def _http_session(url: str):
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url + "/mcp") as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def _hf_ablated_logit_diff(token_ids: list[int], head: str, target: int, distractor: int) -> float:
    """Zero one head with plain HuggingFace hooks (its slice of c_proj's input) — no engine code."""
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(ROOT / "backend/circuit_debugger/models/default").eval()
    layer, h = int(head[1:head.index(".")]), int(head.split(".H")[1])
    d_head = model.config.n_embd // model.config.n_head

    def zero(_, args):
        x = args[0].clone()
        x[..., h * d_head:(h + 1) * d_head] = 0
        return (x,)

    model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(zero)
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0, -1]
    return float(logits[target] - logits[distractor])


def test_agent_investigation_over_http_and_stdio(tmp_path):
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    db = tmp_path / "investigations.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    script = Path(sys.executable).parent / "circuit-debugger"  # the installed command (PYTHONPATH picks this checkout)
    command = [str(script)] if script.exists() else [sys.executable, "-m", "circuit_debugger.cli"]
    stdio = StdioServerParameters(command=command[0], env=env, cwd=str(tmp_path), args=command[1:] + [
        "mcp", "--model", "default", "--share-db", str(db), "--public-url", "http://ui.example:9000"])

    async def main():
        errlog = open(tmp_path / "stdio.err", "w")
        # spawn the stdio server first: it loads the model while this process starts the HTTP one
        async with stdio_client(stdio, errlog=errlog) as (read, write), ClientSession(read, write) as over_stdio:
            server, thread, url = await anyio.to_thread.run_sync(_start_http, db)
            try:
                async with httpx.AsyncClient(base_url=url, timeout=60) as api, _http_session(url) as over_http:
                    await over_stdio.initialize()
                    seen_http = await _investigate(over_http, api, url)
                    seen_stdio = await _investigate(over_stdio, api, "http://ui.example:9000")
                    await _every_tool_is_its_route(over_http, api)
                    await _bad_arguments(over_http, api)
                    await _bad_arguments(over_stdio, api)
                    resources = await _resources(over_stdio, api, seen_stdio["share"]["id"])
                    opened = (await api.get(f"/api/shares/{seen_stdio['share']['id']}")).json()
                    rerun = (await api.post("/api/attribute", json={k: opened["state"][k] for k in (
                        "model", "prompt", "target", "distractor", "interventions")})).json()
                    tokenized = {t: (await api.post("/api/tokenize", json={"text": t, "kind": "output"})).json()["token_ids"][0]
                                 for t in (" Mary", " John")}
            finally:
                server.should_exit = True
                await anyio.to_thread.run_sync(thread.join, 10)
        return seen_http, seen_stdio, resources, opened, rerun, tokenized

    seen_http, seen_stdio, resources, opened, rerun, tokenized = anyio.run(main)

    # two processes, the same numbers
    for k in ("why", "iv", "circ", "ablated"):
        a, b = dict(seen_http[k]), dict(seen_stdio[k])
        for x in (a, b):
            x.pop("link", None), x.pop("cost", None)
        assert a == b, k
    # links: the UI address the client used (HTTP) or the one configured (stdio)
    assert seen_stdio["why"]["link"].startswith("http://ui.example:9000/?v=1&")
    assert seen_stdio["share"]["link"] == f"http://ui.example:9000/s/{seen_stdio['share']['id']}"

    # the share made over stdio, opened through the HTTP API, reproduces the numbers the agent saw
    ablated = seen_stdio["ablated"]
    assert opened["state"]["interventions"][0]["node"] == seen_stdio["top3"][0]
    assert round(rerun["logit_diff"], 3) == ablated["logit_diff"]
    assert round(rerun["baseline_logit_diff"], 3) == ablated["baseline_logit_diff"] == seen_stdio["why"]["logit_diff"]
    rows = sorted(rerun["nodes"], key=lambda n: -abs(n["total_effect"]))[:5]
    assert [(n["id"], round(n["total_effect"], 3)) for n in rows] == \
        [(n["id"], n["total_effect"]) for n in ablated["nodes_by_abs_total_effect"]]
    q = parse_qs(urlsplit(seen_stdio["share"]["ui_link"]).query)
    assert q["p"] == [PROMPT] and q["a"] == [" Mary"] and json.loads(q["iv"][0])[0]["node"] == seen_stdio["top3"][0]

    # ablating the top head, checked against plain HuggingFace hooks
    hf = _hf_ablated_logit_diff(seen_stdio["full_token_ids"], seen_stdio["top3"][0], tokenized[" Mary"], tokenized[" John"])
    assert abs(hf - rerun["logit_diff"]) < 1e-3 and round(hf, 2) == round(seen_stdio["iv"]["logit_diff"], 2)
    assert resources


async def _resources(session, api, share_id: str) -> bool:
    from mcp.shared.exceptions import MCPError

    listed = (await session.list_resources()).resources
    served = [m["name"] for m in (await api.get("/api/models")).json()["models"]]  # one card per loaded model
    assert sorted(str(r.uri) for r in listed) == sorted(f"circuit-debugger://models/{n}/card" for n in served)
    card = (await session.read_resource("circuit-debugger://models/default/card")).contents[0].text
    readme = (ROOT / "backend/circuit_debugger/models/default/README.md").read_text()
    assert "| n_layers | 3 |" in card and readme in card
    share = json.loads((await session.read_resource(f"circuit-debugger://shares/{share_id}")).contents[0].text)
    assert share["state"] == (await api.get(f"/api/shares/{share_id}")).json()["state"]
    with pytest.raises(MCPError, match="no shared investigation"):
        await session.read_resource("circuit-debugger://shares/nope-not-here")
    return True


def test_mcp_endpoint_shares_admission_control_and_checks_hosts():
    """A tool call over /mcp is one more request in flight for `Capacity` (503 when full), and
    /mcp refuses a Host it does not serve (DNS rebinding), like the SDK's own servers."""
    from fastapi.testclient import TestClient

    from circuit_debugger.engine import Debugger
    from circuit_debugger.server.app import Settings, create_app

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"accept": "application/json, text/event-stream"}
    full = create_app(Settings(models=[], max_pending=0), debugger=Debugger([]), failed={})  # with the UI's routes
    with TestClient(full, base_url="http://127.0.0.1:8000") as c:
        r = c.post("/mcp", json=init, headers=headers)
        assert r.status_code == 503 and "busy" in r.json()["detail"]
        assert c.post("/mcp/", json=init, headers=headers).status_code == 503
        assert c.get("/api/health").status_code == 200
    app = create_app(Settings(models=[]), debugger=Debugger([]), failed={})
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.post("/mcp", json=init, headers=headers).status_code == 200
        assert c.post("/mcp", json=init, headers={**headers, "host": "evil.example"}).status_code == 421
        assert c.post("/mcp/", json=init, headers=headers).status_code == 200
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:  # the app starts again: a fresh session manager
        assert c.post("/mcp", json=init, headers=headers).status_code == 200


def test_links_are_the_query_string_the_ui_writes():
    """frontend/src/state/url.python.fixture.json holds a state (unicode, '&', '+', '~', '*', '%',
    interventions, traces, a prompt set, a circuit) and its query string; the UI's Vitest checks that
    url.ts writes exactly that string and reads it back as the state, this test that Python writes it."""
    from circuit_debugger.server.mcp_links import encode

    from circuit_debugger.server.schemas import InvestigationState

    fixture = json.loads((ROOT / "frontend/src/state/url.python.fixture.json").read_text(encoding="utf-8"))
    # a field added to the state must be added to the fixture (with a non-default value) and to mcp_links.encode
    assert set(fixture["state"]) == set(InvestigationState.model_fields)
    defaults = InvestigationState().model_dump(mode="json")
    assert all(fixture["state"][k] != v for k, v in defaults.items() if k != "v"), "give every field a non-default value"
    assert encode(fixture["state"]) == fixture["query"]
    got = {k: v[0] for k, v in parse_qs(fixture["query"]).items()}
    assert got["p"] == fixture["state"]["prompt"] and got["v"] == "1" and "~" in got["p"]
    assert json.loads(got["iv"]) == fixture["state"]["interventions"]

def test_writes_beyond_shares_are_opt_in(dbg):
    """By default the only writing tool is create_share; with mcp_writes a prompt set can be stored,
    and dataset results on it then get a UI link (an inline set gets a note instead)."""
    from circuit_debugger.server.app import Settings, create_app
    from circuit_debugger.server.mcp_tools import McpTools

    app = create_app(Settings(models=[], serve_frontend=False), debugger=dbg, failed={})
    assert {"create_promptset", "explain_node"}.isdisjoint(McpTools(app).entries)
    tools = McpTools(app, "http://ui.example", writes=True)
    assert {"create_promptset", "explain_node"} <= set(tools.entries)
    template = {"templates": ["When {IO} and {S} went to the {P}, {S} gave a drink to"],
                "values": {"IO": ["Mary", "John"], "S": ["Mary", "John"], "P": ["store", "park"]},
                "target": " {IO}", "distractor": " {S}"}

    async def main():
        inline = _data(await tools.call("dataset_attribute", {"model": "tiny", "promptset": {"template": template, "n": 4}}))
        made = _data(await tools.call("create_promptset", {"model": "tiny", "spec": {"template": template, "n": 4}}))
        by_id = _data(await tools.call("dataset_attribute", {"model": "tiny", "promptset": {"id": made["id"]}}))
        return inline, made, by_id

    inline, made, by_id = anyio.run(main)
    assert inline["link"] is None and "no UI link" in inline["link_note"]
    assert made["n_rows"] == 4 and by_id["metric_mean"] == inline["metric_mean"]
    assert json.loads(parse_qs(urlsplit(by_id["link"]).query)["ds"][0]) == {"builtin": None, "id": made["id"], "n": 100,
                                                                          "seed": 0}
    assert json.loads(parse_qs(urlsplit(made["link"]).query)["ds"][0])["n"] == 4


def test_compact_activations_name_only_their_top_positions():
    """The compact answer is the top rows: it does not carry the prompt's whole token list."""
    from circuit_debugger.server.mcp_compact import activations

    tokens = [f" w{i}" for i in range(60)]
    res = {"model": "default", "node": "L2.H1", "tokens": tokens, "values": [float(i % 7) - 3.0 for i in range(60)]}
    out = activations(res, None, 3)
    assert [p["position"] for p in out["top_positions"]] == [0, 6, 7]  # |value| 3, in order
    assert all(p["token"] == tokens[p["position"]] for p in out["top_positions"])
    assert out["n_positions"] == 60 and "tokens" not in out and "3 of 60 positions" in out["more"]

