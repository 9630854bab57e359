"""Settings of the object store, shared by every process that reads it (results, the API) or
issues upload grants for it (the providers). One set of ``TOUCHSTONE_*`` variables configures
them all; the agent needs none (its grants come with each launch).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from touchstone.shared.objects.grants import GrantSigner
from touchstone.shared.objects.stores import LocalObjectStore, ObjectStore, S3ObjectStore
from touchstone.shared.settings import Settings

GRANT_KEY_FILE = "upload-grant.key"


class ObjectStoreSettings(Settings):
    """Where artifacts and logs live, and how producers get to write there."""

    artifact_store: Literal["local", "s3"] = Field(
        "local", description="Where models and logs are kept: a local directory or an S3(-compatible) bucket.")
    objects_dir: Path | None = Field(None, description="The local store's directory; empty means {data_dir}/objects.")
    objects_url: str = Field(
        "http://127.0.0.1:8080/objects",
        description="The local store's upload endpoint as producers (agents on other hosts) reach it: "
        "the submission API's /objects.")
    upload_grant_key: SecretStr = Field(
        SecretStr(""),
        description="Signs the local store's upload grants (the API and the providers need the same one); "
        "empty means {data_dir}/upload-grant.key, made on first use.")
    upload_grant_ttl_s: float = Field(
        2 * 86400.0, gt=0, description="How long an attempt's upload grant is valid after its launch.")
    upload_max_bytes: int = Field(
        2 * 1024**3, ge=1, description="The largest object a producer may upload (a model, a log).")
    s3_bucket: str = Field("", description="The S3 bucket (artifact_store = s3).")
    s3_prefix: str = Field("", description="A key prefix inside the bucket (for example prod/); empty: none.")
    s3_endpoint_url: str = Field("", description="An S3-compatible endpoint (MinIO, moto); empty means AWS's own.")
    s3_region: str = Field("us-east-1", description="The bucket's region.")
    s3_timeout_s: float = Field(30.0, gt=0, description="Connect and read timeout of each S3 call.")
    s3_max_attempts: int = Field(3, ge=1, description="Tries per S3 call (botocore's standard retry mode).")

    def resolved_objects_dir(self) -> Path:
        return self.objects_dir or self.data_dir / "objects"

    def grant_signer(self) -> GrantSigner:
        secret = self.upload_grant_key.get_secret_value()
        return GrantSigner(secret.encode() if secret else shared_key(self.data_dir / GRANT_KEY_FILE))

    def object_store(self) -> ObjectStore:
        """The store these settings name (the local one can issue grants)."""
        if self.artifact_store == "s3":
            if not self.s3_bucket:
                raise ValueError("artifact_store is s3 but s3_bucket is empty")
            return S3ObjectStore(
                self.s3_bucket, prefix=self.s3_prefix, endpoint_url=self.s3_endpoint_url or None,
                region=self.s3_region, timeout_s=self.s3_timeout_s, max_attempts=self.s3_max_attempts,
            )
        return LocalObjectStore(self.resolved_objects_dir(), url=self.objects_url, signer=self.grant_signer())


def shared_key(path: Path) -> bytes:
    """The key in ``path``, made (0600, atomically) by whichever process asks first."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # the first one wins; the others read its key
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()
