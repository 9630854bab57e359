"""The read path (issue 17): stored JSON served as is, keyset cursors, deletes that read as
gone, the JWT cache's bounds, and the limits the OpenAPI document states and the API keeps."""

from __future__ import annotations

import time

from touchstone.shared import events as ev
from touchstone.shared.testing import sample_report
from touchstone.shared.views import SubmissionView
from touchstone.submission.auth import JwtCache
from touchstone.submission.domain import Principal
from touchstone.submission.schemas import SubmissionDetail, SubmissionPage


async def test_served_json_is_the_models_json(api) -> None:
    sids = [await api.submit(api.alice, f"https://github.com/org/fs-{i}.git") for i in range(3)]
    await api.caught_up()
    await api.record(
        ev.TaskQueued(
            aggregate_id=f"{sids[0]}-validation",
            correlation_id=sids[0],
            submission_id=sids[0],
            task_id="validation",
            kind="validation",
            spec=ev.TaskSpec(git_url="https://github.com/org/fs-0.git"),
        )
    )
    r = await api.alice.get("/api/v1/submissions", params={"limit": 2})
    assert r.headers["content-type"] == "application/json"
    page = SubmissionPage.model_validate_json(r.content)
    assert [v.id for v in page.items] == sids[::-1][:2]
    assert r.content == page.model_dump_json().encode()  # byte for byte what pydantic would send
    rest = SubmissionPage.model_validate_json((await api.alice.get(
        "/api/v1/submissions", params={"limit": 2, "cursor": page.next_cursor})).content)
    assert [v.id for v in rest.items] == [sids[0]] and rest.next_cursor is None
    detail = (await api.alice.get(f"/api/v1/submissions/{sids[0]}")).content
    parsed = SubmissionDetail.model_validate_json(detail)
    assert [t.task_id for t in parsed.tasks] == ["validation"]
    assert detail == parsed.model_dump_json().encode()
    assert SubmissionView.model_validate(parsed.model_dump(exclude={"tasks"})) == await api.deps.store.get_submission(
        sids[0]
    )
    assert (await api.bob.get(f"/api/v1/submissions/{sids[0]}")).status_code == 404


async def test_a_malformed_cursor_is_refused_and_the_schema_says_its_form(api) -> None:
    for cursor in ("not-a-cursor", "MjAyNi0wMS0wMVQwMDowMDowMC4wMDAwMDBafHMtMQ", "2026-01-01T00:00:00Z~s-1"):
        r = await api.alice.get("/api/v1/submissions", params={"cursor": cursor})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    # any text of the stated form is a position: the page after it
    r = await api.alice.get("/api/v1/submissions", params={"cursor": "2026-02-30T00:00:00.000000Z~zzz"})
    assert r.status_code == 200
    schema = (await api.anon.get("/schema/openapi.json")).json()
    cursor = next(p for p in schema["paths"]["/api/v1/submissions"]["get"]["parameters"] if p["name"] == "cursor")
    assert "pattern" in str(cursor["schema"])


async def test_the_schema_states_the_limits_the_api_keeps(api) -> None:
    schema = (await api.anon.get("/schema/openapi.json")).json()
    parts = schema["components"]["schemas"]
    assert parts["SubmissionCreate"]["properties"]["git_url"]["minLength"] == 1
    assert parts["ScheduleCreate"]["properties"]["prediction_intervals"]["items"]["minimum"] == 1
    assert parts["SystemUpdate"]["additionalProperties"] is False
    assert (await api.alice.post("/api/v1/submissions", json={"git_url": ""})).status_code == 422
    sid = await api.accepted(api.alice)
    r = await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json={"prediction_intervals": [0]})
    assert r.status_code == 422
    for lax in ({"scheduler_paused": 0}, {"scheduler_paused": "true"}, {"runpod_max_running_tasks": "3"}):
        assert (await api.admin.patch("/api/v1/system", json=lax)).status_code == 422, lax
    r = await api.admin.patch("/api/v1/system", json={"runpod_max_running_tasks": 3.0, "scheduler_paused": True})
    assert r.status_code == 200 and r.json()["runpod_max_running_tasks"] == 3  # 3.0 is a JSON integer
    for path in ("/healthz", "/readyz"):
        assert schema["paths"][path]["get"]["security"] == []
        assert (await api.anon.get(path)).status_code == 200
    events = schema["paths"]["/api/v1/events"]["get"]["responses"]
    assert "text/event-stream" in events["200"]["content"]
    assert "application/problem+json" in events["401"]["content"]


