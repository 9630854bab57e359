"""A faithful local RunPod for tests and demos (``touchstone up --runpod-demo``).

A stand-in for RunPod, not part of the provider: it imports nothing of Touchstone, and the
provider's production code never imports it.

``FakeRunpod`` serves RunPod's REST v2 pod, catalog and SSH-key routes and the GraphQL
balance query over real HTTP on 127.0.0.1, with RunPod's shapes, codes and error bodies; it
checks every request as RunPod's published v2 schema describes (``schema.py``, its own strict
models) and rate-limits by the schema's example policy (60 calls a minute) unless told otherwise.
Each running pod is a real SSH endpoint on 127.0.0.1 keyed by its ``env.PUBLIC_KEY``: a Docker
container of ``pod_image`` running sshd where the engine runs and the image has sshd
(``container.py``), otherwise an asyncssh server with exec and SFTP in a per-pod directory
(``ssh.py``); ``pod_backend`` chooses, ``auto`` by default. Faults: ``Faults`` switches, ``Injection`` canned answers,
``FakeRunpod.kill_pod``; or over HTTP under ``/_fake/``. ``FakeRunpod.ledger()`` accounts
for every pod ever created.

Run it alone with ``python -m touchstone.runpod_local --port 8787``.
"""

from . import ratelimit
from .ratelimit import RateLimiter
from .server import FakeRunpod
from .state import Faults, Injection, PodRecord, SshMode

__all__ = ["FakeRunpod", "Faults", "Injection", "PodRecord", "RateLimiter", "SshMode", "ratelimit"]
