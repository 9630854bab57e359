#!/usr/bin/env python3
"""Print the NATS user of one on-prem agent (only its own host's subjects).

    python3 deploy/nats/agent-user.py --host gpu-01 [--ns touchstone] [--password-var NAME]

The output is one entry for the ``users`` list of the TOUCHSTONE account (``accounts.conf``).
The password is not in it: the nats-server reads it from its environment, ``NAME`` (default
``TOUCHSTONE_AGENT_<HOST>_PASSWORD``, the host upper-cased with ``-`` as ``_``). The agent
connects as ``agent-<host>``: ``TOUCHSTONE_NATS_URL=nats://agent-gpu-01:PASSWORD@nats-1:4222``.
Standard library only, so it runs on any machine with Python 3.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).with_name("agent-user.conf.template")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def password_var(host: str) -> str:
    return f"TOUCHSTONE_AGENT_{host.upper().replace('-', '_')}_PASSWORD"


def agent_user(host: str, ns: str = "touchstone", password_variable: str | None = None) -> str:
    """The user entry for agent ``host`` in namespace ``ns``."""
    for value, what in ((host, "host"), (ns, "namespace")):
        if not _TOKEN.match(value):
            raise ValueError(f"{what} {value!r} must be 1-128 characters of letters, digits, '-' or '_'")
    variable = password_variable or password_var(host)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable):
        raise ValueError(f"password variable {variable!r} must be letters, digits and '_'")
    return Template(TEMPLATE.read_text()).substitute(HOST=host, NS=ns, PASSWORD_VAR=variable)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, action="append", help="agent host name (repeatable)")
    parser.add_argument("--ns", default="touchstone", help="Touchstone namespace (default: touchstone)")
    parser.add_argument("--password-var", help="environment variable holding the password (one host only)")
    args = parser.parse_args(argv)
    if args.password_var and len(args.host) > 1:
        parser.error("--password-var needs exactly one --host")
    try:
        sys.stdout.write("\n".join(agent_user(h, args.ns, args.password_var) for h in args.host))
    except ValueError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
