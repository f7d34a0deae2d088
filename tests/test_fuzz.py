"""Fuzz every route from the OpenAPI schema (schemathesis) with every check it has (`--checks
all`): no 5xx, every status and body as documented, schema-invalid input refused, and so on.

Bounded here (a few cases per route, fixed seed); `scripts/fuzz.sh` runs many more.

One check is configured: a request the schema allows may still be a 422 or 413, because the
schema cannot say what the chosen model has (a node id must name one of its heads, a target
must be one of its tokens, a prompt must fit its token limit). Everything else runs as shipped."""

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

EXAMPLES = int(os.environ.get("CD_FUZZ_EXAMPLES", "8"))  # per operation and mode (valid, invalid)


@pytest.fixture(scope="module")
def api_schema(tiny_dir):
    from circuit_debugger.autoencoders import load_onto  # noqa: F401  (the default model brings its own)
    from circuit_debugger.engine import Debugger
    from circuit_debugger.loading import load_model
    from circuit_debugger.server.app import Settings, create_app

    models = [load_model("default"), load_model("tracr/frac_ones")]
    dbg = Debugger(models, cache_size=8)
    from circuit_debugger.explanations.build import REPO_EXPLANATIONS

    if (REPO_EXPLANATIONS / "default.sqlite").exists():
        dbg.attach_explanations("default", REPO_EXPLANATIONS / "default.sqlite")
    config = SchemathesisConfig.from_path(Path(__file__).with_name("schemathesis.toml"))  # also scripts/fuzz.sh's
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(models=[]), debugger=dbg), config=config)


def test_no_input_causes_a_server_error(api_schema):
    """Every operation, EXAMPLES generated cases each (fixed seed), schema-valid and schema-invalid
    ones, under every check (schemathesis's defaults: not_a_server_error, status / content-type /
    header / body conformance, positive_data_acceptance, negative_data_rejection, ...)."""
    operations = [r.ok() for r in api_schema.get_all_operations()]
    statuses: list[int] = []
    calls = [0]
    assert len(operations) >= 14
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case):
                calls[0] += 1
                case.call_and_validate()
                if mode is GenerationMode.NEGATIVE:
                    return  # (naming a real model could make an invalid case valid)
                # again with a model that exists, so the generated prompt, nodes and options
                # reach the engine instead of stopping at "unknown model"
                if isinstance(case.body, dict) and "model" in case.body:
                    case.body["model"] = "default"
                    statuses.append(case.call_and_validate().status_code)
                if isinstance(case.path_parameters, dict) and "model" in case.path_parameters:
                    case.path_parameters["model"] = "default"
                    statuses.append(case.call_and_validate().status_code)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid input
    calls[0] += len(statuses)
    print(f"\nfuzz: {calls[0]} requests over {len(operations)} operations, every check passed")
    assert 200 in statuses, "no generated case reached a successful answer: the fuzzing is too shallow"


def test_unsupported_methods_are_405_with_allow(api_schema):
    """schemathesis's unsupported_method / allow_header_conformance, for every path: a method the
    schema does not list gets 405 and an Allow header naming the ones it does (GET on a POST
    route included: the UI's catch-all must not answer it with a page or a 404)."""
    from fastapi.testclient import TestClient

    client = TestClient(api_schema.app)
    paths = api_schema.raw_schema["paths"]
    assert paths
    for path, ops in paths.items():
        concrete = path.replace("{model}", "default").replace("{name}", "default").replace("{node}", "L0.N1") \
            .replace("{share_id}", "abc").replace("{set_id}", "abc")
        documented = {m.upper() for m in ops}
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - documented:
            r = client.request(method, concrete)
            assert r.status_code == 405, (method, path, r.status_code)
            assert set(r.headers["allow"].replace(" ", "").split(",")) - {"HEAD"} == documented, (method, path, r.headers)
