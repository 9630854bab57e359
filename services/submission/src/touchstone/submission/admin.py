"""Admin-only endpoints: the System tab, the GPU catalog and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import delete, get, patch, post
from litestar.params import FromPath, JSONBody
from touchstone.shared.system import RunPodStatus, SystemSettings
from touchstone.submission.deps import AdminArg, PrincipalArg
from touchstone.submission.problems import documented
from touchstone.submission.schemas import RunPodReport, System, SystemUpdate, Token, TokenCreate, TokenCreated

PREFIX = "/api/v1"


def _system(settings: SystemSettings, revision: int) -> System:
    return System(**settings.model_dump(), revision=revision)


@get(f"{PREFIX}/system", summary="Run-time settings (admin)", tags=["system"], responses=documented(401, 403))
async def get_system(deps: AdminArg, admin: PrincipalArg) -> System:
    return _system(*await deps.system.read())


@patch(
    f"{PREFIX}/system",
    summary="Change run-time settings; applied at once (admin)",
    tags=["system"],
    responses=documented(401, 403, 409, 413, 422),
)
async def patch_system(data: JSONBody[SystemUpdate], deps: AdminArg, admin: PrincipalArg) -> System:
    changes = data.model_dump(exclude_unset=True, exclude={"revision"})
    changes = {k: v for k, v in changes.items() if v is not None}
    return _system(*await deps.system.update(changes, data.revision))


def runpod_report(status: RunPodStatus | None, now: datetime | None = None) -> RunPodReport:
    """The provider's report with its age (None when its time does not parse)."""
    if status is None:
        return RunPodReport(reporting=False)
    try:
        at = datetime.fromisoformat(status.updated_at)
    except ValueError:
        return RunPodReport(reporting=True, status=status)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    age = max(0.0, ((now or datetime.now(UTC)) - at).total_seconds())
    return RunPodReport(reporting=True, age_s=age, status=status)


@get(
    f"{PREFIX}/system/runpod",
    summary="The RunPod account as its provider last reported it: balance, spend, reaped pods (admin)",
    tags=["system"],
    responses=documented(401, 403),
)
async def get_runpod(deps: AdminArg, admin: PrincipalArg) -> RunPodReport:
    return runpod_report(await deps.system.runpod_status())


@get(
    f"{PREFIX}/gpu-types",
    summary="RunPod GPU types with price and stock (admin)",
    tags=["system"],
    responses=documented(401, 403),
)
async def gpu_types(deps: AdminArg, admin: PrincipalArg) -> list[dict[str, Any]]:
    return await deps.system.gpu_types()


@post(
    f"{PREFIX}/tokens",
    summary="Create an API token; the secret is shown once (admin)",
    tags=["tokens"],
    responses=documented(401, 403, 413, 422),
)
async def create_token(data: JSONBody[TokenCreate], deps: AdminArg, admin: PrincipalArg) -> TokenCreated:
    return await deps.tokens.create(data, admin)


@get(f"{PREFIX}/tokens", summary="API tokens, without secrets (admin)", tags=["tokens"], responses=documented(401, 403))
async def list_tokens(deps: AdminArg, admin: PrincipalArg) -> list[Token]:
    return await deps.tokens.all()


@delete(
    f"{PREFIX}/tokens/{{token_id:str}}",
    status_code=200,
    summary="Revoke an API token (admin)",
    tags=["tokens"],
    responses=documented(401, 403, 404),
)
async def revoke_token(token_id: FromPath[str], deps: AdminArg, admin: PrincipalArg) -> Token:
    return await deps.tokens.revoke(token_id)


ROUTES = [get_system, patch_system, get_runpod, gpu_types, create_token, list_tokens, revoke_token]
