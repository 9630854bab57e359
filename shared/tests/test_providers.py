"""A provider's live attempts on the wire: its own subject, hostile bodies refused."""

from __future__ import annotations

import pytest
from touchstone.shared.providers import MAX_LIVE, LiveAttempts, decode_live, encode_live
from touchstone.shared.subjects import Subjects


def test_a_report_goes_round_on_its_platforms_subject() -> None:
    s = Subjects("ns1")
    report = LiveAttempts(platform="runpod", replica="r-1", namespace="ns1", running=("touchstone-s-1-pi-60-1",))
    subject = s.provider_live("runpod")
    assert subject == "ns1.provider.runpod.live" and s.all_provider_live == "ns1.provider.*.live"
    assert decode_live(encode_live(report), subject) == report
    assert not subject.startswith("ns1.agent.")  # not a subject an agent's user may publish on


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    b'{"type": "LiveAttempts", "platform": "runpod"}',  # which replica?
    b'{"type": "AgentHeartbeat", "host": "runpod-provider"}',
    b'{"platform": "run.pod", "replica": "r"}',
])
def test_a_malformed_report_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_live(body)


def test_a_report_for_another_platform_or_too_long_is_refused() -> None:
    report = LiveAttempts(platform="onprem", replica="r-1")
    with pytest.raises(ValueError, match="onprem"):
        decode_live(encode_live(report), Subjects("ns1").provider_live("runpod"))
    with pytest.raises(ValueError):
        LiveAttempts(platform="runpod", replica="r-1", running=("x",) * (MAX_LIVE + 1))
    with pytest.raises(ValueError):
        Subjects("ns1").provider_live("*")

