"""The pages every signed-in user has: sign-in, Submissions (with the New Submission, Schedule
and Results boxes), a task's log, and the live feeds the pages listen to.

Each handler calls the same commands and store as the API, as the signed-in principal, so the
API's rules (who sees what, input rules, lifecycles) hold here unchanged.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, ServerSentEvent, Stream
from litestar.response.sse import ServerSentEventMessage
from pydantic import ValidationError
from touchstone.shared.errors import InvalidInputError, PermanentError
from touchstone.shared.lifecycle import SUBMISSION_LIVE, TASK_FINAL, SubmissionStatus
from touchstone.submission.auth import Forbidden, Unauthenticated
from touchstone.submission.deps import Deps, DepsArg, RoutesDeps
from touchstone.submission.routes import _visible_task, artifact_response, status_events
from touchstone.submission.schemas import ScheduleCreate, SubmissionCreate
from touchstone.submission.ui.session import (
    PATH,
    Viewer,
    ViewerArg,
    field_errors,
    notice_text,
    render,
    safe_target,
    session_cookie,
    ui_audiences,
)

PAGE = 20
Cursor = Annotated[str | None, Parameter(max_length=512)]


def _same_origin(request: Request[Any, Any, Any]) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


@get("/", sync_to_thread=False)
def home() -> Redirect:
    return Redirect(f"{PATH}/submissions", status_code=303)


@get("/sign-in")
async def sign_in_page(deps: DepsArg, next: Annotated[str, Parameter(max_length=512)] = "") -> Response[str]:
    return render("signin.html", me=None, next=safe_target(next), error=None, sso=deps.oidc is not None)


@post("/sign-in", status_code=303)
async def sign_in(request: Request[Any, Any, Any], deps: DepsArg) -> Response[Any]:
    form = await request.form()
    token, target = str(form.get("token", "")).strip(), safe_target(str(form.get("next", "")))
    if not _same_origin(request):
        raise Forbidden("sign-in from another site")
    try:
        await deps.auth.authenticate(f"Bearer {token}", audiences=ui_audiences(deps))
    except (Unauthenticated, Forbidden) as e:
        return render(
            "signin.html",
            status_code=401,
            me=None,
            next=target,
            error=str(e) or "unknown token",
            sso=deps.oidc is not None,
        )
    return Redirect(target, status_code=303, cookies=[session_cookie(token)])


@post("/sign-out", status_code=303)
async def sign_out(request: Request[Any, Any, Any], viewer: ViewerArg) -> Redirect:
    await viewer.form(request)
    response = Redirect(f"{PATH}/sign-in", status_code=303)
    response.delete_cookie("touchstone_session", path=PATH)
    return response


async def _submissions_page(
    deps: Deps,
    viewer: Viewer,
    *,
    cursor: str | None = None,
    status: str | None = None,
    dialog: str | None = None,
    target: Any = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> Response[str]:
    owner = None if viewer.is_admin else viewer.name
    wanted = SubmissionStatus(status) if status in SubmissionStatus.__members__.values() else None
    try:
        page = await deps.store.list_submissions(owner=owner, status=wanted, limit=PAGE, cursor=cursor)
    except ValueError as e:
        raise InvalidInputError(f"cursor: {e}") from e
    gpu_types = await deps.system.gpu_types() if dialog == "schedule" else []
    return render(
        "submissions.html",
        status_code=status_code,
        me=viewer,
        page=page,
        cursor=cursor,
        status=wanted.value if wanted else "",
        statuses=list(SubmissionStatus),
        live=SUBMISSION_LIVE,
        dialog=dialog,
        target=target,
        values=values or {},
        errors=errors or {},
        gpu_types=gpu_types,
        notice=notice,
    )


@get("/submissions")
async def submissions(
    deps: DepsArg,
    viewer: ViewerArg,
    cursor: Cursor = None,
    status: Annotated[str, Parameter(max_length=32)] = "",
    notice: Annotated[str | None, Parameter(max_length=200)] = None,
) -> Response[str]:
    return await _submissions_page(deps, viewer, cursor=cursor, status=status, notice=notice_text(notice))


@get("/submissions/new")
async def new_submission_page(deps: DepsArg, viewer: ViewerArg) -> Response[str]:
    values = {"git_ref": "main", "feature_set_path": "."}
    return await _submissions_page(deps, viewer, dialog="new", values=values)


@post("/submissions/new", status_code=303)
async def new_submission(request: Request[Any, Any, Any], deps: DepsArg, viewer: ViewerArg) -> Response[Any]:
    form = await viewer.form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("git_url", "git_ref", "feature_set_path", "name")}
    try:
        body = SubmissionCreate(
            git_url=values["git_url"],
            git_ref=values["git_ref"] or "main",
            feature_set_path=values["feature_set_path"] or ".",
            name=values["name"] or None,
        )
        created = await deps.commands.create(body, viewer.principal)
    except (ValidationError, InvalidInputError) as e:
        return await _submissions_page(
            deps, viewer, dialog="new", values=values, errors=field_errors(e), status_code=422
        )
    await _until_listed(deps, created.id)
    return Redirect(f"{PATH}/submissions?notice=submitted:{created.id}", status_code=303)


async def _until_listed(deps: Deps, submission_id: str, timeout_s: float = 5.0) -> None:
    """Read your own write: the list the browser is sent to comes from the projection, so wait
    (briefly) until the projector has applied the new submission."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await deps.store.get_submission(submission_id) is None and loop.time() < deadline:
        await asyncio.sleep(0.02)


