"""Pure decisions about a feature set's ``requirements.txt`` in a pod (no I/O): pip's argv and
how an install ended. Which lines are accepted is ``touchstone.shared.requirements``'s rule;
``prepare.py`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from touchstone.shared.requirements import unreachable_index

from .domain import Outcome, PodLayout


def pip_install_argv(layout: PodLayout, python: str, *, index_url: str = "", find_links: int = 0,
                     no_index: bool = False) -> list[str]:
    """``PYTHON -m pip install`` of the checked requirements into ``layout.deps``: wheels only
    (no package's build code runs), no bytecode; ``find_links`` folders copied in beforehand."""
    argv = ["env", "PIP_ROOT_USER_ACTION=ignore", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PYTHONDONTWRITEBYTECODE=1",
            python, "-m", "pip", "install", "--quiet", "--no-input", "--only-binary=:all:", "--no-compile",
            "--target", layout.deps]
    if index_url:
        argv += ["--index-url", index_url]
    for index in range(find_links):
        argv += ["--find-links", layout.wheels(index)]
    if no_index:
        argv.append("--no-index")
    return [*argv, "--requirement", layout.requirements]


def install_outcome(exit_status: int | None, tail: Sequence[str]) -> Outcome:
    """How the requirements install in the pod ended, from its exit status and last lines:

    | how it ended                                   | outcome                 |
    |------------------------------------------------|-------------------------|
    | exit 0                                         | succeeded               |
    | no exit status (pod or SSH went away)          | failed, infrastructure  |
    | non-zero, pip could not reach the index        | failed, infrastructure  |
    | non-zero otherwise (no such package, no wheel) | failed, permanent       |
    """
    if exit_status == 0:
        return Outcome(True)
    if exit_status is None:
        return Outcome(False, "the requirements install's SSH session ended without an exit status", "infrastructure")
    detail = " | ".join(line.strip() for line in tail if line.strip())[-1500:]
    reason = f"pip install of requirements.txt failed ({exit_status}): {detail}"
    if unreachable_index(tail):
        return Outcome(False, reason, "infrastructure")
    return Outcome(False, reason, "permanent")
