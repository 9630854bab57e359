"""A GPU host's firewall in the harness (``Network.only_reach``): it opens connections to the
hosts it is allowed (NATS nodes, the object store) and to no other; others still reach it."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from touchstone.chaos import netns

pytestmark = pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))

PORT = 4222
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()"


def listen(host: netns.Host, log: Path) -> None:
    host.spawn([sys.executable, "-m", "http.server", "--bind", host.address, str(PORT)], env={}, log=log)


def reaches(source: netns.Host, target: netns.Host) -> bool:
    return source.run([sys.executable, "-c", CONNECT, target.address, str(PORT)], timeout=10).returncode == 0


def test_a_restricted_host_reaches_what_it_is_allowed_and_nothing_else(tmp_path: Path) -> None:
    network = netns.Network()
    try:
        gpu, nats, control = (network.add_host(n) for n in ("gpu", "nats", "control"))
        for host in (gpu, nats, control):
            listen(host, tmp_path / f"{host.name}.log")
        deadline = time.monotonic() + 20
        while not all(reaches(gpu, h) for h in (nats, control)) and time.monotonic() < deadline:
            time.sleep(0.3)  # the listeners starting
        assert reaches(gpu, control) and reaches(gpu, nats)

        network.only_reach("gpu", [nats.address])

        assert reaches(gpu, nats)
        assert not reaches(gpu, control)  # dropped: the connect times out
        assert reaches(control, gpu)  # replies on connections opened to it still leave
        with socket.create_connection((control.address, PORT), timeout=2):  # the machine is unaffected
            pass
    finally:
        network.close()