async def _row_context(deps: Deps, viewer: Viewer, submission_id: str) -> dict[str, Any]:
    view = await deps.commands.view(submission_id, viewer.principal)
    return {"s": view, "me": viewer, "live": SUBMISSION_LIVE}


@get("/submissions/{submission_id:str}/row")
async def submission_row(submission_id: FromPath[str], deps: DepsArg, viewer: ViewerArg) -> Response[str]:
    return render("_row.html", **await _row_context(deps, viewer, submission_id))


@get("/submissions/{submission_id:str}/results")
async def submission_results(submission_id: FromPath[str], deps: DepsArg, viewer: ViewerArg) -> Response[str]:
    view = await deps.commands.view(submission_id, viewer.principal)
    tasks = await deps.store.list_tasks(submission_id=submission_id, limit=100)
    return render("_results.html", s=view, tasks=tasks.items, me=viewer, final=TASK_FINAL)


@get("/submissions/{submission_id:str}/schedule")
async def schedule_page(submission_id: FromPath[str], deps: DepsArg, admin_viewer: ViewerArg) -> Response[str]:
    target = await deps.commands.view(submission_id, admin_viewer.principal)
    values = {"config_file": "configs/default.toml", "trainer_ref": "main", "intervals": ["60"], "platform": "any"}
    return await _submissions_page(deps, admin_viewer, dialog="schedule", target=target, values=values)


def _schedule_body(form: Any) -> tuple[dict[str, Any], ScheduleCreate]:
    intervals = [str(v).strip() for v in form.getall("interval", []) if str(v).strip()]
    values: dict[str, Any] = {
        k: str(form.get(k, "")).strip()
        for k in (
            "config_file",
            "trainer_ref",
            "fetched_data_end_to",
            "passthrough_args",
            "platform",
            "gpu_type",
            "priority",
        )
    }
    values["intervals"] = intervals or [""]
    if not all(v.isdigit() for v in intervals):
        raise InvalidInputError("prediction_intervals: each must be a whole number of minutes")
    end = values["fetched_data_end_to"]
    try:
        end_at = datetime.fromisoformat(end).replace(tzinfo=UTC) if end else None
    except ValueError:
        raise InvalidInputError("fetched_data_end_to: not a date and time") from None
    try:
        priority = int(values["priority"] or 0)
    except ValueError:
        raise InvalidInputError("priority: must be a whole number") from None
    body = ScheduleCreate(
        config_file=values["config_file"] or "configs/default.toml",
        trainer_ref=values["trainer_ref"] or "main",
        prediction_intervals=[int(v) for v in intervals],
        fetched_data_end_to=end_at,
        passthrough_args=values["passthrough_args"] or None,
        platform=values["platform"] or "any",
        gpu_type=(values["gpu_type"] or None) if values["platform"] != "onprem" else None,
        priority=priority,
    )
    return values, body


