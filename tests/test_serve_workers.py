"""`serve --workers N` hands the same settings to every uvicorn worker process (through the
environment) and refuses nonsense scale flags at start. (A real two-worker server under load is
`benchmarks/load_test.py --workers 2`.)"""

import pytest
from fastapi.testclient import TestClient

from circuit_debugger import cli, cli_scale


def parse(*flags):
    ap = cli.parser()
    a = ap.parse_args(["serve", *flags])
    return ap, a


@pytest.mark.parametrize("flag", [["--workers", "0"], ["--job-workers", "0"], ["--batch-size", "0"],
                                  ["--job-time-limit", "-1"]])
def test_nonsense_scale_flags_are_refused(flag, capsys):
    ap, a = parse(*flag)
    with pytest.raises(SystemExit):
        cli_scale.scale_settings(ap, a)
    assert flag[0] in capsys.readouterr().err


def test_workers_get_the_same_settings(monkeypatch, tmp_path):
    ap, a = parse("--workers", "3", "--job-workers", "2", "--batch-size", "8", "--database", str(tmp_path / "db.sqlite"))
    settings = cli.settings_from(ap, a)
    settings.models = []  # no model load in this test
    settings.serve_frontend = False
    seen = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setenv(cli_scale.SETTINGS_ENV, "")  # run() sets it; restored after the test
    cli_scale.run_workers(settings, "127.0.0.1", 9999, a.workers)
    assert seen["app"] == "circuit_debugger.cli_scale:app_from_env" and seen["factory"] is True and seen["workers"] == 3
    app = cli_scale.app_from_env()  # what each worker process builds
    assert app.state.jobs.batch_size == 8 and app.state.jobs.executor.n == 2
    assert app.state.shares.target == str(tmp_path / "db.sqlite")
    with TestClient(app, base_url="http://127.0.0.1") as c:  # the CLI allows loopback Host names only
        sid = c.post("/api/shares", json={"state": {"v": 1, "prompt": "p"}}).json()["id"]
        assert c.get(f"/api/shares/{sid}").status_code == 200
