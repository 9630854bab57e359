"""Limits a hostile or careless user meets: quotas (429 with Retry-After) and idempotent POSTs.
Real API over HTTP, real NATS KV shared by two API instances."""

from __future__ import annotations

import asyncio

from touchstone.submission.quotas import QuotaLimits, decide

BODY = {"git_url": "https://github.com/org/fs.git"}


def test_the_quota_decision() -> None:
    limits = QuotaLimits(max_submissions_per_hour=3, max_concurrent_validations=2)
    assert decide([], 0, 1000.0, limits).allowed
    assert not (d := decide([("a", 100.0), ("b", 200.0)], 2, 1000.0, limits)).allowed and d.retry_after_s == 30
    full = decide([("a", 100.0), ("b", 200.0), ("c", 300.0)], 0, 1000.0, limits)
    assert not full.allowed and full.retry_after_s == 100.0 + 3600 - 1000


async def test_concurrent_validations_are_limited_per_user_with_429_and_retry_after(make_api) -> None:
    api = await make_api(max_concurrent_validations=2, max_submissions_per_hour=100)
    first = await api.submit(api.alice)
    await api.submit(api.alice)
    refused = await api.alice.post("/api/v1/submissions", json=BODY)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0 and "validations at a time" in refused.json()["detail"]
    assert (await api.bob.post("/api/v1/submissions", json=BODY)).status_code == 201  # per user
    assert (await api.admin.post("/api/v1/submissions", json=BODY)).status_code == 201  # admins are not limited
    await api.validated(first)  # one validation ends: a place is free again
    assert (await api.alice.post("/api/v1/submissions", json=BODY)).status_code == 201


async def test_submissions_per_hour_hold_across_two_api_replicas(make_api) -> None:
    one = await make_api(max_submissions_per_hour=3, max_concurrent_validations=100)
    two = await make_api(max_submissions_per_hour=3, max_concurrent_validations=100)
    alice_two = two.client(one.alice.headers["authorization"].split()[1])
    answers = await asyncio.gather(*(c.post("/api/v1/submissions", json=BODY)
                                     for c in (one.alice, alice_two, one.alice, alice_two, one.alice)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 201, 201, 429, 429], [r.text for r in answers]
    late = next(r for r in answers if r.status_code == 429)
    assert 3500 <= int(late.headers["retry-after"]) <= 3600


async def test_a_retried_post_with_the_same_key_gets_the_same_answer_once(make_api) -> None:
    api = await make_api()
    before = await api.events_in_stream()
    headers = {"Idempotency-Key": "create-fs-1"}
    first = await api.alice.post("/api/v1/submissions", json=BODY, headers=headers)
    again = await api.alice.post("/api/v1/submissions", json=BODY, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert await api.events_in_stream() == before + 1  # one submission, not two

    other = await api.alice.post("/api/v1/submissions", json={**BODY, "name": "other"}, headers=headers)
    assert other.status_code == 422 and "another request body" in other.text
    # another caller's same key is another request (never a replay of alice's answer)
    bobs = await api.bob.post("/api/v1/submissions", json=BODY, headers=headers)
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]
    # a rejected request is kept too, and a key that is not printable ASCII is refused
    bad, local = {"Idempotency-Key": "bad-1"}, {"git_url": "file:///etc"}
    assert (await api.alice.post("/api/v1/submissions", json=local, headers=bad)).status_code == 422
    assert (await api.alice.post("/api/v1/submissions", json=local, headers=bad)).status_code == 422
    assert (await api.alice.post("/api/v1/submissions", json=BODY,
                                 headers={"Idempotency-Key": "x" * 300})).status_code == 400
