"""What an agent sends is hostile until decoded: every list and text of a heartbeat or a reply
has a bound, and a message past it is refused whole (the listener drops it with a warning)
rather than carried into placement, the hosts view or memory."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from touchstone.shared.agents import (
    MAX_REASON_CHARS,
    MAX_RUNNING,
    AgentHeartbeat,
    CommandReply,
    decode_reply,
    decode_report,
    encode,
)


def heartbeat(**fields: object) -> bytes:
    return json.dumps({"type": "AgentHeartbeat", "host": "gpu-1", **fields}).encode()


def test_a_heartbeat_of_an_honest_agent_decodes() -> None:
    sent = AgentHeartbeat(host="gpu-1", slots_total=2, slots_free=1, slots_busy=(0,),
                          running=("touchstone-s-1-pi-15-1",), isolation="docker")
    assert decode_report(encode(sent)) == sent


@pytest.mark.parametrize("fields", [
    {"running": ["c"] * (MAX_RUNNING + 1)},
    {"running": ["c" * 10_000]},
    {"slots_busy": list(range(2000))},
    {"slots_busy": [-1]},
    {"slots_total": 10**9},
    {"gpus": [{"index": i} for i in range(2000)]},
    {"gpus": [{"index": 0, "name": "x" * 10_000}]},
    {"version": "v" * 10_000},
])
def test_a_heartbeat_past_a_bound_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        decode_report(heartbeat(**fields))


def test_a_long_refusal_reason_is_cut_not_carried() -> None:
    got = decode_report(heartbeat(refusing="docker: " + "e" * 1_000_000))
    assert got is not None and got.refusing is not None
    assert got.refusing.startswith("docker: ") and len(got.refusing) == MAX_REASON_CHARS


def test_a_reply_naming_a_huge_holder_is_refused() -> None:
    with pytest.raises(ValidationError):
        CommandReply(ok=False, held_by="x" * 10_000)
    with pytest.raises(ValueError):
        decode_reply(json.dumps({"ok": False, "held_by": "x" * 10_000}).encode())
