"""Pods of the fake are real SSH endpoints: exec, SFTP, key auth, slow pulls, death."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket

import asyncssh
import httpx
import pytest
from touchstone.runpod_local.container import (
    DEFAULT_POD_IMAGE,
    LABEL,
    OWNER_LABEL,
    POD_LABEL,
    docker,
    owner_id,
    sweep_orphans,
)
from touchstone.runpod_local.testing import Pods, ssh_port

pytestmark = pytest.mark.integration  # pods as real sshd containers


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode()


def connect(pod_or_port, key, *, host="127.0.0.1", username="root", **options):
    port = pod_or_port if isinstance(pod_or_port, int) else ssh_port(pod_or_port)
    options.setdefault("connect_timeout", 5)
    return asyncssh.connect(host, port, username=username, client_keys=[key], known_hosts=None, **options)


async def test_run_a_command_and_sftp_a_file_in_and_out(pods, ssh_key, tmp_path):
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])
    local = tmp_path / "in.txt"
    local.write_text("feature set\n")

    async with connect(pod, ssh_key) as conn:
        result = await conn.run("sh -c 'pwd; echo $RUNPOD_POD_ID; echo oops >&2; exit 3'")
        workdir, pod_id = result.stdout.split()
        assert pod_id == pod["id"] and result.stderr == "oops\n" and result.exit_status == 3
        async with conn.start_sftp_client() as sftp:
            assert await sftp.realpath(".") == workdir
            await sftp.mkdir("job")
            await sftp.put(str(local), "job/in.txt")
            copied = await conn.run("cat job/in.txt", check=True)
            assert copied.stdout == "feature set\n"
            await conn.run(shlex.join(["cp", "job/in.txt", f"{workdir}/job/out.txt"]), check=True)
            await sftp.get(f"{workdir}/job/out.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "feature set\n"


async def test_commands_are_argv_never_a_shell(pods, ssh_key):
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])

    async with connect(pod, ssh_key) as conn:
        literal = await conn.run("printf '%s|' 'a b' $HOME ';' 'x'")
        missing = await conn.run("no-such-binary --flag")
        fed = await conn.run("cat", input="through stdin")

    assert literal.stdout == "a b|$HOME|;|x|"
    assert missing.exit_status == 127
    assert fed.stdout == "through stdin"


async def test_sftp_stays_inside_the_pod(pods, ssh_key):
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])

    async with connect(pod, ssh_key) as conn, conn.start_sftp_client() as sftp:
        assert ".." in await sftp.listdir(".")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.listdir("/etc")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.get("../../../etc/hostname", os.devnull)


async def test_a_wrong_key_or_user_is_refused(pods, ssh_key):
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])
    stranger = asyncssh.generate_private_key("ssh-ed25519")

    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(pod, stranger):
            pass
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(pod, ssh_key, username="ubuntu"):
            pass


async def test_a_slow_pull_is_running_but_not_connectable_until_ready(pods, fake, ssh_key):
    fake.faults.pull_s = 0.6
    created = await pods.create(public(ssh_key))
    for _ in range(fake.polls_to_running):
        pod = await pods.get(created["id"])
    assert pod is not None and pod["status"] == "RUNNING" and pod["ssh"]["direct"] is None
    port = fake.ssh_port(created["id"])
    assert port is not None

    with pytest.raises((asyncssh.Error, OSError)):
        async with connect(port, ssh_key):
            pass

    await asyncio.sleep(0.7)
    ready = await pods.get(created["id"])
    assert ready is not None and ssh_port(ready) == port
    async with connect(ready, ssh_key) as conn:
        assert (await conn.run("echo up")).stdout == "up\n"


async def test_ssh_direct_shown_during_the_pull_still_refuses(pods, fake, ssh_key):
    fake.faults.pull_s = 0.5
    fake.faults.ssh_direct_during_pull = True
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])

    with pytest.raises((asyncssh.Error, OSError)):
        async with connect(pod, ssh_key):
            pass
    await asyncio.sleep(0.6)
    async with connect(pod, ssh_key) as conn:
        assert (await conn.run("true")).exit_status == 0


async def test_ssh_that_never_comes_up(pods, fake, ssh_key):
    fake.faults.ssh = "refuse"
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])

    for _ in range(2):
        with pytest.raises((asyncssh.Error, OSError)):
            async with connect(pod, ssh_key):
                pass


async def test_terminate_closes_ssh_kills_processes_and_removes_the_disk(pods, fake, ssh_key):
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])
    workdir = fake.workdir(pod["id"])
    assert workdir.is_dir()

    async with connect(pod, ssh_key) as conn:
        process = await conn.create_process("sh -c 'echo $$; exec sleep 30'")
        pid = int(await process.stdout.readline())
        await pods.delete(pod["id"])
        async with asyncio.timeout(5):
            await conn.wait_closed()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not workdir.exists()
    with pytest.raises((asyncssh.Error, OSError)):
        async with connect(pod, ssh_key):
            pass
    assert fake.ledger()[0].terminated


async def test_a_pod_that_dies_mid_run(pods, fake, ssh_key):
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])

    async with connect(pod, ssh_key) as conn:
        process = await conn.create_process("sh -c 'echo $$; exec sleep 30'")
        pid = int(await process.stdout.readline())
        async with httpx.AsyncClient() as admin:
            url = fake.base_url.removesuffix("/v2") + f"/_fake/pods/{pod['id']}/kill"
            answer = await admin.post(url, json={"status": "ERROR"})
            assert answer.status_code == 200 and answer.json()["status"] == "ERROR"
        async with asyncio.timeout(5):
            await conn.wait_closed()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    dead = await pods.get(pod["id"])
    assert dead is not None and dead["status"] == "ERROR" and dead["ssh"]["direct"] is None
    assert fake.workdir(pod["id"]).is_dir(), "a dead pod keeps its disk until terminated"


async def test_a_pod_can_be_set_to_die_after_a_while(pods, fake, ssh_key):
    fake.faults.die_after_s = 0.3
    pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"])

    with contextlib.suppress(ConnectionError, asyncssh.Error):  # on a busy machine it may die first
        async with connect(pod, ssh_key) as conn, asyncio.timeout(4.5):  # ends well before the sleep
            await conn.run("sleep 5")
            await conn.wait_closed()
    async with asyncio.timeout(10):
        while (dead := await pods.get(pod["id"])) is not None and dead["status"] != "ERROR":
            await asyncio.sleep(0.05)

    assert dead is not None and dead["status"] == "ERROR"


# --- pods as Docker containers running sshd ----------------------------------------------------


async def container_of(pod_id: str) -> str:
    """The ids of the fake's containers for this pod (empty once it is gone)."""
    return await docker("ps", "-aq", "--filter", f"label={POD_LABEL}={pod_id}")


