"""RunPod v2's request schemas, mirrored as strict pydantic models (the fake's own copy).

These follow ``CreatePodRequest``, ``UpdatePodRequest``, ``PodActionRequest``, ``Mounts`` and
the catalog's query parameters of RunPod's published OpenAPI document (v2): JSON types exactly
(no ``"true"`` for a boolean, no ``true`` for an integer, a whole ``20.0`` is an integer as in
JSON Schema), required fields, ``unevaluatedProperties: false`` (``extra="forbid"``),
``minLength``, ``minimum``, ``maxItems``, enums and patterns. A field that may be omitted but is
not nullable refuses an explicit ``null``. The cross-field rules the schema leaves to RunPod's
handler (exactly one of gpu/cpu, ...) are in ``validate.py``; they answer 400, not 422.

The fake never reads RunPod's document: the contract test does, to prove these agree with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

OMITTED: Any = None
"""Default of a field that may be left out but not sent as ``null`` (defaults are not validated)."""


def _whole(value: object) -> object:
    """JSON Schema's ``integer`` includes numbers with a zero fraction (``20.0``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_whole)]
CUDA = r"^[0-9]+\.[0-9]+$"
"""``major.minor``; ASCII digits (the schema's ``\\d``, as RunPod's Go service reads it)."""
SSH_KEY = r"^(ssh|ecdsa|sk)-[^\s]+ [^\s]+([ \t][^\n\r]*)?$"
Cloud = Literal["SECURE", "COMMUNITY"]
PodActionName = Literal["start", "stop", "restart", "terminate"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class PersistentMount(_Strict):
    size: Int = Field(ge=10)
    path: str


class NetworkMount(_Strict):
    volumeId: str
    path: str


class Mounts(_Strict):
    persistent: PersistentMount = OMITTED
    network: list[NetworkMount] = Field(default=OMITTED, max_length=1)


class CreateGpuConfig(_Strict):
    id: str
    count: Int = Field(default=OMITTED, ge=1)
    allowedCudaVersions: list[Annotated[str, Field(pattern=CUDA)]] = OMITTED
    minCudaVersion: str = Field(default=OMITTED, pattern=CUDA)


class CreateCpuConfig(_Strict):
    id: str = Field(min_length=1)
    vcpuCount: Int = Field(ge=2)


class _ContainerConfig(_Strict):
    args: str = OMITTED
    disk: Int = Field(default=OMITTED, ge=1)
    env: dict[str, str] = OMITTED
    image: str = OMITTED
    ports: list[str] = OMITTED
    registry: str | None = None


class CreatePodRequest(_ContainerConfig):
    name: str = Field(min_length=1)
    cloud: Cloud = OMITTED
    cpu: CreateCpuConfig = OMITTED
    dataCenterIds: list[str] = OMITTED
    globalNetworking: bool = OMITTED
    gpu: CreateGpuConfig = OMITTED
    mounts: Mounts = OMITTED
    startJupyter: bool = OMITTED
    startSsh: bool = OMITTED
    templateId: str = Field(default=OMITTED, min_length=1)


class UpdatePodRequest(_ContainerConfig):
    globalNetworking: bool = OMITTED
    locked: bool = OMITTED
    mounts: Mounts = OMITTED
    name: str = Field(default=OMITTED, min_length=1)
    templateId: str = OMITTED


class PodActionRequest(_Strict):
    action: PodActionName


class UpdateSshKeysRequest(_Strict):
    keys: list[Annotated[str, Field(pattern=SSH_KEY)]]


def errors(model: type[BaseModel], body: object) -> list[str]:
    """Every violation of ``model`` by ``body``, as ``$.where: what`` lines (empty: valid)."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return [_line(e) for e in exc.errors(include_url=False)]
    return []


def _line(error: Mapping[str, Any]) -> str:
    loc = [part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
    if error["type"] in ("extra_forbidden", "missing") and loc:
        where, key = _where(loc[:-1]), loc[-1]
        if error["type"] == "missing":
            return f"{where}: missing property '{key}'"
        return f"{where}: additional properties '{key}' not allowed"
    return f"{_where(loc)}: {error['msg']}"


def _where(loc: list[Any]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


# --- query parameters -----------------------------------------------------------------------

_DIGITS = re.compile(r"^[0-9]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CUDA = re.compile(CUDA)
_MIN_CUDA = re.compile(r"^[0-9]+(\.[0-9]+)?$")
PRODUCTS = ("POD", "CLUSTER", "SERVERLESS")


class GpuQuery(BaseModel):
    """The parsed query of ``listGpuTypes`` / ``getGpuType`` (form style, comma-separated)."""

    model_config = ConfigDict(frozen=True)

    include: bool = False
    products: tuple[str, ...] = ()
    count: int = 1
    cloud: str = "SECURE"
    country_codes: tuple[str, ...] = ()
    cuda_versions: tuple[str, ...] = ()
    min_cuda: str | None = None
    given: frozenset[str] = frozenset()
    """The filters present (non-empty) in the query, for the handler's 400 rules."""


def _array(query: Mapping[str, str], name: str) -> list[str]:
    raw = query.get(name, "")
    return raw.split(",") if raw else []


def gpu_query(query: Mapping[str, str]) -> tuple[GpuQuery, list[str]]:
    """The catalog query and its 422 violations (empty when it matches the schema)."""
    problems: list[str] = []
    include = _array(query, "include")
    if len(include) > 1:
        problems.append("$.include: array must have at most 1 item")
    problems += [f"$.include: value must be one of 'AVAILABILITY' (got {v!r})" for v in include if v != "AVAILABILITY"]
    products = _array(query, "product")
    problems += [f"$.product: value must be one of 'POD', 'CLUSTER', 'SERVERLESS' (got {v!r})"
                 for v in products if v not in PRODUCTS]
    count = query.get("count")
    if count is not None and (not _DIGITS.fullmatch(count) or int(count) < 1):
        problems.append("$.count: must be an integer >= 1")
    cloud = query.get("cloud")
    if cloud is not None and cloud not in ("SECURE", "COMMUNITY"):
        problems.append("$.cloud: value must be one of 'SECURE', 'COMMUNITY'")
    countries = _array(query, "countryCodes")
    problems += [f"$.countryCodes: {v!r} does not match '^[A-Z]{{2}}$'" for v in countries if not _COUNTRY.fullmatch(v)]
    cudas = _array(query, "cudaVersions")
    problems += [f"$.cudaVersions: {v!r} does not match '{CUDA}'" for v in cudas if not _CUDA.fullmatch(v)]
    floor = query.get("minCudaVersion")
    if floor is not None and not _MIN_CUDA.fullmatch(floor):
        problems.append("$.minCudaVersion: does not match '^\\d+(\\.\\d+)?$'")
    if problems:
        return GpuQuery(), problems
    present = {"product": products, "count": count, "cloud": cloud, "countryCodes": countries,
               "cudaVersions": cudas, "minCudaVersion": floor}
    return GpuQuery(
        include=bool(include), products=tuple(products), count=int(count or 1), cloud=cloud or "SECURE",
        country_codes=tuple(countries), cuda_versions=tuple(cudas), min_cuda=floor,
        given=frozenset(k for k, v in present.items() if v),
    ), []


def boolean(query: Mapping[str, str], name: str) -> tuple[bool, list[str]]:
    """A boolean query parameter (``true``/``false``) and its 422 violation, if any."""
    raw = query.get(name)
    if raw is None or raw in ("true", "false"):
        return raw == "true", []
    return False, [f"$.{name}: value must be a boolean ('true' or 'false')"]
