"""`circuit-debugger serve [--model NAME_OR_PATH ...] [--host H] [--port P]`; `circuit-debugger mcp ...` (MCP over stdio)"""

from __future__ import annotations

import argparse
import logging
import os

from .server.cli_security import add_arguments as add_security_arguments
from .server.cli_security import add_token_command, before_serving, proxy_options, run_token_command, security_settings


def _env_list(name: str) -> list[str]:
    return [x for x in os.environ.get(name, "").split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="circuit-debugger")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--model", action="append", default=None,
                   help="a checkpoint directory or hub name (repeatable); 'default' and 'llama' (the embedded models) are always loaded")
    s.add_argument("--autoencoders", action="append", default=[], metavar="MODEL=SPEC",
                   help="dictionaries for MODEL (repeatable): a SAELens folder, a folder of them, a circuit-tracer "
                        "transcoder set or CLT folder, or saelens:RELEASE[/SAE_ID] / saelens:ORG/REPO/PATH from the "
                        "HuggingFace cache; what does not load is listed under 'failed' in /api/models")
    s.add_argument("--explanations", action="append", default=[], metavar="MODEL=FILE",
                   help="the explanations database (SQLite) of MODEL (default model: explanations/default.sqlite)")
    s.add_argument("--host", default=os.environ.get("CD_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("CD_PORT", "8000")))
    s.add_argument("--cors-origin", action="append", default=None,
                   help="browser origin allowed to call the API cross-origin (repeatable; default: none but the "
                        "Vite dev server; '*' any)")
    add_security_arguments(s)  # limits, hosts, access (checked: nonsense values stop the start)
    s.add_argument("--database", "--share-db", dest="share_db",
                   default=os.environ.get("CD_DATABASE") or os.environ.get("CD_SHARE_DB") or None,
                   help="shares, prompt sets and jobs: an SQLite file (default: $XDG_DATA_HOME/circuit-debugger/"
                        "investigations.sqlite) or postgresql://USER@HOST/DB (env CD_DATABASE)")
    s.add_argument("--db-timeout", type=float, default=float(os.environ.get("CD_DB_TIMEOUT") or 2.0),
                   help="seconds a write waits for a locked database before answering 503 (env CD_DB_TIMEOUT)")
    s.add_argument("--frontend-dir", default=os.environ.get("CD_FRONTEND_DIR") or None,
                   help="the built web UI (default: the repository's frontend/dist)")
    s.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=os.environ.get("CD_DTYPE") or None,
                   help="weights and activations dtype (default float32; half precision for large models on a GPU)")
    s.add_argument("--device", default=os.environ.get("CD_DEVICE") or None, help="cpu or cuda (default: cuda if available)")
    s.add_argument("--device-map", default=os.environ.get("CD_DEVICE_MAP") or None, metavar="auto|balanced|JSON",
                   help="split each --model over several devices with accelerate: 'auto', 'balanced', or a JSON "
                        "object {module: device} whose devices are GPU indices, 'cpu' or 'disk' (env CD_DEVICE_MAP)")
    s.add_argument("--offload-dir", default=os.environ.get("CD_OFFLOAD_DIR") or None, metavar="DIR",
                   help="where a device map's 'disk' modules keep their weights (env CD_OFFLOAD_DIR)")
    s.add_argument("--public-url", default=os.environ.get("CD_PUBLIC_URL") or None,
                   help="the UI's address used in MCP results' links (mcp default: http://HOST:PORT)")
    s.add_argument("--mcp-host", action="append", default=_env_list("CD_MCP_HOSTS"),
                   help="a Host name /mcp accepts beyond loopback (repeatable; '*': any)")
    s.add_argument("--mcp-writes", action="store_true", default=os.environ.get("CD_MCP_WRITES") == "1",
                   help="also offer MCP tools that store prompt sets and explanations (default: shares only)")
    from .cli_scale import add_scale_flags

    add_scale_flags(s)  # replicas, job executors, batch size, time limits
    m = sub.add_parser("mcp", help="run the MCP server over stdio (the same models and flags as serve)")
    for action in s._actions[1:]:  # every serve flag, so both commands configure the same server
        m._add_action(action)
    add_token_command(sub)
    from .cli_db import add_parser as add_db_parser

    add_db_parser(sub)
    return ap


def settings_from(ap: argparse.ArgumentParser, a: argparse.Namespace):
    """The server's Settings from the parsed command line (flags, then CD_* environment)."""
    from .cli_scale import scale_settings
    from .loading import default_device
    from .server.app import Settings
    from .shares import default_share_db

    from .loading import LLAMA_MODEL_DIR

    embedded = ["default"] + (["llama"] if (LLAMA_MODEL_DIR / "config.json").exists() else [])  # both load in ~1 s
    models = embedded + (a.model or _env_list("CD_MODELS"))
    autoencoders: dict[str, list[str]] = {}
    for item in a.autoencoders + _env_list("CD_AUTOENCODERS"):
        model, sep, directory = item.partition("=")
        if not sep:
            ap.error(f"--autoencoders expects MODEL=SPEC, got {item!r}")
        autoencoders.setdefault(model, []).append(directory)
    from .placement import PlacementError, parse_device_map

    try:
        parse_device_map(a.device_map)
    except PlacementError as e:
        ap.error(f"--device-map: {e}")
    explanations = {}
    for item in a.explanations:
        model, sep, path = item.partition("=")
        if not sep:
            ap.error(f"--explanations expects MODEL=FILE, got {item!r}")
        explanations[model] = path
    from .server.app import DEV_ORIGINS

    return Settings(models=models, explanations=explanations,
                    cors_origins=a.cors_origin or _env_list("CD_CORS_ORIGINS") or list(DEV_ORIGINS),
                    max_tokens=a.max_tokens, device=a.device or default_device(), dtype=a.dtype, autoencoders=autoencoders,
                    share_db=a.share_db or default_share_db(), frontend_dir=a.frontend_dir,
                    max_top_k=a.max_top_k, max_graph_latents=a.max_graph_latents,
                    max_reference_prompts=a.max_reference_prompts, max_pending=a.max_pending,
                    cache_size=a.cache_size, public_url=a.public_url, mcp_hosts=a.mcp_host,
                    mcp_writes=a.mcp_writes, device_map=a.device_map,
                    offload_dir=a.offload_dir, db_timeout=a.db_timeout,
                    **security_settings(a), **scale_settings(ap, a))


def main(argv=None) -> None:
    ap = parser()
    a = ap.parse_args(argv)
    if a.cmd == "db":
        from .cli_db import run as run_db

        raise SystemExit(run_db(a))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if a.cmd == "token":
        return run_token_command(a)
    import uvicorn

    from .server.access import AccessConfigError
    from .server.app import create_app
    from .server.protocol import GuardedH11Protocol
    from .shares import ShareStoreError, default_share_db
    from .storage import Store

    try:  # check (and migrate) the database before the slow model loads
        Store(a.share_db or default_share_db(), a.db_timeout).close()
    except ShareStoreError as e:
        raise SystemExit(f"circuit-debugger: {e}") from None

    settings = settings_from(ap, a)
    proxy = proxy_options(ap, a)  # whose X-Forwarded-For is believed (--forwarded-allow-ips)
    if a.cmd == "mcp":  # stdout carries the protocol: everything else goes to stderr
        settings.serve_frontend = False
        settings.public_url = settings.public_url or f"http://{a.host}:{a.port}"
    else:
        before_serving(a, settings)
    try:
        if a.cmd == "serve" and a.workers > 1:  # N server processes, each building the app from the same settings
            from .cli_scale import run_workers

            return run_workers(settings, a.host, a.port, a.workers, http=GuardedH11Protocol, **proxy)
        app = create_app(settings)
    except (ShareStoreError, AccessConfigError) as e:
        raise SystemExit(f"circuit-debugger: {e}") from None
    if a.cmd == "mcp":
        from .server.mcp_server import run_stdio

        return run_stdio(app, settings.public_url, settings.mcp_writes)
    uvicorn.run(app, host=a.host, port=a.port, http=GuardedH11Protocol, **proxy)


if __name__ == "__main__":
    main()
