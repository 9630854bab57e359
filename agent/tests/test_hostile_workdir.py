"""Attacks on the agent from the task's own work directory, which fail (DESIGN §5: the work
directory is hostile ground). Each runs on the process runtime in its bubblewrap sandbox and on
the Docker runtime (real engine, the task image), with a real agent and a real nats-server.

Feature set A, a training that ends normally after it:
* plants links where the agent's files are or were: ``console.log`` → ``/proc/self/environ``
  (the agent's environment holds a broker password), ``attempt.json`` and its partial file →
  a host file, and tries the same one level up, in the agent's folder of the attempt;
* replaces outputs: ``out/models/*`` links to a host file and to ``/dev/zero``, a FIFO as a
  model and as ``metrics.json``, ``curves.json`` → ``/proc/self/environ``, a 10 GB sparse model;
* prints 1 GB on one line, without a newline.

Feature set B points ``out`` at another attempt's folder and forges ``attempt.json`` in its
work directory, then waits while the agent restarts.

Nothing leaks (no secret in any streamed line, log or artifact), nothing outside the work
directory changes, the agent's memory stays bounded, and the restarted agent goes on with the
state it wrote itself.
"""

from __future__ import annotations

import json
import resource
import sys
import uuid
from pathlib import Path

import pytest
from touchstone.agent.sandbox import Bubblewrap
from touchstone.agent.testing import Reports, docker_runtime_or_skip, launch, send
from touchstone.shared.commands import container_name

SECRET = f"nats-password-{uuid.uuid4().hex}"
ONE_GB = 1 << 30

PLANT_A = '''
import os, sys
victim, = [behaviour[k] for k in ("victim",)]
def attempt(what, fn):
    try:
        fn()
        print("planted", what, flush=True)
    except OSError as e:
        print("refused", what, e.errno, flush=True)
attempt("console.log", lambda: os.symlink("/proc/self/environ", "console.log"))
attempt("../console.log", lambda: (os.unlink("../console.log"), os.symlink("/proc/self/environ", "../console.log")))
attempt("attempt.json", lambda: os.symlink(victim, "attempt.json"))
attempt("attempt.json.partial", lambda: os.symlink(victim, "attempt.json.partial"))
attempt("../attempt.json.partial", lambda: os.symlink(victim, "../attempt.json.partial"))
attempt("../.runtime.json.partial", lambda: os.symlink(victim, "../.runtime.json.partial"))
models = out / "models"
os.symlink(victim, models / "stolen.bin")
os.symlink("/dev/zero", models / "zero.bin")
os.mkfifo(models / "fifo.bin")
(out / "metrics.json").unlink()
os.mkfifo(out / "metrics.json")
(out / "curves.json").unlink()
os.symlink("/proc/self/environ", out / "curves.json")
with open(models / "huge.bin", "wb") as f:
    f.truncate(10 << 30)
block = b"x" * (1 << 20)
for _ in range(behaviour["line_mib"]):
    sys.stdout.buffer.write(block)
sys.stdout.buffer.write(b"\\n")
sys.stdout.flush()
'''

PLANT_B = '''
import os, shutil, time
shutil.rmtree(out)
os.symlink(behaviour["other_attempt"], out)
forged = {"command": {"submission_id": "forged", "task_id": "validation", "attempt": 1, "kind": "validation",
                      "spec": {"git_url": "/"}, "placement": "h1/cpu1"}, "stage": "ended", "log_offset": 0}
open("attempt.json", "w").write(json.dumps(forged))
print("forged attempt.json", flush=True)
while not os.path.exists(behaviour["release"]):
    time.sleep(0.05)
'''


def _bubblewrap_or_skip() -> None:
    if why := Bubblewrap.for_python(sys.executable).probe():
        pytest.skip(why)


@pytest.fixture(params=["bubblewrap", "docker"])
def runtime_settings(request, agent_settings):
    def build(**overrides):
        if request.param == "docker":
            docker_runtime_or_skip("probe")
            return agent_settings(runtime="docker", host=f"d{uuid.uuid4().hex[:8]}", kill_grace_s=1.0, **overrides)
        _bubblewrap_or_skip()
        return agent_settings(process_sandbox="bubblewrap", **overrides)

    return build


