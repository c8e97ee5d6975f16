"""schemathesis against the app's own OpenAPI schema: no server errors, no response that breaks
the schema (status codes, content types, bodies, headers), with an admin session so protected
routes are exercised past their door.

Bounded for CI: cases are generated up front (hypothesis, a few dozen per operation, positive and
negative data), then sent through the in-process app of the `instance` fixture — the same
real PostgreSQL and Redis as every other test — and each response is checked by schemathesis.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import COOKIE

MAX_EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Sent without the admin cookie: signing out would end the session the other cases use.
WITHOUT_SESSION = {("POST", "/api/auth/logout"), ("POST", "/api/auth/sessions/revoke-all"),
                   ("DELETE", "/api/auth/sessions/{session_id}")}


def generate(schema: Any, mode: GenerationMode, limit: int) -> list[Any]:
    cases: list[Any] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        cases.extend(_draw(operation.as_strategy(generation_mode=mode), limit))
    return cases


def _draw(strategy: Any, limit: int) -> list[Any]:
    drawn: list[Any] = []

    @given(strategy)
    @settings(max_examples=limit, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def collect(case: Any) -> None:
        drawn.append(case)

    try:
        collect()
    except Unsatisfiable:  # negative data for an operation that takes no input
        pass
    return drawn


async def send(app, case: Any, cookie: str) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    method, url = kwargs.pop("method"), kwargs.pop("url")
    headers = {k: str(v) for k, v in (kwargs.pop("headers", None) or {}).items()}
    if (method.upper(), case.path) not in WITHOUT_SESSION:
        headers["cookie"] = f"{COOKIE}={cookie}"
    request: dict[str, Any] = {"headers": headers, "params": kwargs.pop("params", None)}
    if "json" in kwargs:
        request["json"] = kwargs.pop("json")
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        request["content"] = data
    elif data is not None:
        request["data"] = data
    if kwargs.get("files"):
        request["files"] = kwargs.pop("files")
    return await app.client.request(method, url, **request)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
async def test_openapi_schema_holds_under_fuzzing(instance):
    limits = {"LOGIN_MAX_FAILURES_PER_ACCOUNT": 10**6, "LOGIN_MAX_FAILURES_PER_ADDRESS": 10**6}
    async with instance("postgres", "redis", **limits) as app:
        await app.add_user("admin@example.com", admin=True)
        assert (await app.login("admin@example.com")).status_code == 200
        cookie = app.client.cookies.get(COOKIE)
        app.client.cookies.clear()
        schema = schemathesis.openapi.from_dict(app.client._transport.app.openapi())

        started = time.monotonic()
        positive = generate(schema, GenerationMode.POSITIVE, MAX_EXAMPLES)
        negative = generate(schema, GenerationMode.NEGATIVE, MAX_EXAMPLES // 2)
        failures: list[str] = []
        statuses: dict[int, int] = {}
        by_operation: dict[str, dict[int, int]] = {}
        for case in positive + negative:
            app.client.cookies.clear()
            response = await send(app, case, cookie)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            key = f"{case.method} {case.path}"
            by_operation.setdefault(key, {}).setdefault(response.status_code, 0)
            by_operation[key][response.status_code] += 1
            checks = CHECKS + ([negative_data_rejection] if case in negative else [])
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # every failing case, reported at once
                first = str(exc).strip().splitlines()[:6]
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {' | '.join(first)}")
        elapsed = time.monotonic() - started
        print(f"\nschemathesis: {len(positive)} positive + {len(negative)} negative cases over "
              f"{len(list(schema.get_all_operations()))} operations in {elapsed:.1f} s; "
              f"statuses {dict(sorted(statuses.items()))}; {len(failures)} failures")
        for key, counts in sorted(by_operation.items()):
            print(f"  {key}: {dict(sorted(counts.items()))}")
        assert not failures, "\n".join(failures[:30])
        # The admin session was used throughout: protected routes were reached.
        assert (await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
                ).status_code == 200
