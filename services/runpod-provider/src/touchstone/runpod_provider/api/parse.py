"""The one place that reads and writes RunPod JSON.

RunPod v2 shapes go in, our frozen models come out (and ``PodSpec`` goes out as a create
body). A body that does not have the expected shape raises ``BadResponseError`` naming the
field, never echoing values (pod bodies carry ``env``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from .errors import BadResponseError
from .models import Balance, Cloud, GpuType, Pod, PodSpec, PodStatus, SshEndpoint, Stock

STATUS_MAP: Mapping[str, PodStatus] = {
    "PROVISIONING": PodStatus.PENDING,
    "STARTING": PodStatus.STARTING,
    "RUNNING": PodStatus.RUNNING,
    "EXITED": PodStatus.STOPPED,
    "ERROR": PodStatus.FAILED,
    "TERMINATED": PodStatus.TERMINATED,
}
"""RunPod ``PodStatus`` → ours. Anything else becomes ``PodStatus.UNKNOWN``."""

_STOCK_MAP: Mapping[str, Stock] = {
    "NONE": Stock.NONE,
    "LOW": Stock.LOW,
    "MEDIUM": Stock.MEDIUM,
    "HIGH": Stock.HIGH,
}


def pod_status(vendor_status: object) -> PodStatus:
    """Our status for a RunPod status string."""
    return STATUS_MAP.get(str(vendor_status), PodStatus.UNKNOWN)


def create_body(spec: PodSpec) -> dict[str, Any]:
    """The ``POST /v2/pods`` body for a spec (only fields v2 accepts)."""
    env = dict(spec.env)
    if spec.public_key is not None:
        env["PUBLIC_KEY"] = spec.public_key
    gpu: dict[str, Any] = {"id": spec.gpu_type_id, "count": spec.gpu_count}
    if spec.min_cuda_version is not None:
        gpu["minCudaVersion"] = spec.min_cuda_version
    body: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "gpu": gpu,
        "cloud": spec.cloud.value,
        "disk": spec.disk_gb,
        "ports": list(spec.ports),
        "env": env,
    }
    if spec.args is not None:
        body["args"] = spec.args
    if spec.data_center_ids:
        body["dataCenterIds"] = list(spec.data_center_ids)
    if spec.registry_id is not None:
        body["registry"] = spec.registry_id
    return body


def _field(body: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return body[key]
    except (KeyError, TypeError):
        raise BadResponseError(f"RunPod {what} without '{key}'") from None


def _when(value: object, key: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise BadResponseError(f"RunPod pod '{key}' is not a date-time") from None


def _ssh(body: Mapping[str, Any]) -> SshEndpoint | None:
    """``ssh.direct``, else a ``runtime.ports`` entry for private port 22 (SkyPilot's fallback)."""
    direct = (body.get("ssh") or {}).get("direct")
    if isinstance(direct, Mapping) and direct.get("host") and direct.get("port"):
        return SshEndpoint(
            host=str(direct["host"]),
            port=int(direct["port"]),
            username=str(direct.get("username") or "root"),
        )
    for port in (body.get("runtime") or {}).get("ports") or ():
        if (
            isinstance(port, Mapping)
            and port.get("private") == 22
            and port.get("type") == "tcp"
            and port.get("ip")
            and port.get("public")
        ):
            return SshEndpoint(host=str(port["ip"]), port=int(port["public"]), username="root")
    return None


def pod(body: object) -> Pod:
    """Our ``Pod`` from a RunPod ``Pod`` object; ``env`` values are dropped here."""
    if not isinstance(body, Mapping):
        raise BadResponseError("RunPod pod is not an object")
    gpu = body.get("gpu") or {}
    env = body.get("env") or {}
    try:
        return Pod(
            id=str(_field(body, "id", "pod")),
            name=str(_field(body, "name", "pod")),
            status=pod_status(_field(body, "status", "pod")),
            actions=tuple(str(a) for a in body.get("actions") or ()),
            image=str(body.get("image") or ""),
            gpu_type_id=gpu.get("id") if isinstance(gpu, Mapping) else None,
            gpu_count=int(gpu.get("count") or 1) if isinstance(gpu, Mapping) and gpu else 0,
            cost_per_hour=float(body.get("cost") or 0.0),
            ssh=_ssh(body),
            data_center_id=body.get("dataCenterId"),
            env_keys=tuple(sorted(str(k) for k in env)) if isinstance(env, Mapping) else (),
            created_at=_when(body.get("createdAt"), "createdAt"),
            started_at=_when(body.get("startedAt"), "startedAt"),
        )
    except (TypeError, ValueError, AttributeError):
        # pydantic's ValidationError is a ValueError; its text may quote input, so drop it.
        raise BadResponseError("RunPod pod has fields of unexpected types") from None


def pods(body: object) -> list[Pod]:
    """Our pods from a ``ListPodsResponse`` (``{"pods": [...]}``, wrapped in v2)."""
    items = _field(body, "pods", "pod list") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise BadResponseError("RunPod pod list is not {'pods': [...]}")
    return [pod(item) for item in items]


def gpu_types(body: object, cloud: Cloud) -> list[GpuType]:
    """Our GPU types from ``{"gpus": [GpuType, ...]}``, priced for ``cloud``."""
    items = _field(body, "gpus", "GPU catalog") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise BadResponseError("RunPod GPU catalog is not {'gpus': [...]}")
    return [gpu_type(item, cloud) for item in items]


def gpu_type(body: object, cloud: Cloud) -> GpuType:
    """Our ``GpuType`` from one RunPod ``GpuType`` object."""
    if not isinstance(body, Mapping):
        raise BadResponseError("RunPod GPU type is not an object")
    key = "secure" if cloud is Cloud.SECURE else "community"
    try:
        price = _field(body, "price", "GPU type")
        max_count = body.get("maxCount") or {}
        availability = body.get("availability")
        return GpuType(
            id=str(_field(body, "id", "GPU type")),
            display_name=str(body.get("name") or body["id"]),
            manufacturer=str(body.get("manufacturer") or "UNKNOWN"),
            memory_gb=int(_field(body, "memory", "GPU type")),
            price_per_hour=float(price.get(key) or 0.0),
            offered=bool(body.get(key)),
            max_count=int(max_count.get(key) or 0),
            stock=_STOCK_MAP.get(str(availability), Stock.UNKNOWN),
            data_center_ids=tuple(
                str(dc["id"]) for dc in body.get("dataCenters") or () if dc.get("availability") != "NONE"
            ),
        )
    except (TypeError, ValueError, AttributeError, KeyError):
        raise BadResponseError("RunPod GPU type has fields of unexpected types") from None


def balance(body: object) -> Balance:
    """Our ``Balance`` from GraphQL ``{"data": {"myself": {...}}}`` (``myself`` non-null)."""
    data = _field(body, "data", "GraphQL answer") if isinstance(body, Mapping) else None
    myself = data.get("myself") if isinstance(data, Mapping) else None
    if not isinstance(myself, Mapping):
        raise BadResponseError("RunPod GraphQL answer has no 'myself'")
    try:
        limit = myself.get("spendLimit")
        return Balance(
            balance=float(_field(myself, "clientBalance", "account")),
            spend_per_hour=float(myself.get("currentSpendPerHr") or 0.0),
            spend_limit=None if limit is None else float(limit),
        )
    except (TypeError, ValueError):
        raise BadResponseError("RunPod account has fields of unexpected types") from None


# --- errors -------------------------------------------------------------------------------


def error_parts(response: httpx.Response) -> tuple[str, tuple[str, ...], bool] | None:
    """``(detail, errors, is_v1_envelope)`` if the body is one of RunPod's error shapes.

    Shapes: v2 problem+json ``{title, status, detail, errors?}`` (errors are strings); GraphQL
    ``{"errors": [{"message": ...}]}``; v1 ``{"error": "...", "status": N}``. None when the
    body is none of these (including a non-JSON body).
    """
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, Mapping):
        return None
    raw = body.get("errors")
    if isinstance(raw, list) and raw:
        messages = tuple(str(e.get("message", "")) if isinstance(e, Mapping) else str(e) for e in raw)
        if "title" in body or "detail" in body:
            return str(body.get("detail") or body.get("title") or ""), messages, False
        return messages[0], messages[1:], False
    if isinstance(body.get("error"), str):
        return body["error"], (), True
    if "detail" in body and "status" in body:
        return str(body.get("detail") or body.get("title") or ""), (), False
    return None


_RATELIMIT_MEMBER = re.compile(r'\s*"?([A-Za-z]+)"?\s*((?:;\s*[a-z]+=\d+\s*)*)$')
_RATELIMIT_PARAM = re.compile(r";\s*([a-z]+)=(\d+)")


def ratelimit(value: str) -> dict[str, dict[str, int]]:
    """Parse a ``RateLimit`` or ``RateLimit-Policy`` header into ``{window: {param: int}}``."""
    out: dict[str, dict[str, int]] = {}
    for member in value.split(","):
        match = _RATELIMIT_MEMBER.match(member)
        if match:
            params = _RATELIMIT_PARAM.findall(match.group(2))
            out[match.group(1)] = {k: int(v) for k, v in params}
    return out


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait: ``Retry-After``, else the longest reset of an exhausted window."""
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    limits = ratelimit(headers.get("ratelimit", ""))
    waits = [w.get("t", 0) for w in limits.values() if w.get("r") == 0]
    return float(max(waits)) if waits else None