async def test_options_lists_every_method_of_the_path(api) -> None:
    r = await api.alice.options("/api/v1/submissions")
    assert r.status_code == 204 and r.headers["allow"] == "GET, OPTIONS, POST"
    r = await api.alice.options("/api/v1/submissions/s-1")
    assert r.headers["allow"] == "DELETE, GET, OPTIONS"


async def test_a_deleted_submission_is_gone_at_once(api) -> None:
    sid = await api.submit(api.alice)
    await api.validated(sid, passed=False)
    assert (await api.alice.delete(f"/api/v1/submissions/{sid}")).status_code == 200
    assert (await api.alice.get(f"/api/v1/submissions/{sid}")).status_code == 404  # before the projector
    await api.caught_up()
    assert (await api.admin.get(f"/api/v1/submissions/{sid}")).status_code == 404
    live = await api.submit(api.alice)
    assert (await api.admin.delete(f"/api/v1/submissions/{live}")).status_code == 202
    await api.caught_up()
    api.deps.commands.deleted.clear()  # as another replica would see it: from the store
    assert (await api.admin.get(f"/api/v1/submissions/{live}")).status_code == 404


def test_the_jwt_cache_keeps_a_principal_no_longer_than_its_ttl_or_its_token() -> None:
    alice = Principal("alice", "user", via="jwt")
    cache = JwtCache(ttl_s=0.2, max_entries=2)
    cache.put(("a", ()), alice, time.time() + 60)
    assert cache.get(("a", ()),) == alice
    time.sleep(0.25)
    assert cache.get(("a", ())) is None  # the TTL bounds how long a withdrawn key is honoured
    cache.put(("b", ()), alice, time.time() + 0.05)
    time.sleep(0.1)
    assert cache.get(("b", ())) is None  # never past the token's exp
    cache.put(("c", ()), alice, time.time() - 1)
    cache.put(("d", ()), alice, None)
    assert cache.get(("c", ())) is None and cache.get(("d", ())) is None
    for key in ("e", "f", "g"):
        cache.put((key, ()), alice, time.time() + 60)
    assert len(cache._entries) <= 2
    assert JwtCache(ttl_s=0).get(("a", ())) is None


async def test_the_api_returns_the_typed_validation_report_and_the_schema_states_it(api) -> None:
    sid = await api.submit(api.alice)
    report = sample_report(False)
    await api.record(ev.SubmissionValidated(aggregate_id=sid, correlation_id=sid, passed=False, report=report))
    got = (await api.alice.get(f"/api/v1/submissions/{sid}")).json()
    assert got["status"] == "REJECTED"
    assert got["validation_report"]["checks"] == report["checks"]
    assert got["validation_report"]["feature_set"] == report["feature_set"]
    listed = (await api.alice.get("/api/v1/submissions")).json()["items"]
    assert next(s for s in listed if s["id"] == sid)["validation_report"]["passed"] is False

    parts = (await api.anon.get("/schema/openapi.json")).json()["components"]["schemas"]
    typed = next(v for k, v in parts.items() if k.endswith("ValidationReport"))
    assert set(typed["required"]) >= {"passed", "checks", "duration_s"}
    assert typed["properties"]["checks"]["maxItems"] == 32
    check = next(v for k, v in parts.items() if k.endswith("Check") and "detail" in v.get("properties", {}))
    assert check["properties"]["detail"]["maxLength"] == 1000