async def test_a_docker_pod_is_a_container_with_sshd_for_the_pod_key(docker_fake, ssh_key, tmp_path):
    async with Pods(docker_fake) as pods:
        pod = await pods.until_ready((await pods.create(public(ssh_key)))["id"], within=60)
        direct = pod["ssh"]["direct"]
        assert direct["host"] == "127.0.0.1" and direct["username"] == "root"
        assert (await container_of(pod["id"])).strip()
        local = tmp_path / "in.txt"
        local.write_text("feature set\n")

        async with asyncio.timeout(60):  # sshd may take a moment after the port is published
            while True:
                try:
                    conn = await connect(pod, ssh_key)
                    break
                except (OSError, asyncssh.Error):
                    await asyncio.sleep(0.1)
        async with conn:
            who = await conn.run("id -un; pwd; echo $RUNPOD_POD_ID $HF_TOKEN", check=True)
            assert who.stdout.split() == ["root", "/root", pod["id"], "hf_secret_value"]
            async with conn.start_sftp_client() as sftp:
                await sftp.makedirs("touchstone/job", exist_ok=True)
                await sftp.put(str(local), "touchstone/job/in.txt")
            script = "print(open('touchstone/job/in.txt').read(), end='')"
            copied = await conn.run(shlex.join(["python3", "-c", script]), check=True)
            assert copied.stdout == "feature set\n"
        other = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(pod, other):
                pass

        await pods.delete(pod["id"])
    assert (await container_of(pod["id"])).strip() == ""
    assert docker_fake.pod_backend == "docker"


async def test_containers_a_dead_fake_left_are_swept_and_others_kept(docker_fake):
    host = socket.gethostname()
    dead_pid = 2**22 + 7  # above the default pid_max: no such process
    labels = {f"{LABEL}=1", f"{POD_LABEL}=left"}
    left = (await docker("run", "-d", *[a for lbl in labels for a in ("--label", lbl)], "--label",
                         f"{OWNER_LABEL}={host}-{dead_pid}", "--entrypoint", "sleep", DEFAULT_POD_IMAGE, "600")).strip()
    mine = (await docker("run", "-d", *[a for lbl in labels for a in ("--label", lbl)], "--label",
                         f"{OWNER_LABEL}={owner_id()}", "--entrypoint", "sleep", DEFAULT_POD_IMAGE, "600")).strip()
    try:
        assert await sweep_orphans() >= 1

        remaining = (await docker("ps", "-aq", "--no-trunc", "--filter", f"label={POD_LABEL}=left")).split()
        assert left not in remaining and mine in remaining
    finally:
        await docker("rm", "-f", mine)
        with contextlib.suppress(Exception):
            await docker("rm", "-f", left)