@post("/submissions/{submission_id:str}/schedule", status_code=303)
async def schedule(
    submission_id: FromPath[str], request: Request[Any, Any, Any], deps: DepsArg, admin_viewer: ViewerArg
) -> Any:
    form = await admin_viewer.form(request)
    target = await deps.commands.view(submission_id, admin_viewer.principal)
    values: dict[str, Any] = {"intervals": [str(v) for v in form.getall("interval", [])] or [""]}
    try:
        values, body = _schedule_body(form)
        await deps.commands.schedule(submission_id, body, admin_viewer.principal)
    except (ValidationError, InvalidInputError, PermanentError) as e:
        values = {**{k: str(form.get(k, "")) for k in form}, **values}
        errors = field_errors(e) if isinstance(e, ValidationError | InvalidInputError) else {"_": str(e)}
        if "prediction_intervals" in errors:
            errors["intervals"] = errors.pop("prediction_intervals")
        return await _submissions_page(
            deps, admin_viewer, dialog="schedule", target=target, values=values, errors=errors, status_code=422
        )
    return Redirect(f"{PATH}/submissions?notice=scheduled:{submission_id}", status_code=303)


@post("/submissions/{submission_id:str}/cancel", status_code=303)
async def cancel(
    submission_id: FromPath[str], request: Request[Any, Any, Any], deps: DepsArg, admin_viewer: ViewerArg
) -> Redirect:
    await admin_viewer.form(request)
    await deps.commands.cancel(submission_id, admin_viewer.principal)
    return Redirect(f"{PATH}/submissions?notice=cancelling:{submission_id}", status_code=303)


@post("/submissions/{submission_id:str}/delete", status_code=303)
async def delete(
    submission_id: FromPath[str], request: Request[Any, Any, Any], deps: DepsArg, viewer: ViewerArg
) -> Redirect:
    await viewer.form(request)
    await deps.commands.retract(submission_id, viewer.principal, uuid.uuid4().hex)
    return Redirect(f"{PATH}/submissions?notice=deleted:{submission_id}", status_code=303)


@get("/submissions/{submission_id:str}/tasks/{task_id:str}/log")
async def log_page(
    submission_id: FromPath[str], task_id: FromPath[str], deps: DepsArg, viewer: ViewerArg
) -> Response[str]:
    task = await _visible_task(RoutesDeps.of(deps), viewer.principal, submission_id, task_id)
    final = task.status in TASK_FINAL
    lines = await deps.logs.tail(task, 2000) if final else []
    return render("log.html", me=viewer, task=task, lines=lines, final=final)


@get("/submissions/{submission_id:str}/tasks/{task_id:str}/log/stream")
async def log_stream(
    submission_id: FromPath[str], task_id: FromPath[str], deps: DepsArg, viewer: ViewerArg
) -> ServerSentEvent:
    task = await _visible_task(RoutesDeps.of(deps), viewer.principal, submission_id, task_id)

    async def finished() -> bool:
        now = await deps.store.get_task(submission_id, task_id)
        return now is None or now.status in TASK_FINAL

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, comment="following")
        async for line in deps.logs.follow(task, 2000, finished, deps.stop):
            yield ServerSentEventMessage(data=json.dumps(line), event="line")
        final = await deps.store.get_task(submission_id, task_id)
        yield ServerSentEventMessage(data=json.dumps(final.status if final else None), event="end")

    return ServerSentEvent(stream())


@get("/submissions/{submission_id:str}/tasks/{task_id:str}/artifacts/{name:str}")
async def artifact(
    submission_id: FromPath[str], task_id: FromPath[str], name: FromPath[str], deps: DepsArg, viewer: ViewerArg
) -> Stream:
    return await artifact_response(RoutesDeps.of(deps), viewer.principal, submission_id, task_id, name)


@get("/events")
async def events(deps: DepsArg, viewer: ViewerArg) -> ServerSentEvent:
    """The API's live feed for the signed-in browser (EventSource cannot send a Bearer header)."""
    return status_events(RoutesDeps.of(deps), viewer.principal)


ROUTES = [
    home,
    sign_in_page,
    sign_in,
    sign_out,
    submissions,
    new_submission_page,
    new_submission,
    submission_row,
    submission_results,
    schedule_page,
    schedule,
    cancel,
    delete,
    log_page,
    log_stream,
    artifact,
    events,
]
