"""Pytest fixtures for Touchstone's tests: a real nats-server, unique namespaces, stores.

Registered by the repository's root ``conftest.py``. Nothing here is used in production.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.shared import events as ev
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.natsserver import NatsServer
from touchstone.shared.reports import ValidationReport
from touchstone.shared.subjects import Subjects

MONGODB_URL_ENV = "TOUCHSTONE_TEST_MONGODB_URL"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for the whole test session, on a free port."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests that kill or restart it."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def subjects() -> Subjects:
    """A namespace no other test uses."""
    return Subjects(ns=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await connect(nats_server.url, "test")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: NATS, subjects: Subjects) -> AsyncIterator[JetStreamContext]:
    """JetStream with this test's namespace provisioned; its streams are deleted afterwards."""
    context = nc.jetstream()
    await provision(context, subjects)
    yield context
    for stream in (subjects.events_stream, subjects.commands_stream, subjects.dead_letter_stream,
                   subjects.logs_stream, f"KV_{subjects.system_bucket}"):
        try:
            await context.delete_stream(stream)
        except Exception:
            pass


def mongodb_url() -> str | None:
    return os.environ.get(MONGODB_URL_ENV) or None


# --- event builders for tests ---------------------------------------------------------

TEST_SPEC = ev.TaskSpec(git_url="https://example.com/fs.git")


def created(sid: str, owner: str = "alice") -> ev.SubmissionCreated:
    return ev.SubmissionCreated(
        aggregate_id=sid, correlation_id=sid, owner=owner, name=f"fs {sid}", git_url="https://x/y.git"
    )


def queued(sid: str, tid: str, **kw: object) -> ev.TaskQueued:
    return ev.TaskQueued(
        aggregate_id=f"{sid}-{tid}", correlation_id=sid, submission_id=sid, task_id=tid, spec=TEST_SPEC, **kw
    )


def task_event(cls: type[ev.TaskEvent], sid: str, tid: str, **kw: object) -> ev.TaskEvent:
    return cls(aggregate_id=f"{sid}-{tid}", correlation_id=sid, submission_id=sid, task_id=tid, **kw)


def sample_report(passed: bool = True, failing: str = "no_lookahead",
                  detail: str = "values for the first 2666 rows change when later rows are added",
                  ) -> dict[str, Any]:
    """A validation report as the trainer writes it (JSON-ready), all checks passed or one
    failing with ``detail``."""
    names = ("imports", "interface", "runs", "index", "columns", "finite", "nan_warmup", "deterministic",
             "no_lookahead", "lookback", "time_budget")
    assert failing in names, f"no check {failing!r}"
    checks = [{"name": n, "passed": passed or n != failing, "skipped": False,
               "detail": "ok" if passed or n != failing else detail} for n in names]
    doc = {"passed": passed, "checks": checks, "duration_s": 1.25,
           "feature_set": {"name": "demo", "lookback": 20, "columns": ["ret_1", "vol_20"], "columns_total": 2},
           "data": {"source": "canned", "rows": 8000, "note": "validated on the last 8000 canned candles",
                    "start": "2024-01-01T00:00:00", "end": "2024-01-06T13:19:00"}}
    ValidationReport.model_validate(doc)
    return doc


def make_wheel(folder: Path, name: str, version: str = "1.0", *, tag: str = "py3-none-any",
               code: str | None = None) -> Path:
    """A real wheel of a one-module package ``name`` (module ``name`` with ``-`` as ``_``,
    ``VALUE = "name version"`` unless ``code``), written into ``folder`` for ``--find-links``."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}.py": code if code is not None else f"VALUE = {f'{name} {version}'!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: touchstone-tests\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


# --- fast and integration tests -------------------------------------------------------------
# `make test-fast` runs what needs no outside process: a test is an integration test when it is
# marked so, lives in the repository's top-level tests/ (whole-system tests), or uses a fixture
# that starts a real part (a nats-server, an app, a fake RunPod, Docker, ssh, a browser).
REAL_PART_FIXTURES = frozenset({"nats_server", "own_nats_server", "nc", "js"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: talks to a real outside part (make test-fast skips it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    top_level = Path(str(config.rootpath)) / "tests"
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if (item.get_closest_marker("integration") is None
                and (top_level in Path(str(item.path)).parents or fixtures & REAL_PART_FIXTURES)):
            item.add_marker(pytest.mark.integration)
