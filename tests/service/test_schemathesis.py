"""schemathesis against the real daemon's OpenAPI document.

The daemon runs as a subprocess (simulated mount, free loopback port, automatic
tracking off); schemathesis loads ``/openapi.json`` from it over HTTP and, for
every ``/api/v1`` operation, sends generated requests with the bearer token:
schema-valid ones (positive) and schema-invalid ones (negative).  Checks: never a
5xx, every status code and content type is one the document declares, every
response body conforms to its declared schema, invalid data is refused with a
4xx, and a command sent without the token is refused (401).  The number of
examples is bounded so the whole run takes well under a minute.

Schema-valid commands may still be refused by the engine (state, envelope, speed
limit): ``positive_data_acceptance`` is therefore not checked; those refusals are
declared (409/422) and conform to the ``Refusal`` schema.
"""

from __future__ import annotations

import time

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.daemon import DaemonProcess, make_config

pytestmark = [pytest.mark.network, pytest.mark.slow]

#: Examples per operation and generation mode (plans run the ephemeris: fewer).
EXAMPLES = 25
PLAN_EXAMPLES = 3


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path, _ = make_config(tmp_path_factory.mktemp("schemathesis"), window=False,
                          tracking={"auto_track": False})
    d = DaemonProcess(path).wait_ready()
    yield d
    d.kill()


def _operations(daemon) -> list:
    schema = schemathesis.openapi.from_url(f"{daemon.url}/openapi.json", timeout=10)
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith("/api/v1/"):
            ops.append(op)
    return ops


def test_openapi_document_loads_and_covers_the_api(daemon):
    ops = {(op.method.upper(), op.path) for op in _operations(daemon)}
    for name in ("goto", "jog", "track", "stop", "park", "unpark", "stow", "reset"):
        assert ("POST", f"/api/v1/{name}") in ops
    for name in ("status", "plan", "events", "info"):
        assert ("GET", f"/api/v1/{name}") in ops


def _fuzz(op, mode, n: int, headers: dict, checks: list, codes: set[int]):
    """A hypothesis test of one operation: ``n`` generated requests, all checks applied."""

    @hypothesis.settings(max_examples=n, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck),
                         phases=[hypothesis.Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call_and_validate(headers=headers, checks=checks, timeout=30)
        assert response.status_code < 500, (case.path, case.body, response.text[:300])
        codes.add(response.status_code)

    return run


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_every_operation_conforms_and_never_5xx(daemon, mode):
    headers = {"Authorization": f"Bearer {daemon.token}"}
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    if mode is schemathesis.GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    else:
        checks.append(ignored_auth)
    seen: dict[str, set[int]] = {}
    t0 = time.monotonic()
    for op in _operations(daemon):
        label = f"{op.method.upper()} {op.path}"
        codes = seen.setdefault(label, set())
        n = PLAN_EXAMPLES if op.path.endswith("/plan") else EXAMPLES

        try:
            _fuzz(op, mode, n, headers, checks, codes)()
        except hypothesis.errors.Unsatisfiable:
            # No schema-invalid request exists for an operation without inputs.
            assert mode is schemathesis.GenerationMode.NEGATIVE, label
    elapsed_s = time.monotonic() - t0
    assert elapsed_s < 60.0, elapsed_s
    # The daemon survived it all, its control loop never failed, and it stops cleanly.
    st = daemon.status()
    assert st["loop"]["errors"] == 0
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert all(seen.values()), seen                      # every operation was exercised
        assert 200 in seen["POST /api/v1/goto"] or 409 in seen["POST /api/v1/goto"], seen
    else:
        # (negative_data_rejection checked each schema-violating request was refused)
        for name in ("goto", "jog", "track"):
            assert 422 in seen[f"POST /api/v1/{name}"], seen
    assert "Traceback" not in daemon.output(), daemon.output()[-3000:]
