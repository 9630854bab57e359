"""An agent going down and coming back, and its line to the server breaking and healing: the
attempts it drives must not be burned by its own restart, nor by a late answer from the server.
Real nats-server, real processes (the stand-in trainer)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from touchstone.agent import prepare as agent_prepare
from touchstone.agent.testing import Reports, launch, send
from touchstone.shared.agents import CommandReply


async def test_an_agent_stopped_during_prepare_starts_the_trainer_first_and_the_next_one_adopts_it(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path, monkeypatch
):
    """A deploy's SIGTERM in the middle of a prepare must not burn the attempt: an attempt
    interrupted in prepare cannot be adopted (it fails), so the stopping agent lets it start."""
    real_fetch = agent_prepare.fetch_feature_set

    def slow_fetch(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)  # a fetch that takes a while (it runs in a thread)
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(agent_prepare, "fetch_feature_set", slow_fetch)
    reports = await Reports.listen(nc, subjects)
    settings = agent_settings()
    first = await start_agent(settings)
    release = tmp_path / "release"
    command = launch(make_feature_set(sleep=60, release=str(release), report={"passed": True}, exit=0))
    assert (await send(nc, subjects, command)).ok
    await first.stop()  # while the feature set is being fetched

    second = await start_agent(settings)
    assert command.container_name in second.agent.attempts.running()
    release.write_text("go")
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.result == "exited" and outcome.exit_code == 0, outcome


async def test_an_agent_whose_lease_round_trip_timed_out_still_hears_commands(
    nats_server, nc, subjects, agent_settings, start_agent
):
    """The server answers a lease round trip only after its timeout (here: paused past it, as a
    cut cable or a stalled node would). The late answer must not leave the agent deaf: nats-py
    stops reading for good when a PONG comes for a flush it gave up on."""
    await start_agent(agent_settings(lease_s=2.0))  # a round trip is waited for 1 s
    assert nats_server.process is not None
    nats_server.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(2.0)  # lease checks time out meanwhile
    finally:
        nats_server.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(1.0)  # the late PONGs arrive
    reply = await nc.request(subjects.agent_commands("h1"), b"{}", timeout=5)
    assert not CommandReply.model_validate_json(reply.data).ok  # answered (a malformed command)
