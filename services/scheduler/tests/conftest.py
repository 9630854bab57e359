import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


import pytest
from schedkit import drop_lease_bucket


@pytest.fixture
async def sjs(js, subjects):
    """JetStream for a scheduler test: the namespace's streams, and the lease bucket removed after."""
    yield js
    await drop_lease_bucket(js, subjects)
