"""schemathesis over the live server's /openapi.json as an admin, a user and nobody.

Fixed seed, a bounded number of examples per operation (MP_FUZZ_EXAMPLES, default 8): no 5xx,
no traceback in an answer or the server log, every answer as the document says.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.server import ServerProcess

EXAMPLES = int(os.environ.get("MP_FUZZ_EXAMPLES", "8"))
SEED = 20261129
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # The fuzzer's own keys and accounts must survive it: they are made before it starts, and
    # the operations that could delete or disable them are pointed at sacrificial rows instead.
    srv = ServerProcess(
        tmp_path_factory.mktemp("fuzz"),
        # Failed log-ins would otherwise sleep up to 5 s each and lock the address out; an event
        # stream would otherwise hold each of the fuzzer's calls for five minutes.
        {
            "MP_SECURITY__LOGIN__SLOWDOWN_SECONDS": "0",
            "MP_SECURITY__LOGIN__MAX_FAILURES": "1000",
            "MP_STREAMS__MAX_SECONDS": "0.5",
        },
    ).start()
    yield srv
    assert srv.stop() == 0


def _sacrifices(srv: ServerProcess, admin_key: str) -> dict[str, int]:
    admin = srv.client(admin_key)
    srv.create_user("victim")
    victim = admin.get("/api/v1/users?limit=1").json()["items"][0]["id"]
    key = admin.post(f"/api/v1/keys?user={victim}", json={"name": "victim"}).json()["id"]
    return {"user_id": victim, "key_id": key}


def refused_parameters(response) -> set[str]:
    """The fields a 404 or 422 answer names as refused (empty for any other answer)."""
    if response.status_code not in (404, 422):
        return set()
    try:
        details = (response.json().get("error") or {}).get("details")
    except ValueError:
        return set()
    return {d.get("field") for d in details} if isinstance(details, list) else set()


def fuzz(operation, base_url: str, identities: list[dict[str, str]], pinned: dict) -> int:
    """Run EXAMPLES generated cases of one operation as every identity; the requests made."""
    # A cursor is a token the server issued: the document gives its alphabet, not which exist.
    declared = {p.name for p in operation.path_parameters} | {
        p.name for p in operation.query if p.name != "cursor"
    }
    calls = 0

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(path_parameters=pinned or None))
    def run(case) -> None:
        nonlocal calls
        for headers in identities:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            calls += 1
            assert "Traceback" not in response.text, (case.as_curl_command(), response.text)
            case.validate_response(response, checks=CHECKS)
            assert not refused_parameters(response) & declared, (
                "the server refused a parameter value the document allows",
                case.as_curl_command(),
                response.text,
            )

    run()
    return calls


def test_no_generated_request_breaks_the_server(server):
    admin_key = server.create_key()
    server.create_user("fuzzer")
    identities = [
        {"Authorization": f"Bearer {admin_key}"},
        {"Authorization": f"Bearer {server.create_key('fuzzer')}"},
        {},
    ]
    fixed = _sacrifices(server, admin_key)
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    calls = 0
    for operation in operations:
        pinned = {
            name: fixed[name]
            for name in ("user_id", "key_id")
            if f"{{{name}}}" in operation.path and operation.method.upper() in ("PATCH", "DELETE")
        }
        calls += fuzz(operation, server.url, identities, pinned)
    print(f"fuzz: {len(operations)} operations, {calls} requests, {EXAMPLES} examples each")
    for headers in identities[:2]:
        assert server.client(headers["Authorization"][7:]).get("/api/v1/me").status_code == 200
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
