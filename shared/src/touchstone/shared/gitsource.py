"""Git sources outside the task: a feature set's checkout, and the trainer at the
``trainer_ref`` a schedule names.

The trainer repository is a deployment setting (``TOUCHSTONE_TRAINER_REPO``: a local path or a
git URL); its embedded default is the Touchstone checkout the services run from. A ref is
resolved to a commit once per attempt and that commit's trainer folder is extracted into a
cache keyed by the commit, so a warm prepare copies files and runs no git at all.

Every git call is an argv list with ``--end-of-options`` (or ``--``) before values that came
from a user, no prompts, no system or user config and the ``ext::`` transport off. A feature
set's clone is planned by ``fetchpolicy.FetchPolicy`` first: the address checked there is the
one git connects to.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from touchstone.shared.fetchpolicy import FetchPolicy, FetchRefused

TRAINER_SUBDIR = "trainer"


class SourceError(Exception):
    """A source could not be fetched (an infrastructure failure: retrying may help)."""


class UnknownRef(SourceError):
    """The ref names nothing in the repository, or a commit without the trainer (a permanent
    failure: retrying cannot help)."""


def git(
    args: list[str],
    *,
    cwd: Path | None = None,
    timeout_s: float = 300.0,
    binary: bool = False,
    config: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> str | bytes:
    """Run ``git ARGS`` and return its stdout (text, stripped; or bytes with ``binary``).
    ``config`` adds ``-c`` options; nothing of the caller's environment but ``PATH`` reaches
    git (no ``SSH_AUTH_SOCK``, no proxies, no ``GIT_*``)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd or tempfile.gettempdir()),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LANG": "C.UTF-8",
        **(extra_env or {}),
    }
    argv = ["git", "-c", "protocol.ext.allow=never"]
    for option in config:
        argv += ["-c", option]
    argv += args
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"git {args[0]} took longer than {timeout_s:.0f}s") from e
    except OSError as e:
        raise SourceError(f"git could not run: {e}") from e
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SourceError(f"git {args[0]} failed ({done.returncode}): {' '.join(detail)[:500]}")
    return done.stdout if binary else done.stdout.decode(errors="replace").strip()


def _rev_parse(repo: Path, name: str, timeout_s: float) -> str | None:
    try:
        out = git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"],
            cwd=repo,
            timeout_s=timeout_s,
        )
    except SourceError:
        return None
    return str(out) or None


def toplevel(folder: Path) -> Path | None:
    """The git work tree holding ``folder``, or None."""
    try:
        out = git(["rev-parse", "--show-toplevel"], cwd=folder, timeout_s=10)
    except SourceError:
        return None
    return Path(str(out)) if out else None


class SourceRefused(UnknownRef):
    """The fetch policy forbids the source (permanent)."""


def checkout(url: str, ref: str, dest: Path, *, policy: FetchPolicy, timeout_s: float = 300.0) -> str:
    """Clone ``url`` into ``dest`` (which must not exist) and check out ``ref`` detached: a
    branch (also one only the remote side has), tag or commit. Returns the commit;
    ``UnknownRef`` when the repository has no such ref, ``SourceRefused`` when ``policy``
    forbids the source."""
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise UnknownRef(f"git ref {ref!r} is not a valid git ref")
    try:
        plan = policy.plan(url)
    except FetchRefused as e:
        raise SourceRefused(str(e)) from e
    config = (
        "protocol.allow=never",
        *(f"protocol.{p}.allow=always" for p in ("https", "http", "ssh", "git")),
        "protocol.file.allow=never",
        *plan.config,
    )
    git(["clone", "--quiet", "--no-checkout", "--no-recurse-submodules", "--", plan.url, str(dest)],
        cwd=dest.parent, timeout_s=timeout_s, config=config, extra_env=plan.env)
    for name in (ref, f"origin/{ref}"):
        commit = _rev_parse(dest, name, timeout_s)
        if commit:
            git(["checkout", "--quiet", "--detach", commit], cwd=dest, timeout_s=timeout_s)
            return commit
    raise UnknownRef(f"git ref {ref!r} is not a branch, tag or commit of {url}")


@dataclass(frozen=True)
class TrainerTree:
    """A trainer folder (``src/``, ``configs/``) ready to copy into a work directory."""

    path: Path
    ref: str
    commit: str | None
    """None for a fixed folder (a development setting that ignores refs)."""


