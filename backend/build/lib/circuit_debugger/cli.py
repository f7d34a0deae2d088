"""`circuit-debugger serve [--model NAME_OR_PATH ...] [--host H] [--port P]`"""

from __future__ import annotations

import argparse
import logging
import os


def _env_list(name: str) -> list[str]:
    return [x for x in os.environ.get(name, "").split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="circuit-debugger")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--model", action="append", default=None,
                   help="a checkpoint directory or hub name (repeatable); 'default' is always loaded")
    s.add_argument("--autoencoders", action="append", default=[], metavar="MODEL=DIR",
                   help="load every SAE/transcoder folder (SAELens layout) under DIR onto MODEL (repeatable)")
    s.add_argument("--explanations", action="append", default=[], metavar="MODEL=FILE",
                   help="the explanations database (SQLite) of MODEL (default model: explanations/default.sqlite)")
    s.add_argument("--host", default=os.environ.get("CD_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("CD_PORT", "8000")))
    s.add_argument("--cors-origin", action="append", default=None,
                   help="allowed browser origin (repeatable; default '*')")
    s.add_argument("--max-tokens", type=int, default=int(os.environ.get("CD_MAX_TOKENS", "256")))
    for flag, default, what in [("max-top-k", 5000, "rows per metric a request may ask for"),
                                ("max-graph-latents", 5000, "latents an attribution graph may keep"),
                                ("max-reference-prompts", 256, "prompts in a request's mean-ablation reference set"),
                                ("max-pending", 64, "API requests in flight before the server answers 503"),
                                ("cache-size", 512, "whole results kept in memory (LRU)")]:
        env = "CD_" + flag.upper().replace("-", "_")
        s.add_argument(f"--{flag}", type=int, default=int(os.environ.get(env) or default), help=f"{what} (env {env})")
    s.add_argument("--share-db", default=os.environ.get("CD_SHARE_DB") or None,
                   help="SQLite file of shared investigations (default: $XDG_DATA_HOME/circuit-debugger/investigations.sqlite)")
    s.add_argument("--frontend-dir", default=os.environ.get("CD_FRONTEND_DIR") or None,
                   help="the built web UI (default: the repository's frontend/dist)")
    s.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=os.environ.get("CD_DTYPE") or None,
                   help="weights and activations dtype (default float32; half precision for large models on a GPU)")
    s.add_argument("--device", default=os.environ.get("CD_DEVICE") or None, help="cpu or cuda (default: cuda if available)")
    return ap


def settings_from(ap: argparse.ArgumentParser, a: argparse.Namespace):
    """The server's Settings from the parsed command line (flags, then CD_* environment)."""
    from .loading import default_device
    from .server.app import Settings
    from .shares import default_share_db

    models = ["default"] + (a.model or _env_list("CD_MODELS"))
    autoencoders: dict[str, list[str]] = {}
    for item in a.autoencoders + _env_list("CD_AUTOENCODERS"):
        model, sep, directory = item.partition("=")
        if not sep:
            ap.error(f"--autoencoders expects MODEL=DIR, got {item!r}")
        autoencoders.setdefault(model, []).append(directory)
    explanations = {}
    for item in a.explanations:
        model, sep, path = item.partition("=")
        if not sep:
            ap.error(f"--explanations expects MODEL=FILE, got {item!r}")
        explanations[model] = path
    return Settings(models=models, explanations=explanations, cors_origins=a.cors_origin or _env_list("CD_CORS_ORIGINS") or ["*"],
                    max_tokens=a.max_tokens, device=a.device or default_device(), dtype=a.dtype, autoencoders=autoencoders,
                    share_db=a.share_db or default_share_db(), frontend_dir=a.frontend_dir,
                    max_top_k=a.max_top_k, max_graph_latents=a.max_graph_latents,
                    max_reference_prompts=a.max_reference_prompts, max_pending=a.max_pending,
                    cache_size=a.cache_size)


def main(argv=None) -> None:
    ap = parser()
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import uvicorn

    from .server.app import create_app
    from .shares import ShareStoreError

    settings = settings_from(ap, a)
    try:
        app = create_app(settings)
    except ShareStoreError as e:
        raise SystemExit(f"circuit-debugger: {e}") from None
    uvicorn.run(app, host=a.host, port=a.port)


if __name__ == "__main__":
    main()
