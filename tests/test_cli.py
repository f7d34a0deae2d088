"""`circuit-debugger serve` starts a real server with the default model plus extra models."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_serve_starts_with_default_and_extra_models(tiny_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend")}
    cmd = [sys.executable, "-m", "circuit_debugger.cli", "serve", "--port", str(port), "--model", str(tiny_dir),
           "--model", str(tmp_path / "missing"), "--model", "tracr/prev_token", "--cors-origin", "http://example.org"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            try:
                health = get(f"http://127.0.0.1:{port}/api/health")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "server did not start"
                time.sleep(0.5)
        embedded = ["default"] + (["llama"] if (ROOT / "backend/circuit_debugger/models/llama/config.json").exists() else [])
        assert health["models"] == sorted(embedded + ["tiny-gpt2", "tracr/prev_token"])
        models = get(f"http://127.0.0.1:{port}/api/models")
        assert "directory not found" in models["failed"][str(tmp_path / "missing")]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/health", method="OPTIONS", headers={
            "Origin": "http://example.org", "Access-Control-Request-Method": "GET"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["access-control-allow-origin"] == "http://example.org"
    finally:
        proc.terminate()
        proc.wait(10)
