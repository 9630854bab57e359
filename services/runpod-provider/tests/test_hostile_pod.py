"""Collection from a hostile pod over SFTP (the local fake's real SSH pods): what the trainer
plants in its output folder (links, FIFOs, a 10 GB sparse file, a file over the budget) is
left behind, the reader never blocks, and only the real outputs come back, within the budget."""

from __future__ import annotations

import asyncio
import shlex

import asyncssh
from touchstone.runpod_provider import ssh

PLANT = """
import os
os.makedirs("out/models/sub", exist_ok=True)
open("out/models/long.json", "w").write("{}")
open("out/models/sub/short.json", "w").write("{}")
open("secret.txt", "w").write("the pod's own file")
os.symlink("../../secret.txt", "out/models/link.bin")
os.symlink("/dev/zero", "out/models/zero.bin")
os.mkfifo("out/models/fifo.bin")
os.mkfifo("out/metrics.json")
os.symlink("../secret.txt", "out/report.json")
with open("out/models/huge.bin", "wb") as f:
    f.truncate(10 << 30)
open("out/models/big.bin", "wb").write(b"b" * (3 << 20))
os.symlink("..", "out/models/loop")
"""


async def test_only_regular_outputs_come_back_within_the_budget(api, spec, until_ready, ssh_key, tmp_path):
    pod = await until_ready((await api.create_pod(spec())).id)
    async with asyncssh.connect("127.0.0.1", pod.ssh.port, username="root", client_keys=[ssh_key],
                                known_hosts=None, connect_timeout=5) as conn:
        planted = await conn.run(shlex.join(["python3", "-c", PLANT]))
        assert planted.exit_status == 0, planted.stderr
        budget = ssh.Budget(2 << 20)
        dest = tmp_path / "collected"
        async with conn.start_sftp_client() as sftp:
            got = await asyncio.wait_for(ssh.fetch_tree(sftp, "out/models", dest / "models", budget), 30)
            metrics = await asyncio.wait_for(ssh.fetch_file(sftp, "out/metrics.json", dest / "m.json", budget), 10)
            report = await asyncio.wait_for(ssh.fetch_file(sftp, "out/report.json", dest / "r.json", budget), 10)
            # what the judge is told instead: the report was there, but a link (the attempt fails, class trainer)
            assert await ssh.left_behind(sftp, "out/report.json") == "a symlink"
            assert await ssh.left_behind(sftp, "out/metrics.json") == "not a regular file"
            assert await ssh.left_behind(sftp, "out/curves.json") is None
    assert sorted(p.relative_to(dest / "models").as_posix() for p in got) == ["long.json", "sub/short.json"]
    assert metrics is None and report is None
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == ["models/long.json", "models/sub/short.json"]
    assert budget.left == (2 << 20) - 4
