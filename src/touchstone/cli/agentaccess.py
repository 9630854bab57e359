"""``touchstone agent exec/get/put``: operator access to an agent's host through the API
(admin only, audited as events, and only on agents whose settings opt in)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated

import typer

from touchstone.cli.api import AsJson, Client, Token, Url, _print_json, _usage, out, safe_text

agent_app = typer.Typer(help="Operator access to an agent's host (admin; the agent must opt in).",
                        no_args_is_help=True)
Host = Annotated[str, typer.Argument(help="The agent's host name, e.g. gpu-a.")]
MAX_PUT_BYTES = 32 * 1024


def _path(host: str, what: str) -> str:
    if not host.replace("-", "").replace("_", "").isalnum():
        _usage(f"{host!r} is no host name")
    return f"/api/v1/agents/{host}/{what}"


@agent_app.command("exec")
def agent_exec(
    host: Host,
    argv: Annotated[list[str], typer.Argument(help="The program and its arguments, after --; no shell.")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=300,
                                           help="Seconds before it is killed.")] = 30.0,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Run one command on an agent's host and print its output (admin; recorded as events).

    The exit code is the command's (1 when it was killed at its deadline).

    Example: touchstone agent exec gpu-a -- nvidia-smi -L
    """
    result = Client(url, token).call("POST", _path(host, "exec"), json={"argv": argv, "timeout_s": timeout})
    if as_json:
        _print_json(result)
    else:
        for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            text = base64.b64decode(result[name]).decode("utf-8", errors="replace")
            stream.write(safe_text(text))
            if result[f"{name}_bytes"] > len(base64.b64decode(result[name])):
                stream.write(f"\n[{name}: {result[f'{name}_bytes']} bytes, the first 64 KiB shown]\n")
            stream.flush()
        if result["timed_out"]:
            out.print(f"[red]killed after {timeout:.0f}s[/red]")
    code = result["exit_code"]
    raise typer.Exit(1 if result["timed_out"] or code is None else min(max(code, 0), 255))


@agent_app.command("get")
def agent_get(
    host: Host,
    path: Annotated[str, typer.Argument(help="The file, relative to the agent's operator_root.")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write it here (default: print it).")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Read one file (at most 512 KiB) under an agent's operator_root (admin; recorded as events).

    Example: touchstone agent get gpu-a logs/agent.log -o agent.log
    """
    got = Client(url, token).call("GET", _path(host, "file"), params={"path": path})
    if as_json:
        _print_json(got)
        return
    body = base64.b64decode(got["data"])
    if output is None:
        sys.stdout.write(safe_text(body.decode("utf-8", errors="replace")))
        sys.stdout.flush()
        return
    with output.open("xb") as f:  # never overwrites
        f.write(body)
    out.print(f"{got['size']} bytes written to {output}")


@agent_app.command("put")
def agent_put(
    host: Host,
    local: Annotated[Path, typer.Argument(help="The local file to send (at most 32 KiB).", exists=True,
                                          dir_okay=False, readable=True)],
    path: Annotated[str, typer.Argument(help="Where it goes, relative to the agent's operator_root.")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Write one file under an agent's operator_root, replacing it (admin; recorded as events).

    Example: touchstone agent put gpu-a ./daemon.json conf/daemon.json
    """
    with local.open("rb") as f:
        body = f.read(MAX_PUT_BYTES + 1)
    if len(body) > MAX_PUT_BYTES:
        _usage(f"{local} is larger than {MAX_PUT_BYTES} bytes")
    done = Client(url, token).call("PUT", _path(host, "file"),
                                   json={"path": path, "data": base64.b64encode(body).decode()})
    if as_json:
        _print_json(done)
    else:
        out.print(f"{done['size']} bytes written to {host}:{path}")
