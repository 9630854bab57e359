"""Schemathesis against ``/schema`` as a user and as an admin: no 5xx, no answer that breaks
the documented schema. Skipped where schemathesis is not installed (it is a dev tool:
``uv run --with schemathesis pytest services/submission/tests/test_schema_fuzz.py``)."""

from __future__ import annotations

import asyncio

import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from schemathesis import checks  # noqa: E402

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
ADMIN_SECRET = "tst_bootstrap-admin-for-tests"  # as the api fixture has it


def _without_streams(raw: dict) -> dict:
    """Streaming answers never end by themselves; leave them to the SSE tests."""
    raw["paths"].pop("/api/v1/events", None)
    for item in raw["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"] if p.get("name") != "follow"]
    return raw


def _fuzz(raw: dict, base_url: str, token: str, examples: int) -> list[str]:
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []

    @hypothesis.given(case=schema.as_strategy())
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        try:
            case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        except AssertionError as e:
            failures.append(f"{case.method} {case.formatted_path}: {str(e)[:400]}")
        except Exception as e:  # schemathesis raises its own failure group types
            failures.append(f"{case.method} {case.formatted_path}: {type(e).__name__}: {str(e)[:400]}")

    run()
    return failures


async def test_fuzz_as_user_and_as_admin(api) -> None:
    raw = _without_streams((await api.anon.get("/schema/openapi.json")).json())
    alice = api.alice.headers["authorization"].removeprefix("Bearer ")
    for token in (alice, ADMIN_SECRET):
        failures = await asyncio.to_thread(_fuzz, raw, api.url, token, 300)
        assert not failures, "\n".join(sorted(set(failures))[:20])
