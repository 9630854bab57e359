"""The client half of the ``touchstone`` command line: every verb of the HTTP API.

``register(app)`` adds ``submit``, ``list``, ``show``, ``schedule``, ``cancel``, ``delete``,
``logs``, ``tasks``, ``system show|set`` and ``token create|list|revoke``. The server and token
come from ``--url``/``--token``, else ``TOUCHSTONE_URL``/``TOUCHSTONE_TOKEN``, else the chosen
profile of the config file (``touchstone login``; see ``profiles``), else
``http://127.0.0.1:8080`` and the bootstrap token that an embedded ``touchstone up`` left in
``./.touchstone/admin-token``. ``--json`` prints the API's JSON.

Exit codes (``EXIT_CODES``): 0 done; 1 the request failed or a --wait ended badly; 2 a usage
error (bad option or argument; only then); 3 not signed in or not allowed (401/403); 4 not found
(404); 5 refused by the submission's state or a stale revision (409); 6 the server cannot be
reached.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from touchstone.cli import profiles
from touchstone.cli.reports import report_table
from touchstone.cli.terminal import safe_text

DEFAULT_URL = "http://127.0.0.1:8080"
SETTLED_AFTER_VALIDATION = {"ACCEPTED", "REJECTED", "ERROR", "CANCELLED", "RETRACTED"}
SETTLED = {"REJECTED", "COMPLETED", "ERROR", "CANCELLED", "RETRACTED"}
TASK_SETTLED = {"SUCCEEDED", "ERROR", "CANCELLED"}

out = Console()
err = Console(stderr=True)

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNREACHABLE = 1, 2, 3, 4, 5, 6
EXIT_CODES = {
    0: "done",
    EXIT_FAILED: "the request failed, or a --wait ended in another status than hoped",
    EXIT_USAGE: "usage error: an unknown option, a missing or bad argument (only this)",
    EXIT_AUTH: "not signed in, or not allowed (HTTP 401/403)",
    EXIT_NOT_FOUND: "no such submission, task or token (HTTP 404)",
    EXIT_CONFLICT: "refused by the current state, or a stale revision (HTTP 409)",
    EXIT_UNREACHABLE: "the server cannot be reached",
}
_HTTP_EXIT = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT}

Url = Annotated[str | None, typer.Option("--url", envvar="TOUCHSTONE_URL",
                                         help="API address, e.g. https://touchstone.example.")]
Token = Annotated[str | None, typer.Option("--token", envvar="TOUCHSTONE_TOKEN", help="API token or JWT.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Wait = Annotated[bool, typer.Option("--wait", help="Show progress live until it settles.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Sid = Annotated[str, typer.Argument(help="A submission id, e.g. s-7f3a2b1c.")]


class Platform(StrEnum):
    onprem = "onprem"
    runpod = "runpod"
    any = "any"


class SubmissionStatusChoice(StrEnum):
    VALIDATING = "VALIDATING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    RETRACTED = "RETRACTED"


class TaskStatusChoice(StrEnum):
    QUEUED = "QUEUED"
    ASSIGNED = "ASSIGNED"
    PROVISIONING = "PROVISIONING"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"


class Role(StrEnum):
    user = "user"
    admin = "admin"


def confirm(yes: bool, question: str) -> None:
    """Ask before an action that cannot be undone, unless --yes; "no" exits with 1."""
    if not yes and not typer.confirm(question, default=False, err=True):
        err.print("not done")
        raise typer.Exit(EXIT_FAILED)


# --- the HTTP client ----------------------------------------------------------------------


def _usage(message: str) -> NoReturn:
    """A usage error: exit code 2, as for an unknown option."""
    _fail(message, EXIT_USAGE)


def schedule_file(path: Path) -> dict[str, Any]:
    """A schedule file's body, checked by the API's own model before it is sent (a usage error
    when it does not fit)."""
    import yaml
    from pydantic import ValidationError
    from touchstone.submission.schemas import ScheduleCreate

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        _usage(f"cannot read schedule file {path}: {e}")
    try:
        body = ScheduleCreate.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in x['loc']) or '(file)'}: {x['msg']}" for x in e.errors())
        _usage(f"schedule file {path}: {problems}")
    return body.model_dump(mode="json", exclude_unset=True)


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


class Client:
    """A thin synchronous client; a problem-details answer becomes a one-line error."""

    def __init__(self, url: str | None, token: str | None) -> None:
        config = profiles.profile()
        self.url = (url or config.get("url") or DEFAULT_URL).rstrip("/")
        token = token or config.get("token")
        local = Path(".touchstone/admin-token")
        if not token and local.is_file():
            token = local.read_text().strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """One request. A POST carries an ``Idempotency-Key`` and is retried with the same key
        when the connection fails, so a retry never creates a second submission."""
        tries = 1
        if method == "POST":
            kw["headers"] = {"Idempotency-Key": uuid.uuid4().hex, **kw.get("headers", {})}
            tries = 3
        for attempt in range(tries):
            try:
                response = self.http.request(method, path, **kw)
                break
            except httpx.TransportError as e:
                if attempt + 1 == tries:
                    _fail(f"cannot reach {self.url}: {e}", EXIT_UNREACHABLE)
                time.sleep(0.5 * (attempt + 1))
            except httpx.HTTPError as e:
                _fail(f"cannot reach {self.url}: {e}", EXIT_UNREACHABLE)
        self._check(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            problem = response.json()
            detail = f"{problem.get('title', response.reason_phrase)}: {problem.get('detail', '')}"
        except ValueError:
            detail = response.text[:200] or response.reason_phrase
        _fail(f"{response.status_code} {detail}", _HTTP_EXIT.get(response.status_code, EXIT_FAILED))

    def events(self, path: str, params: dict[str, Any] | None = None) -> Iterator[tuple[str, str]]:
        """(event, data) pairs of an SSE stream; ("ready", "") once it is subscribed."""
        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                event, data = "message", []
                for line in r.iter_lines():
                    if line.startswith(":"):
                        yield "ready", ""
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line and data:
                        yield event, "\n".join(data)
                        event, data = "message", []
        except httpx.HTTPError as e:
            _fail(f"lost the stream from {self.url}: {e}", EXIT_UNREACHABLE)


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


# --- rendering ----------------------------------------------------------------------------


def _submissions_table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "name", "owner", "status", "tasks", "created")
    for s in items:
        table.add_row(
            s["id"],
            s["name"],
            s["owner"],
            s["status"],
            f"{s['tasks_done']}/{s['tasks_total']}",
            s["created_at"][:19].replace("T", " "),
        )
    return table


def _key_metrics(metrics: dict[str, Any]) -> str:
    """Both models' headline figures (``long: auc 0.56 f1 0.38 sharpe 1.40``); the rest is in
    ``show --json``."""
    parts = []
    for side in ("long", "short"):
        m = metrics.get(side)
        if not isinstance(m, dict):
            continue
        figures = {"auc": m.get("roc_auc"), "f1": m.get("f1"), "sharpe": (m.get("backtest") or {}).get("sharpe")}
        shown = " ".join(f"{k} {v:.2f}" for k, v in figures.items() if isinstance(v, int | float))
        parts.append(f"{side}: {shown}")
    return "; ".join(parts)


def _tasks_table(tasks: list[dict[str, Any]], with_submission: bool = False) -> Table:
    table = Table(
        *(["submission"] if with_submission else []),
        "task",
        "status",
        "attempt",
        "platform",
        "placement",
        "metrics / error",
    )
    for t in tasks:
        metrics = _key_metrics(t.get("metrics") or {})
        row = [
            t["task_id"],
            t["status"],
            f"{t['attempt']}/{t['max_attempts']}",
            t["platform"],
            t.get("placement") or "",
            t.get("error") or metrics,
        ]
        table.add_row(*([t["submission_id"]] if with_submission else []), *row)
    return table


def _detail(s: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    for key in ("id", "name", "owner", "status", "git_url", "git_ref", "feature_set_path", "commit", "error"):
        if s.get(key):
            table.add_row(f"[bold]{key}[/bold]", str(s[key]))
    report = s.get("validation_report")
    if report:
        table.add_row("[bold]validation[/bold]", report_table(report))
    if s.get("schedule"):
        table.add_row("[bold]schedule[/bold]", json.dumps(s["schedule"]))
    if s.get("tasks"):
        table.add_row("[bold]tasks[/bold]", _tasks_table(s["tasks"]))
    return table


def _wait(client: Client, sid: str, settled: set[str], as_json: bool) -> dict[str, Any]:
    """Follow a submission's events, redrawing it, until its status is in ``settled``."""
    current: dict[str, Any] = {}
    with Live(console=err, transient=True, auto_refresh=False) as live:
        for event, _ in client.events("/api/v1/events", {"submission_id": sid}):
            if event not in ("ready", "status"):
                continue
            current = client.call("GET", f"/api/v1/submissions/{sid}")
            live.update(_detail(current), refresh=True)
            if current["status"] in settled:
                break
    return current


