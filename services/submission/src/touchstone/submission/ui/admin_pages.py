"""Admin pages: Tasks (with a task's detail and live log), System and Tokens.

Every handler takes ``admin_viewer``: anyone else gets a 403 page, whatever the URL.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, Parameter
from litestar.response import Redirect
from pydantic import ValidationError
from touchstone.shared.errors import ConcurrencyConflict, InvalidInputError, NotFoundError, PermanentError
from touchstone.shared.lifecycle import TASK_FINAL, TASK_LIVE, TaskStatus
from touchstone.shared.system import Server
from touchstone.submission.admin import runpod_report
from touchstone.submission.deps import Deps, DepsArg
from touchstone.submission.domain import valid_id
from touchstone.submission.live import gpu_of
from touchstone.submission.routes import unfinished_tasks
from touchstone.submission.schemas import TokenCreate, TokenCreated
from touchstone.submission.ui.session import PATH, Viewer, ViewerArg, field_errors, notice_text, render

Cursor = Annotated[str | None, Parameter(max_length=512)]
PLATFORMS = ("onprem", "runpod", "any")
UNFINISHED, ALL = "unfinished", "all"
TASKS_PAGE = 50


def durations(timeline: list[Any], now: datetime) -> list[tuple[Any, float]]:
    """Each timeline entry with the seconds until the next one (the last: until now)."""
    out = []
    for i, entry in enumerate(timeline):
        end = timeline[i + 1].at if i + 1 < len(timeline) else now
        out.append((entry, max(0.0, (end - entry.at).total_seconds())))
    return out


@get("/tasks")
async def tasks(
    deps: DepsArg,
    admin_viewer: ViewerArg,
    status: Annotated[str, Parameter(max_length=32)] = UNFINISHED,
    platform: Annotated[str, Parameter(max_length=16)] = "",
    cursor: Cursor = None,
    fragment: FromQuery[bool] = False,
) -> Response[str]:
    """Every queued and running task by default; ``status`` narrows to one status or widens
    to ``all`` (finished ones too)."""
    wanted = TaskStatus(status) if status in TaskStatus.__members__.values() else None
    shown = wanted.value if wanted else (ALL if status == ALL else UNFINISHED)
    where = platform if platform in PLATFORMS else None
    try:
        if shown == UNFINISHED:
            page = await unfinished_tasks(deps.store, platform=where, limit=TASKS_PAGE, cursor=cursor)
        else:
            page = await deps.store.list_tasks(status=wanted, platform=where, limit=TASKS_PAGE, cursor=cursor)
    except ValueError as e:
        raise InvalidInputError(f"cursor: {e}") from e
    now = datetime.now(UTC)
    context = {
        "me": admin_viewer,
        "page": page,
        "heartbeats": {
            t.key: deps.hosts.heartbeat_age(t.container_name, now) for t in page.items if t.status in TASK_LIVE
        },
        "progress": {t.key: deps.progress.of(t) for t in page.items if t.status in TASK_LIVE},
        "gpus": {t.key: gpu_of(deps.hosts, t) for t in page.items if t.status in TASK_LIVE},
        "status": shown,
        "platform": where or "",
        "cursor": cursor,
        "statuses": list(TaskStatus),
        "platforms": PLATFORMS,
        "now": now,
        "final": TASK_FINAL,
    }
    return render("_task_rows.html" if fragment else "tasks.html", **context)


@get("/tasks/{submission_id:str}/{task_id:str}")
async def task_detail(
    submission_id: FromPath[str], task_id: FromPath[str], deps: DepsArg, admin_viewer: ViewerArg,
    fragment: FromQuery[bool] = False,
) -> Response[str]:
    """The task's page; ``fragment`` renders only its State list (the page refreshes it)."""
    task = await deps.store.get_task(submission_id, task_id) if valid_id(task_id) and valid_id(submission_id) else None
    if task is None:
        raise NotFoundError(f"no task {task_id} in {submission_id}")
    now = datetime.now(UTC)
    live = task.status in TASK_LIVE
    return render(
        "_task_state.html" if fragment else "task.html", me=admin_viewer, task=task,
        steps=durations(task.timeline, now), final=TASK_FINAL, now=now,
        progress=deps.progress.of(task) if live else None, gpu=gpu_of(deps.hosts, task) if live else None,
    )


async def _system_page(deps: Deps, viewer: Viewer, **extra: Any) -> Response[str]:
    (settings, revision), gpu_types, runpod = await asyncio.gather(
        deps.system.read(), deps.system.gpu_types(), deps.system.runpod_status()
    )
    status_code = extra.pop("status_code", 200)
    return render(
        "system.html",
        status_code=status_code,
        me=viewer,
        s=settings,
        revision=revision,
        gpu_types=gpu_types,
        runpod=runpod_report(runpod),
        hosts=deps.hosts.rows(settings.servers),
        **extra,
    )