class TrainerSource:
    """Resolves ``trainer_ref`` to a trainer folder.

    ``repo`` is a local git repository or a git URL (fetched into a bare mirror under
    ``cache_dir``); ``fixed_dir`` instead serves one folder for every ref (development and
    tests with a stand-in trainer)."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        repo: str | None = None,
        fixed_dir: Path | None = None,
        subdir: str = TRAINER_SUBDIR,
        timeout_s: float = 300.0,
        refetch_after_s: float = 30.0,
    ) -> None:
        if (repo is None) == (fixed_dir is None):
            raise ValueError("a trainer source needs exactly one of repo and fixed_dir")
        if repo is not None and repo.startswith("-"):
            raise ValueError(f"refusing trainer repository {repo!r}")
        self.cache_dir = cache_dir
        self.repo = repo
        self.fixed_dir = fixed_dir
        self.subdir = subdir.strip("/")
        self.timeout_s = timeout_s
        self.refetch_after_s = refetch_after_s
        self._fetched_at = 0.0

    def describe(self) -> str:
        return str(self.fixed_dir) if self.fixed_dir is not None else f"{self.repo} ({self.subdir}/)"

    def resolve(self, ref: str) -> TrainerTree:
        """The trainer folder at ``ref``; ``UnknownRef`` when the repository has no such ref."""
        if self.fixed_dir is not None:
            return TrainerTree(self.fixed_dir, ref, None)
        if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
            raise UnknownRef(f"trainer_ref {ref!r} is not a valid git ref")
        repo = self._repository()
        commit = self._commit(repo, ref)
        return TrainerTree(self._extract(repo, commit, ref), ref, commit)

    # --- internals ------------------------------------------------------------------------

    def _is_local(self) -> bool:
        assert self.repo is not None
        return self.repo.startswith("/") or self.repo.startswith(".")

    def _repository(self) -> Path:
        assert self.repo is not None
        if self._is_local():
            path = Path(self.repo).resolve()
            if not path.is_dir():
                raise SourceError(f"trainer repository {self.repo} is not a directory")
            return path
        mirror = self.cache_dir / "mirrors" / (hashlib.sha256(self.repo.encode()).hexdigest()[:16] + ".git")
        if not (mirror / "HEAD").exists():
            mirror.mkdir(parents=True, exist_ok=True)
            git(["init", "--quiet", "--bare", str(mirror)], timeout_s=self.timeout_s)
        return mirror

    def _fetch(self, mirror: Path) -> None:
        assert self.repo is not None
        git(
            [
                "fetch",
                "--quiet",
                "--prune",
                "--force",
                "--",
                self.repo,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            cwd=mirror,
            timeout_s=self.timeout_s,
        )
        self._fetched_at = time.monotonic()

    def _commit(self, repo: Path, ref: str) -> str:
        if not self._is_local() and time.monotonic() - self._fetched_at > self.refetch_after_s:
            self._fetch(repo)
        for name in (ref, f"origin/{ref}"):
            commit = _rev_parse(repo, name, self.timeout_s)
            if commit:
                return commit
        raise UnknownRef(f"trainer_ref {ref!r} is not a branch, tag or commit of the trainer repository {self.repo}")

    def _extract(self, repo: Path, commit: str, ref: str) -> Path:
        tree = self.cache_dir / "trees" / commit
        folder = tree / self.subdir
        if folder.is_dir():
            return folder
        try:
            git(["cat-file", "-e", f"{commit}:{self.subdir}/src"], cwd=repo, timeout_s=self.timeout_s)
        except SourceError:  # that commit has no trainer: as permanent as a ref that is not there
            raise UnknownRef(f"trainer_ref {ref!r} ({commit[:12]}) has no {self.subdir}/src in {self.repo}") from None
        data = git(
            ["archive", "--format=tar", commit, "--", self.subdir], cwd=repo, timeout_s=self.timeout_s, binary=True
        )
        assert isinstance(data, bytes)
        tree.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=tree.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                archive.extractall(staging, filter="data")
            if not (staging / self.subdir / "src").is_dir():
                raise SourceError(f"trainer_ref {ref!r} ({commit[:12]}) has no {self.subdir}/src in {self.repo}")
            try:
                staging.rename(tree)
            except OSError:
                if not folder.is_dir():  # someone else extracted it at the same time: theirs is fine
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder


def default_trainer_repo(installed_dir: Path | None) -> str | None:
    """The embedded default trainer repository: the git checkout holding the installed
    reference trainer (this repository), or None when it is not installed from a checkout."""
    if installed_dir is None:
        return None
    top = toplevel(installed_dir)
    return str(top) if top is not None else None
