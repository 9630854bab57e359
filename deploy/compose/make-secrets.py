"""Write the secret files the compose file mounts (``deploy/compose/secrets/`` by default):

- ``nats-ca.crt``, ``nats-server.crt``, ``nats-server.key``: a throwaway CA and one certificate
  for nats-1, nats-2 and nats-3 (routes and clients), valid for ``--days``;
- ``nats-password``: the services' NATS password (both sides: the servers and the services);
- ``admin-token``: the submission service's bootstrap admin token;
- ``store-url``: the projection store's URL (it holds MongoDB's password);
- ``mongo-password``: MongoDB's root password;
- ``aws-credentials``: an AWS shared credentials file for the S3 object store (empty profile
  until you fill it; unused with the local store);
- ``runpod-api-key``: empty (RunPod off) until you write your key into it;
- ``upload-grant-key``: signs the local object store's upload grants (the API and the providers).

A file that exists is kept (run it again safely); ``--force`` replaces them. For production,
bring certificates from your own CA instead (same names). Run as root, the files are given to
the image's user (10001) with mode 0400; otherwise they are made readable (0444) so that the
containers' unprivileged user can read them: keep the folder itself private (0700).

    python deploy/compose/make-secrets.py [FOLDER] [--store-url sqlite:///...] [--force]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from touchstone.chaos.pki import write_pki

CONTAINER_UID = 10001
NODES = ["nats-1", "nats-2", "nats-3"]


def _password() -> str:
    """A random password that nats-server reads as a string: it parses a variable's value as
    configuration, so a value starting with a digit or '-' would be taken for a number (and
    refused); a letter first avoids that."""
    return "ts" + secrets.token_urlsafe(24)


def _secret_file(path: Path, text: str, force: bool) -> bool:
    if path.exists() and not force:
        return False
    path.write_text(text)
    return True


def _hand_over(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, CONTAINER_UID, CONTAINER_UID)
        path.chmod(0o400)
    else:
        path.chmod(0o444)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=Path(__file__).with_name("secrets"))
    parser.add_argument("--store-url", default="", help="the store's URL (default: the compose file's MongoDB)")
    parser.add_argument("--days", type=int, default=365, help="validity of the throwaway certificates")
    parser.add_argument("--name", action="append", default=[],
                        help="another name of the NATS nodes' certificate (a host agents reach them by)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)

    folder: Path = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700 if os.geteuid() != 0 else 0o711)
    written: list[str] = []
    if args.force or not (folder / "nats-ca.crt").exists():
        pki = write_pki(folder / ".pki", [*NODES, *args.name], [], days=args.days)
        for source, name in ((pki.ca, "nats-ca.crt"), (pki.cert, "nats-server.crt"), (pki.key, "nats-server.key")):
            source.replace(folder / name)
            written.append(name)
        (folder / ".pki").rmdir()
    mongo_password = _password()
    if (folder / "mongo-password").exists() and not args.force:
        mongo_password = (folder / "mongo-password").read_text().strip()
    store_url = args.store_url or f"mongodb://touchstone:{mongo_password}@mongo:27017/touchstone?authSource=admin"
    files = {
        "nats-password": _password(),
        "admin-token": "tst_" + secrets.token_urlsafe(32),
        "mongo-password": mongo_password,
        "store-url": store_url,
        "aws-credentials": "[default]\n# aws_access_key_id = ...\n# aws_secret_access_key = ...\n",
        "runpod-api-key": "",  # empty: RunPod stays off
        "upload-grant-key": secrets.token_hex(32),  # signs the local object store's upload grants
    }
    for name, text in files.items():
        if _secret_file(folder / name, text, args.force or (name == "store-url" and bool(args.store_url))):
            written.append(name)
    for path in folder.iterdir():
        if path.is_file():
            _hand_over(path)
    print(f"secrets in {folder}: {', '.join(written) if written else 'all kept'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
