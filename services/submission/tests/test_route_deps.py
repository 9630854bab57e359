"""Each API route group gets only its part of the service: the ``deps`` a route names is the
small one its group's router provides, never the whole ``Deps`` (only health and the UI get it)."""

from __future__ import annotations

import typing

from litestar.routes import HTTPRoute
from touchstone.shared import events as ev
from touchstone.submission.app import create_app
from touchstone.submission.deps import AdminDeps, AgentAccessDeps, Deps, EvaluationsDeps, RoutesDeps


async def test_every_api_route_gets_its_groups_small_deps(api) -> None:
    app = create_app(api.deps)
    given: dict[str, type] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/api/"):
            continue
        for handler in route.route_handlers:
            if "deps" not in handler.parsed_fn_signature.parameters:
                continue
            provided = await handler.resolve_dependencies()["deps"].dependency()
            annotated = handler.parsed_fn_signature.parameters["deps"].annotation
            annotated = (typing.get_args(annotated) or (annotated,))[0]  # Annotated[T, ...] or T
            assert isinstance(provided, annotated), f"{route.path}: {type(provided).__name__}, not {annotated}"
            given[f"{sorted(handler.http_methods)[0]} {route.path}"] = type(provided)
            # one dependency at a time (``principal`` names ``deps``): a batch of two would be
            # resolved in an anyio task group, a fifth of a read's time
            batches = handler.create_kwargs_model(path_parameters=route.path_parameters).dependency_batches
            assert all(len(batch) == 1 for batch in batches), route.path
    assert Deps not in given.values()
    assert given["POST /api/v1/submissions"] is RoutesDeps
    assert given["GET /api/v1/events"] is RoutesDeps
    assert given["GET /api/v1/evaluations"] is EvaluationsDeps
    assert given["PATCH /api/v1/system"] is AdminDeps
    assert given["POST /api/v1/agents/{host:str}/exec"] is AgentAccessDeps
    # the group's parts are the service's own, not copies
    (submissions,) = [r for r in app.routes if r.path == "/api/v1/submissions" and isinstance(r, HTTPRoute)]
    routes_deps = await submissions.route_handlers[0].resolve_dependencies()["deps"].dependency()
    assert routes_deps.commands is api.deps.commands and routes_deps.stop is api.deps.stop


async def signed_in(api, client) -> dict[str, str]:
    """A browser's Cookie header once it signed in with ``client``'s token."""
    token = client.headers["Authorization"].removeprefix("Bearer ")
    r = await api.anon.post("/ui/sign-in", data={"token": token, "next": "/ui/submissions"})
    assert r.status_code == 303, r.text
    return {"Cookie": r.headers["set-cookie"].split(";")[0]}


async def test_the_ui_pages_that_reuse_the_route_helpers_still_serve(api) -> None:
    """The UI gets the whole ``Deps`` and hands the routes' helpers their part: a task's log
    page, its artifact download and the live feed answer as the API's do."""
    sid = await api.submit(api.alice, "https://github.com/org/fs.git")
    await api.caught_up()
    await api.record(ev.TaskQueued(aggregate_id=f"{sid}-validation", correlation_id=sid, submission_id=sid,
                                   task_id="validation", kind="validation",
                                   spec=ev.TaskSpec(git_url="https://github.com/org/fs.git")))
    await api.caught_up()
    alice, bob = [await signed_in(api, client) for client in (api.alice, api.bob)]
    log = await api.anon.get(f"/ui/submissions/{sid}/tasks/validation/log", headers=alice)
    assert log.status_code == 200, log.text
    assert (await api.anon.get(f"/ui/submissions/{sid}/tasks/validation/log", headers=bob)).status_code == 404
    missing = await api.anon.get(f"/ui/submissions/{sid}/tasks/validation/artifacts/model.pkl", headers=alice)
    assert missing.status_code == 404
    async with api.anon.stream("GET", "/ui/events", headers=alice, timeout=10) as feed:
        assert feed.status_code == 200
        first = await anext(feed.aiter_lines())
        assert first.startswith(":")  # the feed's first word: a comment that it subscribed
