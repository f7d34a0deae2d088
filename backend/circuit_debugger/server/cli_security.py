"""The `serve` flags for limits, hosts, CORS and access, checked at start (a nonsense value stops
the server with a message), and `circuit-debugger token NAME --file FILE`."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os

log = logging.getLogger("circuit_debugger.server")

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]


def at_least(low: float, kind=int):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None
        if not value >= low:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text!r}")
        return value
    return parse


def _env(name: str, default) -> str:
    return os.environ.get(name) or str(default)


# (flag, default, minimum, type, help): each also read from CD_<FLAG> (the flag wins)
LIMITS = [
    ("max-tokens", 256, 1, int, "tokens a prompt may have"),
    ("max-top-k", 5000, 1, int, "rows per metric a request may ask for"),
    ("max-graph-latents", 5000, 1, int, "latents an attribution graph may keep"),
    ("max-reference-prompts", 256, 1, int, "prompts in a request's mean-ablation reference set"),
    ("max-pending", 64, 1, int, "API requests in flight before the server answers 503"),
    ("max-pending-per-client", 16, 1, int, "API requests one client (identity or address) may have in flight"),
    ("rate-limit", 0, 0, int, "API requests a minute per client, 429 beyond (0: no limit)"),
    ("max-streams-per-client", 4, 1, int, "job progress streams (SSE) one client may hold open (429 beyond)"),
    ("max-streams", 256, 1, int, "job progress streams open at once (503 beyond)"),
    ("stream-lifetime", 600, 1, float, "seconds a job progress stream stays open (the browser then reconnects)"),
    ("cache-size", 512, 1, int, "whole results kept in memory (LRU)"),
    ("response-cache-mb", 64, 0, float, "MiB of whole answers to repeated deterministic requests kept per server "
                                        "process (0: off)"),
    ("max-body-mb", 16, 0.001, float, "request bodies above this many MiB get 413 before they are read"),
    ("body-timeout", 30, 0.1, float, "seconds a request body may take to arrive (408 after)"),
    ("header-timeout", 10, 0.1, float, "seconds a connection may take to send a request's headers (closed after)"),
    ("immediate-rows", 64, 0, int, "prompt sets of at most this many rows the UI asks the immediate dataset routes "
                                   "(about a second); larger ones run as jobs (0: always jobs)"),
]

LIMIT_DEFAULTS = {flag.replace("-", "_"): default for flag, default, *_ in LIMITS}  # Settings' defaults


def add_arguments(s: argparse.ArgumentParser) -> None:
    for flag, default, low, kind, what in LIMITS:
        env = "CD_" + flag.upper().replace("-", "_")
        s.add_argument(f"--{flag}", type=at_least(low, kind), default=_env(env, default), help=f"{what} (env {env})")
    s.add_argument("--allowed-hosts", action="append", default=None, metavar="HOST",
                   help="Host header names served (repeatable; '*' any, '*.example.org' subdomains; env "
                        "CD_ALLOWED_HOSTS); default: localhost names when bound to loopback, else the bound address, "
                        "or any host when bound to 0.0.0.0 / ::")
    s.add_argument("--auth-token-file", default=os.environ.get("CD_AUTH_TOKEN_FILE") or None, metavar="FILE",
                   help="require an access token; FILE holds their hashes (make one: circuit-debugger token NAME --file FILE)")
    s.add_argument("--forwarded-allow-ips", default=os.environ.get("CD_FORWARDED_ALLOW_IPS") or None, metavar="ADDRS",
                   help="addresses or networks of reverse proxies whose X-Forwarded-For names the client (comma-separated; "
                        "env CD_FORWARDED_ALLOW_IPS); per-client limits then count the real client. Default: none "
                        "(the header is ignored from everyone)")
    s.add_argument("--trust-identity-header", default=os.environ.get("CD_TRUST_IDENTITY_HEADER") or None, metavar="NAME",
                   help="accept the user named in this header, set by a trusted reverse proxy (e.g. X-Forwarded-User)")


def proxy_options(ap: argparse.ArgumentParser, a: argparse.Namespace) -> dict:
    """uvicorn's options for X-Forwarded-For: trusted from the --forwarded-allow-ips addresses
    only. Without the flag the header is ignored from every peer (uvicorn's own default would
    trust it from 127.0.0.1, so any local process could pose as any client)."""
    if not a.forwarded_allow_ips:
        return {"proxy_headers": False}
    items = [x.strip() for x in a.forwarded_allow_ips.split(",") if x.strip()]
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            ap.error(f"--forwarded-allow-ips: {item!r} is not an IP address or network "
                     "('*' is refused: it would let any client choose its address)")
    if not items:
        ap.error("--forwarded-allow-ips: give at least one address")
    return {"proxy_headers": True, "forwarded_allow_ips": items}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(host: str) -> list[str]:
    if is_loopback(host):
        return LOOPBACK_NAMES
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return [host] + LOOPBACK_NAMES


def security_settings(a: argparse.Namespace) -> dict:
    """The Settings fields these flags set."""
    env_hosts = [x.strip() for x in os.environ.get("CD_ALLOWED_HOSTS", "").split(",") if x.strip()]
    hosts = a.allowed_hosts or env_hosts
    return dict(**({"allowed_hosts": hosts} if hosts else {}),  # else: by the bound address, in before_serving
                auth_token_file=a.auth_token_file, identity_header=a.trust_identity_header,
                max_body_bytes=int(a.max_body_mb * 1024 * 1024), body_timeout=a.body_timeout,
                max_pending_per_client=a.max_pending_per_client, rate_limit=a.rate_limit,
                max_streams_per_client=a.max_streams_per_client, max_streams=a.max_streams,
                stream_lifetime=a.stream_lifetime, response_cache_mb=a.response_cache_mb,
                immediate_rows=a.immediate_rows)


def before_serving(a: argparse.Namespace, settings=None) -> None:
    """Host names by the bound address (unless --allowed-hosts named them), the header deadline
    for the protocol (through the environment, so worker processes see it) and the warning for
    a public address without access control."""
    if settings is not None and not (a.allowed_hosts or os.environ.get("CD_ALLOWED_HOSTS", "").strip()):
        mcp_hosts = [h.rpartition(":")[0] if h.count(":") == 1 else h for h in getattr(a, "mcp_host", None) or []]
        settings.allowed_hosts = default_allowed_hosts(a.host) + mcp_hosts
    os.environ["CD_HEADER_TIMEOUT"] = str(a.header_timeout)
    if not is_loopback(a.host) and not (a.auth_token_file or a.trust_identity_header):
        log.warning("serving on %s without access control: anyone who reaches this address can use the models; "
                    "give --auth-token-file or --trust-identity-header", a.host)


def add_token_command(sub) -> None:
    t = sub.add_parser("token", help="make an access token: its hash goes to FILE, the token is printed once")
    t.add_argument("name", help="whose token (shown in the server's log and used for per-client limits)")
    t.add_argument("--file", required=True, help="the token file given to serve --auth-token-file")


def run_token_command(a: argparse.Namespace) -> None:
    from .access import AccessConfigError, add_token

    try:
        token = add_token(a.file, a.name)
    except (AccessConfigError, OSError) as e:
        raise SystemExit(f"circuit-debugger: {e}") from None
    print(token)
