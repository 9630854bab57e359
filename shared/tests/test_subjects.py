"""Every subject and bucket name comes from ``Subjects``: the names services agree on."""

from __future__ import annotations

import pytest
from touchstone.shared.backupfile import BUCKETS, stream_prefix
from touchstone.shared.subjects import Bucket, Subjects


def test_bucket_names_are_distinct_and_kept_by_namespace() -> None:
    prod, dev = Subjects("prod-a"), Subjects("dev")
    names = [prod.bucket(b) for b in Bucket]
    assert len(set(names)) == len(Bucket)
    assert all(name.startswith("prod_a_") for name in names)  # dashes are not allowed in bucket names
    assert not set(names) & {dev.bucket(b) for b in Bucket}
    # the names already in running brokers: renaming one would orphan its bucket
    assert [prod.bucket(b) for b in (Bucket.SYSTEM, Bucket.TOKENS, Bucket.LEASE, Bucket.RESULTS)] == [
        prod.system_bucket, "prod_a_tokens", "prod_a_scheduler", "prod_a_results"]


def test_a_bucket_is_named_only_by_its_known_purposes() -> None:
    assert set(BUCKETS) <= set(Bucket)  # every bucket a backup keeps is one there is
    with pytest.raises(ValueError):
        Subjects("ns1").bucket("tokens.>")  # type: ignore[arg-type]


def test_event_type_filters_match_the_events_they_name() -> None:
    s = Subjects("ns1")
    event = s.event("task", "s-1-pi-60", "TaskFailed")
    assert s.events_of_type("task", "TaskFailed") == "ns1.evt.task.*.TaskFailed"
    assert s.events_of_type("*", "TaskFailed") == "ns1.evt.*.*.TaskFailed"
    assert event.split(".")[-1] == "TaskFailed" and event.startswith("ns1.evt.task.")


@pytest.mark.parametrize("kind", ["low.balance", "a>", "*", "", "x y"])
def test_an_alarm_kind_cannot_widen_its_subject(kind: str) -> None:
    with pytest.raises(ValueError):
        Subjects("ns1").alarm("runpod-provider", kind)
    assert Subjects("ns1").alarm("runpod-provider", "low_balance") == "ns1.alarm.runpod-provider.low_balance"


def test_backup_reads_the_streams_under_their_own_prefixes() -> None:
    s = Subjects("ns1")
    assert stream_prefix(s, "events") + ">" == s.all_events
    assert stream_prefix(s, "deadletter") + ">" == s.all_dead_letters
