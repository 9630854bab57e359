"""Fixtures: a real local RunPod on 127.0.0.1, a real client of it, and provider settings
(``touchstone.runpod_provider.testing``, shared with the whole-system RunPod tests); RunPod's
published v2 document (``touchstone.runpod_local.testing``)."""

from touchstone.runpod_local.testing import document  # noqa: F401  (fixture)
from touchstone.runpod_provider.testing import (  # noqa: F401  (fixtures)
    api,
    api_key,
    docker_fake,
    fake,
    provider_defaults,
    spec,
    ssh_key,
    trainer_repo,
    trainer_src,
    until_ready,
    wheelhouse,
)