def _everything_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink())


async def test_a_hostile_work_directory_leaks_nothing_and_changes_nothing_outside(
    nc, subjects, runtime_settings, start_agent, make_feature_set, eventually, tmp_path, monkeypatch, objects
):
    monkeypatch.setenv("TOUCHSTONE_NATS_PASSWORD", SECRET)  # in the agent's /proc/self/environ
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA the agent's own\n")
    other = tmp_path / "artifacts-of-another-attempt"
    (other / "models").mkdir(parents=True)
    (other / "models" / "long.json").write_text('{"other attempt": "its model"}')
    (other / "metrics.json").write_text('{"other attempt": 1}')
    before_other = _everything_under(other)
    settings = runtime_settings(max_log_bytes=8 << 20, poll_interval_s=0.05)
    host = settings.host
    reports = await Reports.listen(nc, subjects, host)
    running = await start_agent(settings)
    release = settings.work_root / container_name("sb", "pi-15", 1) / "work" / "release"
    fs_a = make_feature_set("a", hostile=PLANT_A, victim=str(victim), line_mib=ONE_GB >> 20)
    fs_b = make_feature_set("b", hostile=PLANT_B, other_attempt=str(other), release=str(release))
    cmd_a = launch(fs_a, kind="training", task_id="pi-15", placement=f"{host}/cpu0", submission_id="sa",
                   store=objects)
    cmd_b = launch(fs_b, kind="training", task_id="pi-15", placement=f"{host}/cpu1", submission_id="sb",
                   store=objects)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (await send(nc, subjects, cmd_a, host)).ok
    assert (await send(nc, subjects, cmd_b, host)).ok
    a = (await eventually(lambda: reports.ended(cmd_a.container_name), timeout=300, interval=0.2)).outcome
    rss_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert await eventually(lambda: any("forged attempt.json" in line for line in reports.logs), timeout=60)

    # B: the agent restarts while B runs, and goes on with the state it wrote itself
    await running.stop()
    second = await start_agent(settings)
    adopted = second.agent.attempts.live[cmd_b.container_name]
    # (its upload grant is kept apart from attempt.json, where the task never reaches)
    assert adopted.command == cmd_b.model_copy(update={"upload": None}) and adopted.stage == "started"
    release.write_text("go")
    b = (await eventually(lambda: reports.ended(cmd_b.container_name), timeout=60)).outcome

    # A ran to its end; only its real models were collected; the rest is said in its log
    assert a.result == "exited" and a.exit_code == 0, a
    assert sorted(a.artifacts) == ["long.json", "short.json"], a.artifacts
    assert a.metrics == {}
    log_a = (await objects.read(a.log_key or "")).decode(errors="replace")  # as uploaded with the grant
    left_behind = [line for line in log_a.splitlines() if line.startswith("[agent] not collected: ")]
    for left in ("stolen.bin", "zero.bin", "fifo.bin", "huge.bin", "metrics.json", "curves.json"):
        assert any(left in line for line in left_behind), (left, left_behind)
    assert "10737418240 bytes, over the" in log_a
    assert len(log_a) < (8 << 20) + 10_000 and "console cut" in log_a
    streamed_cut = [line for line in reports.logs if line.startswith("xxxx")]
    assert len(streamed_cut) == 1 and streamed_cut[0].endswith("bytes cut]") and len(streamed_cut[0]) <= 4096
    assert rss_growth_mib < 200, f"the agent grew by {rss_growth_mib:.0f} MiB for a 1 GB line"

    # B: `out` pointed at another attempt's folder: nothing of it was taken
    assert b.result == "exited" and b.exit_code == 0, b
    assert b.artifacts == {} and b.metrics == {}

    # nothing leaked, nothing outside the work directories changed
    everything = "\n".join(reports.logs) + json.dumps([a.model_dump(mode="json"), b.model_dump(mode="json")])
    assert SECRET not in everything
    assert SECRET.encode() not in _everything_under(settings.artifacts_root)
    assert SECRET.encode() not in _everything_under(objects.root)
    assert victim.read_text() == "ssh-ed25519 AAAA the agent's own\n"
    assert _everything_under(other) == before_other
    assert not (settings.work_root / cmd_a.container_name).exists()
