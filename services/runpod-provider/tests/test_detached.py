"""The trainer detached in a fake pod (a real SSH endpoint): it outlives the SSH session that
started it, is started at most once, is followed from an offset, and what it writes is read
within bounds. The pod going away takes the detached trainer with it."""

from __future__ import annotations

import asyncio
import sys
import time

import asyncssh
import pytest
from touchstone.runpod_provider import detached
from touchstone.runpod_provider.testing import wait_for

pytestmark = pytest.mark.integration  # trainers detached over real SSH

PY = sys.executable


def connect(pod, key):
    return asyncssh.connect("127.0.0.1", pod.ssh.port, username="root", client_keys=[key], known_hosts=None,
                            connect_timeout=5)


def script(code: str) -> list[str]:
    return [PY, "-c", code]


async def follow(conn, offset: int = 0, deadline_s: float = 30.0) -> tuple[int | None, list[str], int]:
    lines: list[str] = []

    async def take(batch: list[str]) -> None:
        lines.extend(batch)

    follower = detached.Follower(conn, take, offset)
    status = await follower.follow(0.05, time.monotonic() + deadline_s)
    return status, lines, follower.offset


async def test_the_trainer_outlives_its_session_and_a_new_one_follows_it_on(api, spec, until_ready, ssh_key):
    pod = await until_ready((await api.create_pod(spec())).id)
    code = ("import time,sys\nprint('one', flush=True)\ntime.sleep(1.0)\nprint('two', flush=True)\n"
            "print('err', file=sys.stderr, flush=True)\nsys.exit(3)")
    async with connect(pod, ssh_key) as conn:
        assert await detached.start(conn, script(code), 10) is True
        assert await detached.start(conn, script("print('again')"), 10) is False  # once per pod
    # the session that started it is gone; a new one follows it to its end

    async with connect(pod, ssh_key) as conn:
        async with conn.start_sftp_client() as sftp:
            assert await detached.started(sftp)
        status, lines, offset = await follow(conn)
    assert status == 3 and lines == ["one", "two", "err"]

    async with connect(pod, ssh_key) as conn:  # from an offset: only what came after it
        status, lines, _ = await follow(conn, offset=len("one\n"))
    assert status == 3 and lines == ["two", "err"] and offset == len("one\ntwo\nerr\n")


async def test_a_line_without_an_end_is_cut_and_a_planted_console_link_is_not_followed(
        api, spec, until_ready, ssh_key):
    pod = await until_ready((await api.create_pod(spec())).id)
    code = ("import sys\nsys.stdout.write('x' * (5 * 65536 + 5)); sys.stdout.flush()\n"
            "sys.stdout.write('\\nnext\\n' + 'y' * (5 * 65536))\nsys.stdout.flush()")
    async with connect(pod, ssh_key) as conn:
        await detached.start(conn, script(code), 10)
        status, lines, _ = await follow(conn)
    assert status == 0 and len(lines) == 3, [len(line) for line in lines]
    assert lines[0].startswith("x" * 60_000) and lines[0].endswith("bytes cut]") and len(lines[0]) <= 65536
    assert lines[1] == "next" and lines[2].startswith("y" * 60_000) and lines[2].endswith("bytes cut]")

    other = await until_ready((await api.create_pod(spec())).id)
    plant = ("import os\nos.remove('touchstone/run/console.log')\n"
             "os.symlink('/etc/passwd', 'touchstone/run/console.log')")
    async with connect(other, ssh_key) as conn:
        await detached.start(conn, script(plant), 10)
        status, lines, _ = await follow(conn)
    assert status == 0 and lines == []


async def test_a_trainer_gone_without_an_exit_code_is_reported_as_lost(api, spec, until_ready, ssh_key):
    pod = await until_ready((await api.create_pod(spec())).id)
    async with connect(pod, ssh_key) as conn:
        await detached.start(conn, script("import time\nprint('up', flush=True)\ntime.sleep(60)"), 10)
        async with conn.start_sftp_client() as sftp:
            async def has_pid() -> bool:
                try:
                    return (await sftp.stat(detached.PID)).size > 0
                except asyncssh.SFTPError:
                    return False

            await wait_for(has_pid)
        await conn.run("sh -c 'kill -9 \"$(cat touchstone/run/pid)\"'", check=True)  # its shell dies
        status, _, _ = await follow(conn)
    assert status is None


async def test_terminating_the_pod_kills_its_detached_trainer(fake, api, spec, until_ready, ssh_key, tmp_path):
    pod = await until_ready((await api.create_pod(spec())).id)
    marker = tmp_path / "alive"
    code = f"import time,pathlib\nwhile True:\n    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(0.05)"
    async with connect(pod, ssh_key) as conn:
        await detached.start(conn, script(code), 10)
    await wait_for(marker.exists)

    await api.terminate_pod(pod.id)
    await asyncio.sleep(0.3)
    marker.unlink(missing_ok=True)
    await asyncio.sleep(0.5)
    assert not marker.exists()  # nothing of the pod runs on
