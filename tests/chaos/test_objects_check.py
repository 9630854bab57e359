"""The checker's object-store invariant against moto's S3 server over real HTTP: every finished
attempt's console log and artifacts must be in the bucket, by the keys its event names; what a
store lost, or an event named outside its attempt, is reported one object at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from touchstone.shared import events as ev
from touchstone.shared.objects import keys
from touchstone.shared.objects.stores import S3ObjectStore
from touchstone.shared.objects.testing import S3_CREDENTIALS, make_bucket, moto_s3, put_bytes
from touchstone.shared.subjects import task_aggregate_id

from touchstone.chaos.invariants import bucket_keys, objects_missing

BUCKET = "chaos-check"
PREFIX = "tenant/"


@pytest.fixture
def s3() -> Iterator[tuple[S3ObjectStore, Any]]:
    with moto_s3() as endpoint:
        make_bucket(endpoint, BUCKET)
        store = S3ObjectStore(BUCKET, prefix=PREFIX, endpoint_url=endpoint, credentials=S3_CREDENTIALS)
        yield store, boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **S3_CREDENTIALS)


def finished(sid: str, task: str, attempt: int, artifacts: dict[str, str], log_key: str | None) -> ev.TrainingFinished:
    return ev.TrainingFinished(aggregate_id=task_aggregate_id(sid, task), correlation_id=sid, submission_id=sid,
                               task_id=task, attempt=attempt, artifacts=artifacts, log_key=log_key)


async def test_every_named_object_in_the_bucket_is_no_problem_and_each_missing_one_is(
        s3: tuple[S3ObjectStore, Any], tmp_path: Path) -> None:
    store, client = s3
    prefix = keys.attempt_prefix("s-1", "pi-15", 2)
    stored = {"console.log": prefix + "console.log", "long": prefix + "models/long.json",
              "metrics": prefix + "metrics.json"}
    for key in stored.values():
        await put_bytes(store, key, b"bytes of " + key.encode())
    whole = finished("s-1", "pi-15", 2, {"long": stored["long"], "metrics": stored["metrics"]}, stored["console.log"])
    other = ev.TaskFailed(aggregate_id=task_aggregate_id("s-1", "pi-60"), correlation_id="s-1", submission_id="s-1",
                          task_id="pi-60", attempt=1, reason="boom", failure_class="permanent")

    listed = bucket_keys(client, BUCKET, PREFIX)
    assert listed == set(stored.values())  # the keys events carry: the store's prefix is not part of them
    assert objects_missing([whole, other], listed) == []

    client.delete_object(Bucket=BUCKET, Key=PREFIX + stored["long"])  # the store lost one model
    missing = objects_missing([whole], bucket_keys(client, BUCKET, PREFIX))
    assert missing == [f"pi-15 attempt 2: artifact long {stored['long']} is not in the bucket"]


async def test_a_log_never_named_or_a_key_of_another_attempt_is_missing(s3: tuple[S3ObjectStore, Any]) -> None:
    store, client = s3
    elsewhere = keys.log_key("s-1", "pi-15", 1)  # present, but attempt 1's: not this attempt's output
    await put_bytes(store, elsewhere, b"log")
    listed = bucket_keys(client, BUCKET, PREFIX)
    missing = objects_missing([finished("s-1", "pi-15", 2, {"model": elsewhere}, None)], listed)
    assert missing == ["pi-15 attempt 2: no key for its console log",
                       f"pi-15 attempt 2: artifact model {elsewhere!r} is not under the attempt's prefix"]
    hostile = finished("s-1", "pi-15", 1, {"x": "../../etc/passwd"}, elsewhere)
    assert objects_missing([hostile], listed) == [
        "pi-15 attempt 1: artifact x '../../etc/passwd' is not under the attempt's prefix"]
