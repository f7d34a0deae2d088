"""/api/models never names the install path of what ships with the project (a public server
would tell every visitor where it is installed): the embedded model and its dictionaries are
named relative to the project; hub names and paths the operator gave stay as given."""

from pathlib import Path

from fastapi.testclient import TestClient

from circuit_debugger.server.app import Settings, create_app
from circuit_debugger.shown_paths import shown

ROOT = Path(__file__).resolve().parents[1]


def test_models_route_names_shipped_files_relative_to_the_project():
    c = TestClient(create_app(Settings(models=["default"], serve_frontend=False, share_db=":memory:")))
    r = c.get("/api/models")
    assert r.status_code == 200
    assert str(ROOT) not in r.text
    (m,) = [m for m in r.json()["models"] if m["name"] == "default"]
    assert m["source"] == "backend/circuit_debugger/models/default"
    assert {d["source"] for d in m["dictionaries"]} >= {"autoencoders/default/tc0", "autoencoders/default/sae2"}


def test_other_sources_are_shown_as_given(tmp_path):
    assert shown("hub:EleutherAI/pythia-70m") == "hub:EleutherAI/pythia-70m"
    assert shown(str(tmp_path / "my-saes")) == str(tmp_path / "my-saes")
