"""RunPod REST v2 client: our models in, our models and errors out.

    from touchstone.runpod_provider.api import RunpodApiClient, PodSpec

    async with RunpodApiClient(base_url, api_key, graphql_url=..., max_retries=3) as api:
        pod = await api.create_pod(PodSpec(name=..., image=..., gpu_type_id=..., public_key=...))

``models`` holds what callers see, ``errors`` the RunPod-specific error classes (all in
Touchstone's one tree), ``parse`` the only code that reads RunPod JSON, ``client`` the edge.
"""

from .client import DEFAULT_BASE_URL, DEFAULT_GRAPHQL_URL, RunpodApiClient
from .errors import (
    BadResponseError,
    CreateUncertainError,
    ForbiddenError,
    PaymentRequiredError,
    PodStateConflictError,
    WrongApiError,
)
from .models import Balance, Cloud, GpuType, Pod, PodSpec, PodStatus, SshEndpoint, Stock
from .parse import STATUS_MAP

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_GRAPHQL_URL",
    "STATUS_MAP",
    "BadResponseError",
    "Balance",
    "Cloud",
    "CreateUncertainError",
    "ForbiddenError",
    "GpuType",
    "PaymentRequiredError",
    "Pod",
    "PodSpec",
    "PodStateConflictError",
    "PodStatus",
    "RunpodApiClient",
    "SshEndpoint",
    "Stock",
    "WrongApiError",
]
