"""The load test script itself runs (briefly): real servers on loopback, concurrent clients,
zero errors and every response equal to the same request asked alone of a fresh server."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_load_script_short_run():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--clients", "4", "--duration", "3",
                        "--single", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "errors: 0" in r.stdout and "mismatches: 0" in r.stdout
    compared = int(r.stdout.split("responses compared with the same request alone: ")[1].split(",")[0])
    assert compared > 50