@get("/system")
async def system(
    deps: DepsArg,
    admin_viewer: ViewerArg,
    notice: Annotated[str | None, Parameter(max_length=200)] = None,
) -> Response[str]:
    return await _system_page(deps, admin_viewer, notice=notice_text(notice), errors={})


def _servers(form: Any, labels: dict[str, dict[str, str]]) -> list[Server]:
    """The servers table as posted; labels (not edited here) are kept from the current settings."""
    servers = []
    names, slots, gpus = form.getall("server_name", []), form.getall("server_slots", []), form.getall("server_gpus", [])
    removed = set(form.getall("server_remove", []))
    for name, n, g in zip(names, slots, gpus, strict=False):
        name = str(name).strip()
        if not name or name in removed:
            continue
        try:
            count = int(str(n).strip() or 1)
        except ValueError:
            raise InvalidInputError(f"servers: {name}: slots must be a whole number") from None
        gpu_list = [x.strip() for x in str(g).split(",") if x.strip()]
        servers.append(Server(name=name, num_slots=count, gpus=gpu_list, labels=labels.get(name, {})))
    return servers


@post("/system", status_code=303)
async def update_system(request: Request[Any, Any, Any], deps: DepsArg, admin_viewer: ViewerArg) -> Any:
    form = await admin_viewer.form(request)
    current, _ = await deps.system.read()
    labels = {srv.name: dict(srv.labels) for srv in current.servers}
    try:
        changes = {
            "runpod_max_running_tasks": int(str(form.get("runpod_max_running_tasks", "0")).strip() or 0),
            "scheduler_paused": form.get("scheduler_paused") == "on",
            "servers": [s.model_dump() for s in _servers(form, labels)],
        }
        revision = int(str(form.get("revision", "")) or 0)
        await deps.system.update(changes, revision)
    except ValueError as e:  # int() and pydantic's errors alike
        errors = field_errors(e) if isinstance(e, ValidationError | InvalidInputError) else {"_": str(e)}
        return await _system_page(deps, admin_viewer, errors=errors, status_code=422, notice=None)
    except (ConcurrencyConflict, PermanentError) as e:
        return await _system_page(deps, admin_viewer, errors={"_": str(e)}, status_code=409, notice=None)
    return Redirect(f"{PATH}/system?notice=saved:", status_code=303)


async def _tokens_page(deps: Any, viewer: Viewer, **extra: Any) -> Response[str]:
    status_code = extra.pop("status_code", 200)
    return render("tokens.html", status_code=status_code, me=viewer, tokens=await deps.tokens.all(), **extra)


# a new token's secret waits here for the one page view that shows it (then it is gone):
# the browser is redirected after the POST, so a reload can neither repeat it nor show it again
_SHOW_ONCE: dict[str, tuple[str, TokenCreated]] = {}


@get("/tokens")
async def tokens(
    deps: DepsArg,
    admin_viewer: ViewerArg,
    notice: Annotated[str | None, Parameter(max_length=200)] = None,
    created: Annotated[str | None, Parameter(max_length=64)] = None,
) -> Response[str]:
    held = _SHOW_ONCE.pop(created, None) if created else None
    secret = held[1] if held and held[0] == admin_viewer.name else None
    return await _tokens_page(deps, admin_viewer, notice=notice_text(notice), created=secret, errors={}, values={})


@post("/tokens", status_code=303)
async def create_token(request: Request[Any, Any, Any], deps: DepsArg, admin_viewer: ViewerArg) -> Response[Any]:
    form = await admin_viewer.form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("user", "role", "description")}
    try:
        created = await deps.tokens.create(TokenCreate(**values), admin_viewer.principal)
    except (ValidationError, InvalidInputError) as e:
        return await _tokens_page(
            deps, admin_viewer, errors=field_errors(e), values=values, created=None, notice=None, status_code=422
        )
    while len(_SHOW_ONCE) >= 100:
        _SHOW_ONCE.pop(next(iter(_SHOW_ONCE)))
    key = secrets.token_urlsafe(16)
    _SHOW_ONCE[key] = (admin_viewer.name, created)
    return Redirect(f"{PATH}/tokens?created={key}", status_code=303)


@post("/tokens/{token_id:str}/revoke", status_code=303)
async def revoke_token(
    token_id: FromPath[str], request: Request[Any, Any, Any], deps: DepsArg, admin_viewer: ViewerArg
) -> Redirect:
    await admin_viewer.form(request)
    revoked = await deps.tokens.revoke(token_id)
    return Redirect(f"{PATH}/tokens?notice=revoked:{revoked.user}", status_code=303)


ROUTES = [tasks, task_detail, system, update_system, tokens, create_token, revoke_token]
