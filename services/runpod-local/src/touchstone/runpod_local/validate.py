"""Request validation with RunPod v2's codes and messages (422 schema, 400 rules).

The schema checks are ``schema.py``'s strict models; the handler's rules are here.

``Problem`` is an error answer; the HTTP layer renders it as problem+json.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from . import schema

NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
LOW_BALANCE = "Your account balance is too low to rent a pod. Please add funds to your account."



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


def create(body: object) -> schema.CreatePodRequest:
    """Check a ``POST /v2/pods`` body: 422 for the schema, 400 for the handler's rules."""
    errors = schema.errors(schema.CreatePodRequest, body)
    if isinstance(body, dict) and "image" not in body and "templateId" not in body:
        errors.append("$: missing property 'image'")
    if errors:
        raise unprocessable(errors)
    request = schema.CreatePodRequest.model_validate(body)
    _rules(request)
    return request


def _rules(body: schema.CreatePodRequest) -> None:
    """The cross-field rules RunPod's handler enforces, each a 400 (templates: 404)."""
    mounts = body.mounts
    gpu = body.gpu
    if (gpu is None) == (body.cpu is None):
        raise Problem(400, "exactly one of gpu or cpu must be set")
    if mounts is not None and mounts.persistent is not None and mounts.network is not None:
        raise Problem(400, "at most one of mounts.persistent and mounts.network may be set")
    if gpu is not None and gpu.allowedCudaVersions and gpu.minCudaVersion is not None:
        raise Problem(400, "allowedCudaVersions and minCudaVersion cannot both be set")
    if body.cpu is not None and mounts is not None and mounts.persistent is not None:
        raise Problem(400, "mounts.persistent is not supported on CPU pods")
    if body.templateId is not None:
        raise Problem(404, f"template not found: {body.templateId}")


def patch(body: object) -> schema.UpdatePodRequest:
    """Check a ``PATCH /v2/pods/{id}`` body against ``UpdatePodRequest`` (422)."""
    errors = schema.errors(schema.UpdatePodRequest, body)
    if errors:
        raise unprocessable(errors)
    return schema.UpdatePodRequest.model_validate(body)


def action(body: object) -> str:
    """The action of a ``POST /v2/pods/{id}/action`` body, or ``Problem`` 422."""
    errors = schema.errors(schema.PodActionRequest, body)
    if errors:
        raise unprocessable(errors)
    return schema.PodActionRequest.model_validate(body).action


def gpu_query(query: Mapping[str, str]) -> schema.GpuQuery:
    """The catalog's query: 422 for the schema, then its 400 rules."""
    parsed, errors = schema.gpu_query(query)
    if errors:
        raise unprocessable(errors)
    if parsed.include and "product" not in parsed.given:
        raise Problem(400, "product is required when include=AVAILABILITY")
    if not parsed.include and parsed.given:
        raise Problem(400, "product, count, cloud, countryCodes and CUDA filters need include=AVAILABILITY")
    if {"cudaVersions", "minCudaVersion"} <= parsed.given:
        raise Problem(400, "cudaVersions and minCudaVersion cannot both be set")
    return parsed


def include_cluster_pods(query: Mapping[str, str]) -> bool:
    """``listPods``'s one parameter, or ``Problem`` 422."""
    value, errors = schema.boolean(query, "includeClusterPods")
    if errors:
        raise unprocessable(errors)
    return value


def ssh_keys(body: object) -> list[str]:
    """The keys of a ``PUT /v2/account/ssh-keys`` body, or ``Problem`` 422."""
    errors = schema.errors(schema.UpdateSshKeysRequest, body)
    if errors:
        raise unprocessable(errors)
    return schema.UpdateSshKeysRequest.model_validate(body).keys
