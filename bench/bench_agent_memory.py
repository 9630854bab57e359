"""The agent's memory under a hostile console: a training whose trainer prints 1 GB on one line
(no newline) and leaves a 10 GB sparse model. The agent runs as its own process (``python -m
touchstone.agent``, process runtime in its bubblewrap sandbox where bubblewrap works) against a
real nats-server; its peak RSS is the kernel's ``VmHWM`` read just before the attempt ends.

Before the hostile-work-directory fixes, a 300 MB line took the agent to 637 MB (it read the
whole line to take the log's tail); now one chunk of the console is read at a time, the line is
streamed once, cut, and the tail is read from the last 256 KiB.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nats
from touchstone.agent.sandbox import Bubblewrap
from touchstone.agent.testing import STAND_IN_TRAINER, launch, send
from touchstone.shared.agents import decode_attempt_report
from touchstone.shared.natsserver import NatsServer
from touchstone.shared.subjects import Subjects

LINE_MIB = 1024
HOST = "bench-mem"
HOSTILE = f"""
import sys
with open(out / "models" / "huge.bin", "wb") as f:
    f.truncate(10 << 30)
block = b"x" * (1 << 20)
for _ in range({LINE_MIB}):
    sys.stdout.buffer.write(block)
sys.stdout.buffer.write(b"\\n")
sys.stdout.flush()
"""


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-agent-memory-"))
    server = NatsServer(tmp / "nats")
    server.start()
    trainer = tmp / "trainer"
    (trainer / "src").mkdir(parents=True)
    (trainer / "src" / "stand_in_trainer.py").write_text(STAND_IN_TRAINER)
    fs = tmp / "fs"
    fs.mkdir()
    (fs / "feature_set.py").write_text("NAME = 'x'\n")
    (fs / "behaviour.json").write_text(json.dumps({"hostile": HOSTILE}))
    sandbox = "bubblewrap" if Bubblewrap.for_python(sys.executable).probe() is None else "none"
    env = {**os.environ, "TOUCHSTONE_NATS_URL": server.url, "TOUCHSTONE_DATA_DIR": str(tmp / "data"),
           "TOUCHSTONE_TRAINER_DIR": str(trainer), "TOUCHSTONE_TRAINER_MODULE": "stand_in_trainer",
           "TOUCHSTONE_RUNTIME": "process", "TOUCHSTONE_PROCESS_SANDBOX": sandbox,
           "TOUCHSTONE_ALLOW_LOCAL_SOURCES": "true", "TOUCHSTONE_NVIDIA_SMI": "no-such-nvidia-smi",
           "TOUCHSTONE_NUM_SLOTS": "1", "TOUCHSTONE_LOG_LEVEL": "WARNING", "TOUCHSTONE_POLL_INTERVAL_S": "0.05"}
    agent = await asyncio.create_subprocess_exec(sys.executable, "-m", "touchstone.agent", "--host", HOST, env=env,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    nc = await nats.connect(server.url)
    subjects = Subjects("touchstone")
    try:
        ended: list[object] = []
        streamed = {"lines": 0, "bytes": 0}

        async def on_report(msg: object) -> None:
            report = decode_attempt_report(msg.data)  # type: ignore[attr-defined]
            if report is not None and report.removed:
                ended.append(report)

        async def on_log(msg: object) -> None:
            data = msg.data  # type: ignore[attr-defined]
            streamed["lines"] += data.count(b"\n") + 1
            streamed["bytes"] += len(data)

        await nc.subscribe(subjects.agent_reports(HOST), cb=on_report)
        await nc.subscribe(subjects.all_logs, cb=on_log)
        for _ in range(300):
            try:
                await nc.request(subjects.agent_commands(HOST), b"{}", timeout=0.2)
                break
            except Exception:
                await asyncio.sleep(0.1)
        before_kib = _status_kib(agent.pid, "VmRSS")
        command = launch(str(fs), kind="training", task_id="pi-15", placement=f"{HOST}/cpu0")
        started = time.monotonic()
        assert (await send(nc, subjects, command, HOST)).ok
        peak_kib = 0
        while not ended and time.monotonic() - started < 600:
            peak_kib = max(peak_kib, _status_kib(agent.pid, "VmHWM"))
            await asyncio.sleep(0.05)
        peak_kib = max(peak_kib, _status_kib(agent.pid, "VmHWM"))
        elapsed = time.monotonic() - started
        outcome = ended[0].outcome if ended else None  # type: ignore[attr-defined]
    finally:
        await nc.close()
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 30)
        server.stop()
        await asyncio.to_thread(shutil.rmtree, tmp, True)
    return {
        "name": "agent memory under a hostile console (1 GB single line, 10 GB sparse model)",
        "sandbox": sandbox,
        "outcome": {"result": outcome.result, "exit_code": outcome.exit_code,
                    "artifacts": sorted(outcome.artifacts)} if outcome else None,
        "rows": [
            {"metric": "agent peak RSS (VmHWM), 1 GB line", "value": round(peak_kib / 1024, 1), "unit": "MiB",
             "target": "< 300 (was 637 for a 300 MB line)", "met": peak_kib / 1024 < 300},
            {"metric": "agent RSS before the attempt", "value": round(before_kib / 1024, 1), "unit": "MiB"},
            {"metric": "launch to attempt ended (1 GB printed, streamed, log cut)", "value": round(elapsed, 1),
             "unit": "s"},
            {"metric": "console bytes streamed to NATS for the 1 GB line", "value": streamed["bytes"],
             "unit": "bytes", "target": "< 1 MiB"},
            {"metric": "attempt ended with exit 0, the sparse model left behind", "value":
             int(bool(outcome and outcome.exit_code == 0 and "huge.bin" not in outcome.artifacts)), "unit": "bool",
             "met": bool(outcome and outcome.exit_code == 0 and "huge.bin" not in outcome.artifacts)},
        ],
    }
