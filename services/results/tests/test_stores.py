"""One contract for both artifact stores: a local directory, and S3 through moto's server over
real HTTP. Then the S3 adapter's error mapping."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from touchstone.results.adapters import LocalArtifactStore, S3ArtifactStore
from touchstone.shared.errors import InvalidInputError, PermanentError, UnavailableError


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "objects")
    return request.getfixturevalue("s3_store")


def _file(tmp_path: Path, body: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


async def test_put_then_exists_and_read_back(store: Any, tmp_path: Path) -> None:
    key = "models/s1/pi-60/attempt-1/models/long.pkl"
    body = b"model bytes" * 1000
    assert not await store.exists(key, len(body))
    uri = await store.put(key, _file(tmp_path, body))
    assert uri == store.uri(key)
    assert await store.exists(key, len(body))
    assert await store.read(key) == body


async def test_exists_compares_the_size(store: Any, tmp_path: Path) -> None:
    key = "logs/s1/pi-60/attempt-1.log"
    await store.put(key, _file(tmp_path, b"12345"))
    assert not await store.exists(key, 4)


async def test_put_replaces(store: Any, tmp_path: Path) -> None:
    key = "models/s/t/attempt-1/metrics.json"
    await store.put(key, _file(tmp_path, b"old", "a"))
    await store.put(key, _file(tmp_path, b"newer", "b"))
    assert await store.read(key) == b"newer"


async def test_empty_files_are_objects_too(store: Any, tmp_path: Path) -> None:
    await store.put("logs/s/t/attempt-2.log", _file(tmp_path, b""))
    assert await store.exists("logs/s/t/attempt-2.log", 0)


async def test_reading_a_missing_object(store: Any) -> None:
    with pytest.raises(FileNotFoundError):
        await store.read("models/nope")


@pytest.mark.parametrize("key", ["../escape", "/abs/key", "a/./b", "a//b", ""])
async def test_unsafe_keys_are_refused(store: Any, tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInputError):
        await store.put(key, _file(tmp_path, b"x"))


def test_uris(tmp_path: Path) -> None:
    local = LocalArtifactStore(tmp_path)
    assert local.uri("logs/a.log") == (tmp_path.resolve() / "logs/a.log").as_uri()
    s3 = S3ArtifactStore("bkt", prefix="prod/", endpoint_url="http://127.0.0.1:1", credentials={
        "aws_access_key_id": "x", "aws_secret_access_key": "y"})
    assert s3.uri("logs/a.log") == "s3://bkt/prod/logs/a.log"


async def test_local_put_leaves_no_partial_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "objects")
    await store.put("models/s/t/attempt-1/x.bin", _file(tmp_path, b"abc"))
    files = sorted(p.name for p in (tmp_path / "objects/models/s/t/attempt-1").iterdir())
    assert files == ["x.bin"]


async def test_s3_missing_bucket_is_permanent(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3ArtifactStore("no-such-bucket-here", endpoint_url=s3_endpoint, max_attempts=1,
                            credentials={"aws_access_key_id": "t", "aws_secret_access_key": "t"})
    with pytest.raises(PermanentError):
        await store.put("models/a", _file(tmp_path, b"x"))


async def test_s3_unreachable_is_retryable(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3ArtifactStore("bucket", endpoint_url=f"http://127.0.0.1:{port}", timeout_s=2, max_attempts=1,
                            credentials={"aws_access_key_id": "t", "aws_secret_access_key": "t"})
    with pytest.raises(UnavailableError):
        await store.exists("models/a", 1)
    with pytest.raises(UnavailableError):
        await store.put("models/a", _file(tmp_path, b"x"))
