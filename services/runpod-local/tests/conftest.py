"""Fixtures: a real local RunPod on 127.0.0.1, plain JSON over real HTTP to it, and RunPod's
published v2 document (``touchstone.runpod_local.testing``)."""

from touchstone.runpod_local.testing import (  # noqa: F401  (fixtures)
    docker_fake,
    document,
    fake,
    pods,
    ssh_key,
)
