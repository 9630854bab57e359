"""Submissions, their tasks, logs and artifacts: ``/api/v1/submissions...`` and ``/api/v1/tasks``.

Users see only their own submissions (anything else answers 404); admins see all.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from litestar import Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import ServerSentEvent, Stream
from litestar.response.sse import ServerSentEventMessage
from pydantic import BaseModel
from touchstone.shared.errors import NotFoundError
from touchstone.shared.lifecycle import TASK_FINAL, TASK_UNFINISHED, SubmissionStatus, TaskStatus
from touchstone.shared.store import Page, ProjectionStore
from touchstone.shared.store.protocol import CURSOR_PATTERN
from touchstone.shared.views import SubmissionView, TaskView
from touchstone.submission.deps import PrincipalArg, RoutesArg, RoutesDeps
from touchstone.submission.domain import Principal, valid_id
from touchstone.submission.problems import BadQuery, documented
from touchstone.submission.schemas import (
    ScheduleAccepted,
    ScheduleCreate,
    SubmissionCreate,
    SubmissionDetail,
    SubmissionPage,
    TaskDetail,
    TaskPage,
)

PREFIX = "/api/v1"
_ARTIFACT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Limit = Annotated[int, Parameter(ge=1, le=200, description="page size")]
Cursor = Annotated[
    str | None, Parameter(max_length=256, pattern=CURSOR_PATTERN, description="next_cursor of the previous page")
]


M = TypeVar("M", bound=BaseModel)


def as_json(model: M, status_code: int = 200) -> Response[M]:
    """A JSON response serialised by pydantic in one step (faster than the generic path for the
    long read models); the annotation still gives OpenAPI the model."""
    body: Any = model.__pydantic_serializer__.to_json(model)
    return Response(body, status_code=status_code, media_type="application/json")


def _json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def task_detail(task: TaskView) -> TaskDetail:
    base = f"{PREFIX}/submissions/{task.submission_id}/tasks/{task.task_id}"
    return TaskDetail(
        **task.model_dump(),
        artifact_links={name: f"{base}/artifacts/{name}" for name in task.artifacts},
        log_link=f"{base}/logs",
    )


@post(
    f"{PREFIX}/submissions", summary="Submit a feature set", tags=["submissions"], responses=documented(401, 413, 422)
)
async def create_submission(
    data: JSONBody[SubmissionCreate], deps: RoutesArg, principal: PrincipalArg
) -> SubmissionView:
    return await deps.commands.create(data, principal)


@get(
    f"{PREFIX}/submissions",
    summary="List submissions, newest first",
    tags=["submissions"],
    responses=documented(400, 401),
)
async def list_submissions(
    deps: RoutesArg,
    principal: PrincipalArg,
    status: FromQuery[SubmissionStatus | None] = None,
    owner: Annotated[str | None, Parameter(max_length=128, description="admins only")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response[SubmissionPage]:
    if not principal.is_admin:
        owner = principal.name
    try:
        page = await deps.store.list_submissions_json(owner=owner, status=status, limit=limit, cursor=cursor)
    except ValueError as e:
        raise BadQuery(f"cursor: {e}") from e
    # the stored documents are the items' JSON already: spliced, not parsed and re-serialised
    cursor_json = b"null" if page.next_cursor is None else json.dumps(page.next_cursor).encode()
    body = b'{"items":[' + b",".join(page.items) + b'],"next_cursor":' + cursor_json + b"}"
    return Response(body, media_type="application/json")  # type: ignore[arg-type]


@get(
    f"{PREFIX}/submissions/{{submission_id:str}}",
    summary="One submission with its tasks",
    tags=["submissions"],
    responses=documented(401, 404),
)
async def get_submission(
    submission_id: FromPath[str], deps: RoutesArg, principal: PrincipalArg
) -> Response[SubmissionDetail]:
    stored = await deps.commands.view_json(submission_id, principal)
    tasks = await deps.store.list_tasks(submission_id=submission_id, limit=500)
    # the stored submission document is served as is, with its tasks spliced in
    details = b",".join(_json(task_detail(t)) for t in tasks.items)
    return Response(stored[:-1] + b',"tasks":[' + details + b"]}", media_type="application/json")  # type: ignore[arg-type]


@delete(
    f"{PREFIX}/submissions/{{submission_id:str}}",
    status_code=200,
    tags=["submissions"],
    summary="Retract a submission (a live one: admins only, which cancels it first)",
    responses={
        **documented(401, 404, 409),
        202: ResponseSpec(SubmissionView, description="Live: its tasks are being cancelled; it is retracted after"),
    },
)
async def delete_submission(
    submission_id: FromPath[str], deps: RoutesArg, principal: PrincipalArg
) -> Response[SubmissionView]:
    view = await deps.commands.retract(submission_id, principal, uuid.uuid4().hex)
    return Response(view, status_code=200 if view.status == SubmissionStatus.RETRACTED else 202)


@post(
    f"{PREFIX}/submissions/{{submission_id:str}}/schedule",
    status_code=202,
    tags=["submissions"],
    summary="Schedule training of an accepted submission (admin)",
    responses=documented(401, 403, 404, 409, 413, 422),
)
async def schedule_submission(
    submission_id: FromPath[str], data: JSONBody[ScheduleCreate], deps: RoutesArg, admin: PrincipalArg
) -> ScheduleAccepted:
    return await deps.commands.schedule(submission_id, data, admin)


@post(
    f"{PREFIX}/submissions/{{submission_id:str}}/cancel",
    status_code=202,
    tags=["submissions"],
    summary="Cancel every unfinished task (admin)",
    responses=documented(401, 403, 404, 409),
)
async def cancel_submission(submission_id: FromPath[str], deps: RoutesArg, admin: PrincipalArg) -> SubmissionView:
    return await deps.commands.cancel(submission_id, admin)


async def unfinished_tasks(
    store: ProjectionStore, *, platform: str | None, limit: int, cursor: str | None
) -> Page[TaskView]:
    """Every queued and running task (any status but the final ones), oldest queued first."""
    return await store.list_tasks(status=TASK_UNFINISHED, platform=platform, limit=limit, cursor=cursor)


@get(
    f"{PREFIX}/tasks",
    summary="All tasks, oldest queued first (admin)",
    tags=["tasks"],
    responses=documented(400, 401, 403),
)
async def list_tasks(
    deps: RoutesArg,
    admin: PrincipalArg,
    status: FromQuery[TaskStatus | None] = None,
    unfinished: Annotated[
        bool,
        Parameter(
            description="only queued and running tasks (every status but the final ones); "
            "with status, that status if it is one of them"
        ),
    ] = False,
    platform: Annotated[str | None, Parameter(pattern=r"^(onprem|runpod|any)$")] = None,
    submission_id: Annotated[str | None, Parameter(max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Response[TaskPage]:
    statuses: TaskStatus | frozenset[str] | None = status
    if unfinished:  # combined with a status: that status if it is unfinished (else none)
        statuses = TASK_UNFINISHED if status is None else TASK_UNFINISHED & {status}
    try:
        page = await deps.store.list_tasks(
            submission_id=submission_id, status=statuses, platform=platform, limit=limit, cursor=cursor
        )
    except ValueError as e:
        raise BadQuery(f"cursor: {e}") from e
    return as_json(TaskPage(items=[task_detail(t) for t in page.items], next_cursor=page.next_cursor))


async def _visible_task(deps: RoutesDeps, principal: Principal, submission_id: str, task_id: str) -> TaskView:
    await deps.commands.view(submission_id, principal)
    task = await deps.store.get_task(submission_id, task_id) if valid_id(task_id) else None
    if task is None:
        raise NotFoundError(f"no task {task_id} in {submission_id}")
    return task


@get(
    f"{PREFIX}/submissions/{{submission_id:str}}/tasks/{{task_id:str}}/logs",
    tags=["tasks"],
    summary="A task's console log (text/plain); ?follow=true streams it (text/event-stream) while it runs",
    responses=documented(400, 401, 404),
)
async def task_logs(
    submission_id: FromPath[str],
    task_id: FromPath[str],
    deps: RoutesArg,
    principal: PrincipalArg,
    tail: Annotated[int | None, Parameter(ge=1, le=100_000, description="only the last N lines")] = None,
    follow: FromQuery[bool] = False,
) -> Response[str] | ServerSentEvent:
    task = await _visible_task(deps, principal, submission_id, task_id)
    if not follow:
        lines = await deps.logs.tail(task, tail)
        return Response("".join(f"{line}\n" for line in lines), media_type="text/plain; charset=utf-8")

    async def finished() -> bool:
        now = await deps.store.get_task(submission_id, task_id)
        return now is None or now.status in TASK_FINAL

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, comment="following")
        ends = time.monotonic() + deps.settings.sse_max_s
        async for line in deps.logs.follow(task, tail, finished, deps.stop, until=ends):
            yield ServerSentEventMessage(data=json.dumps(line), event="line")
        final = await deps.store.get_task(submission_id, task_id)
        yield ServerSentEventMessage(data=json.dumps(final.status if final else None), event="end")

    return ServerSentEvent(stream())


@get(
    f"{PREFIX}/submissions/{{submission_id:str}}/tasks/{{task_id:str}}/artifacts/{{name:str}}",
    tags=["tasks"],
    summary="Download a model or metrics file",
    responses=documented(401, 404),
)
async def task_artifact(
    submission_id: FromPath[str], task_id: FromPath[str], name: FromPath[str], deps: RoutesArg, principal: PrincipalArg
) -> Stream:
    return await artifact_response(deps, principal, submission_id, task_id, name)


async def artifact_response(
    deps: RoutesDeps, principal: Principal, submission_id: str, task_id: str, name: str
) -> Stream:
    """One artifact of a task the principal may see, streamed from the object store by the
    key checked to lie under the task's prefix (the API's and the UI's download alike; never
    a redirect to a URL from an event)."""
    task = await _visible_task(deps, principal, submission_id, task_id)
    if not _ARTIFACT.match(name):
        raise NotFoundError(f"no artifact {name} for task {task_id}")
    key, size = await deps.artifacts.find(task, name)
    return Stream(deps.objects.chunks(key), media_type="application/octet-stream",
                  headers={"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}"'})


def status_events(deps: RoutesDeps, principal: Principal, submission_id: str | None = None) -> ServerSentEvent:
    """The live feed of status changes the principal may see, with keep-alive comments (the
    API's ``/api/v1/events`` and the UI's ``/ui/events`` alike)."""
    keepalive = deps.settings.sse_keepalive_s

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        ends = time.monotonic() + deps.settings.sse_max_s
        with deps.feed.subscribe(principal, submission_id) as sub:
            yield ServerSentEventMessage(data=None, comment="subscribed")
            while not deps.stop.is_set() and (left := ends - time.monotonic()) > 0:
                try:
                    change = await asyncio.wait_for(sub.queue.get(), timeout=min(keepalive, left))
                except TimeoutError:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    continue
                yield ServerSentEventMessage(data=change.model_dump_json(), event="status", id=change.seq)

    return ServerSentEvent(stream())


ROUTES = [create_submission, list_submissions, get_submission, delete_submission, schedule_submission,
          cancel_submission, list_tasks, task_logs, task_artifact]
