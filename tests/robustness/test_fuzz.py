"""Property-based fuzzing of API v1 against the app's own OpenAPI schema (schemathesis, in process).

Every generated request must get an answer that is not a server error (a documented 503 aside) and
that conforms to the schema: a status the operation documents, its content type, its body schema.

CI runs a bounded number of examples per operation; for a long run:
    WEEDSCAN_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/robustness/test_fuzz.py -q
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra (schemathesis) is not installed")
from hypothesis import HealthCheck, settings  # noqa: E402 - hypothesis comes with schemathesis
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.api.app import create_app  # noqa: E402
from serving.config import Settings  # noqa: E402
from tests.conftest import SHIPPED_MODEL  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("WEEDSCAN_FUZZ_EXAMPLES", "25"))
CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]


# Raw BMP and TIFF bodies are bytes like any other file; schemathesis only knows some image types.
schemathesis.serializer.alias(["image/bmp", "image/tiff"], "application/octet-stream")

# schemathesis.pytest.from_fixture() would build the app lazily, but schemathesis 4.32 sets
# `request.node._nodeid`, which pytest 9 no longer has (AttributeError); so the app and its schema
# are built at import, in every test process that collects this file. The schema is the app's own
# (what GET /openapi.json serves), built without starting the app, whose lifespan would load the
# model then; it loads on the first call instead.
# Field datasets the fuzzer creates go to a folder of its own, removed at exit.
DATA_DIR = Path(tempfile.mkdtemp(prefix="weedscan-fuzz-data-"))
atexit.register(shutil.rmtree, DATA_DIR, True)
# Its models folder is a copy (the model linked) too: a fuzzed activation must not write the
# repository's models/.active.json.
MODELS_DIR = Path(tempfile.mkdtemp(prefix="weedscan-fuzz-models-"))
atexit.register(shutil.rmtree, MODELS_DIR, True)
(MODELS_DIR / SHIPPED_MODEL.name).symlink_to(SHIPPED_MODEL)
shutil.copyfile(SHIPPED_MODEL.with_suffix(".json"), MODELS_DIR / SHIPPED_MODEL.with_suffix(".json").name)
APP = create_app(Settings(models_dir=MODELS_DIR, threads=1, data_dir=DATA_DIR))
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(APP.openapi())))
schema.app, schema.location = APP, "/openapi.json"


def wait_until_ready(timeout: float = 60) -> None:
    service = APP.state.service
    deadline = time.monotonic() + timeout
    while not service.ready:
        assert service.load_error is None, service.load_error
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=MAX_EXAMPLES <= 25,
          suppress_health_check=list(HealthCheck), print_blob=True)
def test_no_server_error_and_every_answer_conforms_to_the_schema(case) -> None:  # noqa: ANN001
    # schemathesis ends the app's lifespan after each operation's test and starts it again on the
    # next call, so the model reloads in the background: a not_ready 503 (documented) may come first.
    response = case.call()
    if response.status_code == 503 and "not_ready" in response.text:
        case.validate_response(response, checks=CONFORMANCE)
        wait_until_ready()
        response = case.call()
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.path}: {response.status_code} {response.text[:500]}")
    case.validate_response(response, checks=CONFORMANCE)
