"""The line between the UI's immediate dataset routes and jobs is the server's: a `serve` flag
(`--immediate-rows`, env CD_IMMEDIATE_ROWS) in the limits table, reported by GET /api/models so
the page asks small sets of /api/dataset/* (no worker to start) and runs larger ones as jobs."""

import pytest
from fastapi.testclient import TestClient

from circuit_debugger.cli import parser, settings_from
from circuit_debugger.engine import Debugger
from circuit_debugger.server.app import Settings, create_app


def test_the_flag_sets_it_and_the_default_is_the_tables(monkeypatch):
    monkeypatch.delenv("CD_IMMEDIATE_ROWS", raising=False)
    ap = parser()
    assert settings_from(ap, ap.parse_args(["serve"])).immediate_rows == Settings().immediate_rows == 64
    assert settings_from(ap, ap.parse_args(["serve", "--immediate-rows", "10"])).immediate_rows == 10
    assert settings_from(ap, ap.parse_args(["serve", "--immediate-rows", "0"])).immediate_rows == 0  # always jobs
    monkeypatch.setenv("CD_IMMEDIATE_ROWS", "7")
    assert settings_from(parser(), parser().parse_args(["serve"])).immediate_rows == 7


def test_a_negative_value_is_refused_at_start(monkeypatch, capsys):
    monkeypatch.delenv("CD_IMMEDIATE_ROWS", raising=False)
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--immediate-rows", "-1"])
    assert "--immediate-rows: must be at least 0" in capsys.readouterr().err


@pytest.mark.parametrize("rows", [64, 3])
def test_models_reports_it(tiny, rows):
    client = TestClient(create_app(Settings(models=[], serve_frontend=False, immediate_rows=rows),
                                   debugger=Debugger([tiny]), failed={}))
    body = client.get("/api/models").json()
    assert body["immediate_rows"] == rows and body["models"][0]["name"] == "tiny"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelsResponse"]
    assert "immediate_rows" in schema["required"]
