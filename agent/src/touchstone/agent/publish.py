"""Outputs leave the host: what the collect phase staged in ``{data_dir}/artifacts`` goes to the
object store with the upload grant that came with the launch (write access to the attempt's
prefix only, each object capped in size), and the report names objects by key, never by path.

The staged copies are removed once they are stored. Without a grant (a provider that issues
none) nothing is uploaded and the report names no outputs: they stay on this host, where no
other service could read them anyway.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from touchstone.agent.collect import Collected, attempt_paths
from touchstone.shared.commands import LaunchTask
from touchstone.shared.objects import upload
from touchstone.shared.objects.keys import LOG_NAME

log = logging.getLogger(__name__)

LOG = "log"


def _staged_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def publish_collected(command: LaunchTask, got: Collected, artifacts_root: Path) -> tuple[Collected, str | None]:
    """Upload what ``got`` staged; the same outputs named by key, and the log's key (blocking).
    Raises Touchstone's errors (``UnavailableError`` once retries are spent, ``PermanentError``
    for a refusal such as an object over the grant's size)."""
    outputs, log_file = attempt_paths(artifacts_root, command.submission_id, command.task_id, command.attempt)
    if command.upload is None:
        log.warning("%s: no upload grant; its outputs stay on this host", command.container_name)
        return replace(got, artifacts={}, log_uri=None), None
    root = outputs.resolve()
    files = [upload.Staged(name, _staged_path(uri).relative_to(root).as_posix(), _staged_path(uri))
             for name, uri in sorted(got.artifacts.items())]
    if got.log_uri:
        files.append(upload.Staged(LOG, LOG_NAME, log_file))
    keys = upload.publish(command.upload, command.submission_id, command.task_id, command.attempt, files)
    shutil.rmtree(outputs, ignore_errors=True)
    log_file.unlink(missing_ok=True)
    log_key = keys.pop(LOG, None)
    return replace(got, artifacts=keys, log_uri=None), log_key


def publish_log(command: LaunchTask, log_file: Path) -> str | None:
    """Upload a staged console log alone (an attempt that ended without outputs); its key, or
    none when there is no grant or the store could not take it (the report keeps the tail)."""
    if command.upload is None or not log_file.is_file():
        return None
    try:
        keys = upload.publish(command.upload, command.submission_id, command.task_id, command.attempt,
                              [upload.Staged(LOG, LOG_NAME, log_file)])
    except Exception as e:
        log.warning("%s: the console log could not be stored: %s", command.container_name, e)
        return None
    log_file.unlink(missing_ok=True)
    return keys.get(LOG)
