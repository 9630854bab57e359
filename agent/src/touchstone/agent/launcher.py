"""Runs one command and records its exit status in a file, so that an agent restarted while
the command ran can still learn how it ended (the command is then no longer its child).

Usage: ``python launcher.py EXIT_FILE -- ARGV...``. Standard library only: it is run by path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: launcher.py EXIT_FILE -- ARGV...", file=sys.stderr)
        return 2
    exit_file, argv = args[0], args[2:]
    try:
        child = subprocess.Popen(argv)
    except OSError as e:
        print(f"could not start {argv[0]}: {e}", file=sys.stderr, flush=True)
        code = 127
    else:
        def forward(signum: int, _frame: object) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = child.wait()
    partial = f"{exit_file}.partial"
    with contextlib.suppress(FileNotFoundError):  # never write through a link the task planted
        os.unlink(partial)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(code))
    os.replace(partial, exit_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
