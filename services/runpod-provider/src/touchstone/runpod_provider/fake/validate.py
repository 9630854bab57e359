"""Request validation with RunPod v2's codes and messages (422 schema, 400 rules).

``Problem`` is an error answer; the HTTP layer renders it as problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
LOW_BALANCE = "Your account balance is too low to rent a pod. Please add funds to your account."

_CREATE_KEYS = {
    "name",
    "image",
    "gpu",
    "cpu",
    "cloud",
    "disk",
    "ports",
    "env",
    "args",
    "registry",
    "mounts",
    "dataCenterIds",
    "startSsh",
    "startJupyter",
    "templateId",
    "globalNetworking",
}
_GPU_KEYS = {"id", "count", "allowedCudaVersions", "minCudaVersion"}
_CPU_KEYS = {"id", "vcpuCount"}
_MOUNT_KEYS = {"persistent", "network"}
_PATCH_KEYS = {
    "name",
    "image",
    "args",
    "disk",
    "ports",
    "env",
    "registry",
    "mounts",
    "locked",
    "globalNetworking",
    "templateId",
}
_CUDA = re.compile(r"^\d+\.\d+$")
_PORT = re.compile(r"^\d{1,5}/(http|tcp|udp)$")
SSH_KEY = re.compile(r"^(ssh|ecdsa|sk)-[^\s]+ [^\s]+([ \t][^\n\r]*)?$")
ACTIONS = ("start", "stop", "restart", "terminate")


class Problem(Exception):
    """An error answer: ``{title, status, detail, errors?}`` as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def unprocessable(errors: list[str]) -> Problem:
    return Problem(422, "Request validation failed.", errors)


def _extra(where: str, body: Mapping[str, Any], allowed: set[str]) -> list[str]:
    return [f"{where}: additional properties '{k}' not allowed" for k in body if k not in allowed]


def _object(where: str, value: object) -> list[str]:
    return [] if isinstance(value, dict) else [f"{where}: value must be an object"]


def create(body: object) -> None:
    """Check a ``POST /v2/pods`` body; raise ``Problem`` 422 or 400 like RunPod."""
    if not isinstance(body, dict):
        raise unprocessable(["$: value must be an object"])
    errors = _extra("$", body, _CREATE_KEYS)
    for key, allowed in (("gpu", _GPU_KEYS), ("cpu", _CPU_KEYS), ("mounts", _MOUNT_KEYS)):
        if key in body:
            errors += _object(f"$.{key}", body[key]) or _extra(f"$.{key}", body[key], allowed)
    if not isinstance(body.get("name"), str) or not body.get("name"):
        errors.append("$: missing property 'name'")
    if "image" not in body and "templateId" not in body:
        errors.append("$: missing property 'image'")
    errors += _types(body)
    if errors:
        raise unprocessable(errors)
    _rules(body)


def _types(body: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if "image" in body and not isinstance(body["image"], str):
        errors.append("$.image: value must be a string")
    if "cloud" in body and body["cloud"] not in ("SECURE", "COMMUNITY"):
        errors.append("$.cloud: value must be one of 'SECURE', 'COMMUNITY'")
    if "disk" in body and (not isinstance(body["disk"], int) or body["disk"] < 1):
        errors.append("$.disk: must be >= 1")
    ports = body.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, str) and _PORT.match(p) for p in ports):
        errors.append("$.ports: each entry must match '<port>/<protocol>'")
    env = body.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        errors.append("$.env: value must be an object of strings")
    gpu = body.get("gpu")
    if isinstance(gpu, dict):
        if not isinstance(gpu.get("id"), str):
            errors.append("$.gpu: missing property 'id'")
        if "count" in gpu and (not isinstance(gpu["count"], int) or gpu["count"] < 1):
            errors.append("$.gpu.count: must be >= 1")
        cudas = [*gpu.get("allowedCudaVersions", []), gpu.get("minCudaVersion", "0.0")]
        if not all(isinstance(c, str) and _CUDA.match(c) for c in cudas):
            errors.append("$.gpu: CUDA versions must match '^\\d+\\.\\d+$'")
    persistent = (body.get("mounts") or {}).get("persistent")
    if isinstance(persistent, dict) and not (
        isinstance(persistent.get("size"), int) and persistent["size"] >= 10 and "path" in persistent
    ):
        errors.append("$.mounts.persistent: size >= 10 and path are required")
    return errors


def _rules(body: dict[str, Any]) -> None:
    """The handler's cross-field rules, each a 400."""
    mounts = body.get("mounts") or {}
    gpu = body.get("gpu") or {}
    if ("gpu" in body) == ("cpu" in body):
        raise Problem(400, "exactly one of gpu or cpu must be set")
    if "persistent" in mounts and "network" in mounts:
        raise Problem(400, "at most one of mounts.persistent and mounts.network may be set")
    if gpu.get("allowedCudaVersions") and "minCudaVersion" in gpu:
        raise Problem(400, "allowedCudaVersions and minCudaVersion cannot both be set")
    if "cpu" in body and "persistent" in mounts:
        raise Problem(400, "mounts.persistent is not supported on CPU pods")
    if "templateId" in body:
        raise Problem(404, f"template not found: {body['templateId']}")


def patch(body: object) -> None:
    """Check a ``PATCH /v2/pods/{id}`` body (only the fields the fake applies)."""
    if not isinstance(body, dict):
        raise unprocessable(["$: value must be an object"])
    errors = _extra("$", body, _PATCH_KEYS)
    if "name" in body and (not isinstance(body["name"], str) or not body["name"]):
        errors.append("$.name: must be a non-empty string")
    if "locked" in body and not isinstance(body["locked"], bool):
        errors.append("$.locked: value must be a boolean")
    errors += _types({k: v for k, v in body.items() if k in ("image", "disk", "ports", "env")})
    if errors:
        raise unprocessable(errors)


def action(body: object) -> str:
    """The action of a ``POST /v2/pods/{id}/action`` body, or ``Problem`` 422."""
    if not isinstance(body, dict):
        raise unprocessable(["$: value must be an object"])
    errors = _extra("$", body, {"action"})
    if "action" not in body:
        errors.append("$: missing property 'action'")
    elif body["action"] not in ACTIONS:
        errors.append("$.action: value must be one of " + ", ".join(f"'{a}'" for a in ACTIONS))
    if errors:
        raise unprocessable(errors)
    return str(body["action"])


def ssh_keys(body: object) -> list[str]:
    """The keys of a ``PUT /v2/account/ssh-keys`` body, or ``Problem`` 422."""
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise unprocessable(["$: missing property 'keys'"])
    errors = _extra("$", body, {"keys"})
    keys = body["keys"]
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not SSH_KEY.match(key):
            errors.append(f"$.keys[{i}]: does not match pattern '{SSH_KEY.pattern}'")
    if errors:
        raise unprocessable(errors)
    return [str(k) for k in keys]
