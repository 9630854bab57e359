"""Upload grants against the embedded store's endpoint over real HTTP, and S3 POST policies
through moto's server: a grant writes its attempt's prefix and nothing else, up to its size,
until it expires; keys from events are checked before anything is read."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from touchstone.shared.errors import InvalidInputError, PermanentError
from touchstone.shared.objects import keys
from touchstone.shared.objects.grants import GrantRefused, GrantSigner, policy_of, utcnow
from touchstone.shared.objects.stores import S3ObjectStore
from touchstone.shared.objects.testing import S3_CREDENTIALS, make_bucket, moto_s3, serve_uploads
from touchstone.shared.objects.upload import GrantExpired, Staged, publish, upload_file

SIGNER = GrantSigner(b"k" * 32)
PREFIX = keys.attempt_prefix("s1", "pi-60", 1)


@pytest.fixture
def embedded(tmp_path: Path):
    with serve_uploads(tmp_path / "objects", SIGNER) as store:
        yield store


def _file(tmp_path: Path, body: bytes, name: str = "f.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


async def test_a_grant_writes_its_attempt_and_the_store_reads_it_back(embedded, tmp_path: Path) -> None:
    grant = embedded.grant(PREFIX, 1000, 60, utcnow())
    (tmp_path / "out" / "models").mkdir(parents=True)
    files = [Staged("long.json", "models/long.json", _file(tmp_path, b'{"w": 1}', "out/models/long.json")),
             Staged("log", "console.log", _file(tmp_path, b"line 1\nline 2\n", "console.log"))]
    got = publish(grant, "s1", "pi-60", 1, files)
    assert got == {"long.json": f"{PREFIX}models/long.json", "log": f"{PREFIX}console.log"}
    assert await embedded.read(got["log"]) == b"line 1\nline 2\n"
    assert [c async for c in embedded.chunks(got["long.json"])] == [b'{"w": 1}']
    assert await embedded.size(f"{PREFIX}nothing.json") is None


def _put(store, token: str, key: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.put(f"{store.url}/{key}", content=body,
                     headers={"Authorization": f"Bearer {token}", **(headers or {})})


def test_a_grant_used_for_another_prefix_is_refused(embedded) -> None:
    grant = embedded.grant(PREFIX, 1000, 60, utcnow())
    for key in (keys.log_key("s1", "pi-60", 2), keys.log_key("s2", "pi-60", 1), "attempts/s1/pi-60/attempt-10/x",
                "logs/s1/pi-60/attempt-1.log"):
        assert _put(embedded, grant.token, key, b"x").status_code == 403, key
        with pytest.raises(InvalidInputError):
            upload_file(grant, key, Path(os.devnull))
    assert not any(p.is_file() for p in embedded.root.rglob("*")) if embedded.root.exists() else True


@pytest.mark.parametrize("key", [f"{PREFIX}../attempt-2/console.log", f"{PREFIX}a/../../x", f"{PREFIX}%2e%2e/x",
                                 f"/{PREFIX}x", f"{PREFIX}a//b", f"{PREFIX}.", f"{PREFIX}a\\..\\b"])
def test_keys_that_climb_or_are_absolute_are_refused(embedded, key: str) -> None:
    grant = embedded.grant(PREFIX, 1000, 60, utcnow())
    r = httpx.put(f"{embedded.url}/{key}", content=b"x", headers={"Authorization": f"Bearer {grant.token}"})
    assert r.status_code in (403, 404), (key, r.status_code)
    assert not (embedded.root.parent / "x").exists()
    with pytest.raises(InvalidInputError):
        keys.check_attempt_key(key.replace("%2e", "."), "s1", "pi-60", 1)


def test_an_oversize_upload_is_refused_and_nothing_is_kept(embedded, tmp_path: Path) -> None:
    grant = embedded.grant(PREFIX, 100, 60, utcnow())
    key = f"{PREFIX}models/big.bin"
    assert _put(embedded, grant.token, key, b"x" * 101).status_code == 413
    # a body longer than it says, and one without any length (chunked), are cut off at the cap
    def chunks():
        for _ in range(50):
            yield b"y" * 10
    r = httpx.put(f"{embedded.url}/{key}", content=chunks(), headers={"Authorization": f"Bearer {grant.token}"})
    assert r.status_code == 413
    assert not (embedded.root / key).exists()
    assert [p.name for p in embedded.root.rglob("*") if p.is_file()] == []
    with pytest.raises(GrantRefused):
        upload_file(grant, key, _file(tmp_path, b"z" * 101))
    assert _put(embedded, grant.token, key, b"x" * 100).status_code == 201


def test_an_expired_or_forged_grant_is_refused(embedded, tmp_path: Path) -> None:
    expired = embedded.grant(PREFIX, 100, 60, utcnow() - timedelta(seconds=61))
    assert _put(embedded, expired.token, f"{PREFIX}console.log", b"x").status_code == 403
    with pytest.raises(GrantExpired):  # the producer does not try; a new attempt gets a new grant
        publish(expired, "s1", "pi-60", 1, [Staged("log", "console.log", _file(tmp_path, b"x"))])
    other = GrantSigner(b"o" * 32).issue(embedded.url, PREFIX, 100, 60, utcnow())
    assert _put(embedded, other.token, f"{PREFIX}console.log", b"x").status_code == 403
    good = embedded.grant(PREFIX, 100, 60, utcnow())
    _body, _, mac = good.token.partition(".")
    widened = SIGNER.issue(embedded.url, "attempts/", 100, 60, utcnow()).token.partition(".")[0]
    assert _put(embedded, f"{widened}.{mac}", "attempts/s9/x/attempt-1/console.log", b"x").status_code == 403
    assert httpx.put(f"{embedded.url}/{PREFIX}console.log", content=b"x").status_code == 401
    assert httpx.get(f"{embedded.url}/{PREFIX}console.log").status_code == 405


@pytest.mark.parametrize("key", ["/etc/passwd", "file:///etc/passwd", "s3://bucket/x", "https://evil/x", "..",
                                 "attempts/s1/pi-60/attempt-1", "attempts/s1/pi-60/attempt-1/", "", None, 7,
                                 "attempts/s1/pi-60/attempt-1/a b", "attempts/s1/pi-60/attempt-1/\x00"])
def test_keys_from_events_are_checked(key: object) -> None:
    with pytest.raises(InvalidInputError):
        keys.check_attempt_key(key, "s1", "pi-60", 1)


def test_odd_file_names_become_safe_keys() -> None:
    assert keys.safe_relative("models/my model (1).pkl") == "models/my_model__1_.pkl"
    assert keys.safe_relative("models/../x") == "models/_/x"
    assert keys.check_attempt_key(f"{PREFIX}models/long.json", "s1", "pi-60", 1)


async def test_s3_grants_are_post_policies_on_the_attempts_prefix(tmp_path: Path) -> None:
    """moto stores what a POST policy lets through but does not enforce the policy's
    conditions; what S3 enforces is in the policy, checked here."""
    with moto_s3() as endpoint:
        bucket = f"touchstone-{uuid.uuid4().hex[:8]}"
        make_bucket(endpoint, bucket)
        store = S3ObjectStore(bucket, prefix="dev/", endpoint_url=endpoint, max_attempts=1, credentials=S3_CREDENTIALS)
        now = utcnow()
        grant = store.grant(PREFIX, 5000, 600, now)
        policy = policy_of(grant)
        conditions = policy["conditions"]
        assert ["starts-with", "$key", f"dev/{PREFIX}"] in conditions
        assert ["content-length-range", 0, 5000] in conditions
        assert policy["expiration"].startswith((now + timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M"))
        got = publish(grant, "s1", "pi-60", 1, [Staged("metrics.json", "metrics.json",
                                                       _file(tmp_path, b'{"auc": 0.6}'))])
        assert got == {"metrics.json": f"{PREFIX}metrics.json"}
        assert await store.read(f"{PREFIX}metrics.json") == b'{"auc": 0.6}'
        assert b"".join([c async for c in store.chunks(f"{PREFIX}metrics.json")]) == b'{"auc": 0.6}'
        with pytest.raises(InvalidInputError):  # the producer never sends a key outside its grant
            upload_file(grant, "attempts/s2/pi-60/attempt-1/x", _file(tmp_path, b"x"))
        with pytest.raises(PermanentError):
            upload_file(grant, f"{PREFIX}big", _file(tmp_path, b"x" * 5001))
