"""Fixtures: a real local RunPod on 127.0.0.1 and plain JSON over real HTTP to it
(``touchstone.runpod_local.testing``)."""

from touchstone.runpod_local.testing import (  # noqa: F401  (fixtures)
    docker_fake,
    fake,
    pods,
    ssh_key,
)