# --- commands -----------------------------------------------------------------------------


def submit(
    git_url: Annotated[str, typer.Argument(
        help="https://, ssh:// or git@host:org/repo.git; or a local folder where the server allows local sources")],
    ref: Annotated[str, typer.Option("--ref", help="Branch, tag or commit.")] = "main",
    path: Annotated[str, typer.Option("--path", help="The feature set's folder in the repository.")] = ".",
    name: Annotated[str | None, typer.Option("--name", help="A display name.")] = None,
    wait: Wait = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit a feature set; it is validated at once (--wait shows the verdict).

    Example: touchstone submit https://github.com/org/features.git --path momentum --wait
    """
    client = Client(url, token)
    local = Path(git_url)
    if ":" not in git_url and local.is_dir():  # a folder here: the server sees it by its absolute path
        git_url = str(local.resolve())
    body = {"git_url": git_url, "git_ref": ref, "feature_set_path": path, **({"name": name} if name else {})}
    created = client.call("POST", "/api/v1/submissions", json=body)
    if wait:
        created = _wait(client, created["id"], SETTLED_AFTER_VALIDATION, as_json)
    if as_json:
        _print_json(created)
    else:
        out.print(_detail(created))
    if wait and created["status"] != "ACCEPTED":
        raise typer.Exit(1)


def list_submissions(
    status: Annotated[SubmissionStatusChoice | None, typer.Option("--status", help="Only this status.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner (admins).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Rows per page.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of the previous page.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List submissions, newest first.

    Example: touchstone list --status ACCEPTED
    """
    wanted = status.value if status else None
    params = {k: v for k, v in {"status": wanted, "owner": owner, "limit": limit, "cursor": cursor}.items() if v}
    page = Client(url, token).call("GET", "/api/v1/submissions", params=params)
    if as_json:
        _print_json(page)
        return
    out.print(_submissions_table(page["items"]))
    if page.get("next_cursor"):
        out.print(f"more: --cursor {page['next_cursor']}")


def show(sid: Sid, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """One submission with its validation report, schedule and tasks.

    Example: touchstone show s-7f3a2b1c --json
    """
    s = Client(url, token).call("GET", f"/api/v1/submissions/{sid}")
    if as_json:
        _print_json(s)
    else:
        out.print(_detail(s))


def schedule(
    sid: Sid,
    interval: Annotated[list[int] | None, typer.Option("--interval", "-i", help="Prediction interval in minutes; "
                                                       "repeat for several (-i 15 -i 60).")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A schedule file (YAML or JSON) with the API's "
                                              "fields, instead of the options below.")] = None,
    config_file: Annotated[str, typer.Option("--config-file",
                                             help="The trainer's config file.")] = "configs/default.toml",
    trainer_ref: Annotated[str, typer.Option("--trainer-ref", help="Branch, tag or commit of the trainer.")] = "main",
    platform: Annotated[Platform, typer.Option("--platform", help="Where tasks may run.")] = Platform.any,
    gpu_type: Annotated[str | None, typer.Option("--gpu-type", help="RunPod GPU type, e.g. 'NVIDIA A40'.")] = None,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first (-100..100).")] = 0,
    data_end: Annotated[str | None, typer.Option("--fetched-data-end-to", help="Last candle time, ISO 8601.")] = None,
    args: Annotated[str | None, typer.Option("--args", help="Passthrough args, split shell-style.")] = None,
    wait: Wait = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Schedule training of an accepted submission: one task per interval (admin).

    Example: touchstone schedule s-7f3a2b1c -i 15 -i 60 --platform onprem --wait

    Example: touchstone schedule s-7f3a2b1c -f schedule.yaml
    """
    if file is not None:
        if interval:
            _usage("give either --file or --interval, not both")
        body = schedule_file(file)
    elif not interval:
        _usage("give --interval (one or more) or --file")
    else:
        body = {"prediction_intervals": interval, "config_file": config_file, "trainer_ref": trainer_ref,
                "platform": platform.value, "priority": priority}
        body |= {
            k: v
            for k, v in {"gpu_type": gpu_type, "fetched_data_end_to": data_end, "passthrough_args": args}.items()
            if v is not None
        }
    client = Client(url, token)
    accepted = client.call("POST", f"/api/v1/submissions/{sid}/schedule", json=body)
    result: dict[str, Any] = accepted
    if wait:
        result = _wait(client, sid, SETTLED, as_json)
    if as_json:
        _print_json(result)
    elif wait:
        out.print(_detail(result))
    else:
        out.print(f"scheduled {sid}: " + ", ".join(t["task_id"] for t in accepted["tasks"]))
    if wait and result["status"] != "COMPLETED":
        raise typer.Exit(1)


def cancel(sid: Sid, yes: Yes = False, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Cancel every unfinished task of a submission (admin).

    Example: touchstone cancel s-7f3a2b1c --yes
    """
    confirm(yes, f"Cancel every unfinished task of {sid}?")
    s = Client(url, token).call("POST", f"/api/v1/submissions/{sid}/cancel")
    if as_json:
        _print_json(s)
    else:
        out.print(f"cancelling {sid} ({s['status']})")


def delete(sid: Sid, yes: Yes = False, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Retract a submission (a running one must be cancelled first, unless you are an admin).

    Example: touchstone delete s-7f3a2b1c -y
    """
    confirm(yes, f"Delete {sid}?")
    s = Client(url, token).call("DELETE", f"/api/v1/submissions/{sid}")
    if as_json:
        _print_json(s)
    elif s["status"] == "RETRACTED":
        out.print(f"deleted {sid}")
    else:
        out.print(f"cancelling {sid}; it is deleted once its tasks have stopped")


def _show(text: str, raw: bool, end: str = "\n") -> None:
    if raw:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    else:
        out.print(safe_text(text), end=end, markup=False, highlight=False)


def logs(
    sid: Sid,
    task_id: Annotated[str, typer.Argument(help="A task id: validation, or pi-N for interval N.")],
    tail: Annotated[int | None, typer.Option("--tail", "-n", min=1, help="Only the last N lines.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing while the task runs.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Print control sequences as the task wrote them.")] = False,
    url: Url = None,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON string per line (NDJSON).")] = False,
) -> None:
    """A task's console log (terminal control sequences removed unless --raw).

    Example: touchstone logs s-7f3a2b1c pi-60 --follow
    """
    client = Client(url, token)
    path = f"/api/v1/submissions/{sid}/tasks/{task_id}/logs"
    params = {"tail": tail} if tail else {}
    if not follow:
        text = str(client.call("GET", path, params=params))
        if as_json:
            for line in text.splitlines():
                print(json.dumps(line))
        else:
            _show(text, raw, end="")
        return
    for event, data in client.events(path, {**params, "follow": "true"}):
        if event == "line":
            if as_json:
                print(json.dumps(json.loads(data)), flush=True)
            else:
                _show(str(json.loads(data)), raw)
        elif event == "end":
            err.print(f"[dim]task {task_id} ended: {json.loads(data)}[/dim]")
            return


def tasks(
    status: Annotated[TaskStatusChoice | None, typer.Option("--status", help="Only this status.")] = None,
    platform: Annotated[Platform | None, typer.Option("--platform", help="Only this platform.")] = None,
    submission: Annotated[str | None, typer.Option("--submission", help="Only this submission's tasks.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Rows to show.")] = 100,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """All tasks, oldest queued first (admin).

    Example: touchstone tasks --status RUNNING
    """
    params = {"status": status.value if status else None, "platform": platform.value if platform else None,
              "submission_id": submission, "limit": limit}
    page = Client(url, token).call("GET", "/api/v1/tasks", params={k: v for k, v in params.items() if v})
    if as_json:
        _print_json(page)
    else:
        out.print(_tasks_table(page["items"], with_submission=True))


def system_show(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """The run-time settings (admin).

    Example: touchstone system show --json
    """
    s = Client(url, token).call("GET", "/api/v1/system")
    if as_json:
        _print_json(s)
        return
    out.print(
        f"scheduler paused: {s['scheduler_paused']}    runpod max running tasks: "
        f"{s['runpod_max_running_tasks']}    revision: {s['revision']}"
    )
    table = Table("server", "slots", "gpus", "labels")
    for server in s["servers"]:
        table.add_row(
            server["name"],
            str(server["num_slots"]),
            ", ".join(server["gpus"]),
            ", ".join(f"{k}={v}" for k, v in server["labels"].items()),
        )
    out.print(table)


def system_set(
    runpod_max: Annotated[int | None, typer.Option("--runpod-max-running-tasks", min=0,
                                                   help="Most RunPod tasks at once; 0 pauses RunPod.")] = None,
    paused: Annotated[bool | None, typer.Option("--pause/--resume", help="Pause or resume the scheduler.")] = None,
    server: Annotated[list[str] | None, typer.Option("--server", help="NAME=SLOTS; replaces the list.")] = None,
    servers_json: Annotated[str | None, typer.Option("--servers-json", help="The full servers list.")] = None,
    revision: Annotated[int | None, typer.Option("--revision", help="Fail if changed since.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Change run-time settings; they take effect at once (admin).

    Example: touchstone system set --runpod-max-running-tasks 0 --server gpu1=2
    """
    body: dict[str, Any] = {}
    if runpod_max is not None:
        body["runpod_max_running_tasks"] = runpod_max
    if paused is not None:
        body["scheduler_paused"] = paused
    if servers_json is not None:
        body["servers"] = json.loads(servers_json)
    elif server:
        try:
            body["servers"] = [{"name": n, "num_slots": int(s)} for n, s in (x.split("=", 1) for x in server)]
        except ValueError:
            _usage("--server takes NAME=SLOTS")
    if revision is not None:
        body["revision"] = revision
    if not body:
        _usage("nothing to change; see --help")
    s = Client(url, token).call("PATCH", "/api/v1/system", json=body)
    if as_json:
        _print_json(s)
    else:
        out.print(f"system settings now at revision {s['revision']}")


def token_create(
    user: Annotated[str, typer.Argument(help="The user the token signs in as, e.g. alice.")],
    role: Annotated[Role, typer.Option("--role", help="What the token may do.")] = Role.user,
    description: Annotated[str, typer.Option("--description", help="A note: what the token is for.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create an API token; its secret is shown this once (admin).

    Example: touchstone token create alice --role user --description "laptop"
    """
    body = {"user": user, "role": role.value, "description": description}
    t = Client(url, token).call("POST", "/api/v1/tokens", json=body)
    if as_json:
        _print_json(t)
        return
    out.print(f"token {t['id']} for {t['user']} ({t['role']}); the secret is shown only now:")
    out.print(t["secret"], markup=False, highlight=False)


def token_list(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """API tokens, without their secrets (admin).

    Example: touchstone token list
    """
    items = Client(url, token).call("GET", "/api/v1/tokens")
    if as_json:
        _print_json(items)
        return
    table = Table("id", "user", "role", "created", "by", "description")
    for t in items:
        table.add_row(
            t["id"], t["user"], t["role"], t["created_at"][:19].replace("T", " "), t["created_by"], t["description"]
        )
    out.print(table)


def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (token list shows it).")],
    yes: Yes = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Revoke an API token at once (admin).

    Example: touchstone token revoke tok_1a2b3c --yes
    """
    confirm(yes, f"Revoke token {token_id}? Anything using it stops working at once.")
    t = Client(url, token).call("DELETE", f"/api/v1/tokens/{token_id}")
    if as_json:
        _print_json(t)
    else:
        out.print(f"revoked {t['id']} ({t['user']})")


def register(app: typer.Typer) -> None:
    """Add the API's verbs to the ``touchstone`` command line."""
    for name, command in (
        ("submit", submit),
        ("list", list_submissions),
        ("show", show),
        ("schedule", schedule),
        ("cancel", cancel),
        ("delete", delete),
        ("logs", logs),
        ("tasks", tasks),
    ):
        app.command(name)(command)
    system = typer.Typer(help="Run-time settings: the System tab.", no_args_is_help=True)
    system.command("show")(system_show)
    system.command("set")(system_set)
    app.add_typer(system, name="system")
    tokens = typer.Typer(help="API tokens.", no_args_is_help=True)
    tokens.command("create")(token_create)
    tokens.command("list")(token_list)
    tokens.command("revoke")(token_revoke)
    app.add_typer(tokens, name="token")
