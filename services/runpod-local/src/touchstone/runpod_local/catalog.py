"""The fake's fixed GPU catalog and data centers, rendered in RunPod v2 shapes.

Prices and stock are illustrative, not RunPod's. Stock is a number of free GPUs per product
context (``POD``, ``CLUSTER``, ``SERVERLESS``) and data center, so availability depends on
what is asked: a data center with 6 free GPUs is ``MEDIUM`` for one GPU, ``LOW`` for two and
``NONE`` for eight. Each GPU type has its own CUDA versions. A no-capacity fault empties a
GPU type's stock everywhere.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .schema import GpuQuery

LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")


class DataCenter(NamedTuple):
    name: str
    country: str


DATA_CENTERS: Mapping[str, DataCenter] = {
    "US-KS-2": DataCenter("US Kansas 2", "US"),
    "US-TX-3": DataCenter("US Texas 3", "US"),
    "EU-RO-1": DataCenter("EU Romania 1", "RO"),
}


@dataclass(frozen=True)
class GpuOffer:
    """One GPU type the fake rents out."""

    id: str
    name: str
    manufacturer: str
    memory: int
    price_secure: float
    price_community: float
    max_secure: int
    max_community: int
    free: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Product → data center id → free GPUs; absent means not offered there."""
    pool: str | None = None
    price_serverless: float | None = None
    cuda: tuple[str, ...] = ()
    """CUDA versions its hosts report, newest first."""

    def offered(self, cloud: str) -> bool:
        return self.max_count(cloud) > 0

    def price(self, cloud: str) -> float:
        return self.price_secure if cloud == "SECURE" else self.price_community

    def max_count(self, cloud: str) -> int:
        return self.max_secure if cloud == "SECURE" else self.max_community


GPUS: tuple[GpuOffer, ...] = (
    GpuOffer("NVIDIA GeForce RTX 4090", "RTX 4090", "NVIDIA", 24, 0.44, 0.31, 8, 4,
             {"POD": {"US-KS-2": 64, "EU-RO-1": 2}, "SERVERLESS": {"US-KS-2": 8, "US-TX-3": 4}},
             pool="ADA_24", price_serverless=1.1, cuda=("12.8", "12.6", "12.4")),
    GpuOffer("NVIDIA RTX A6000", "RTX A6000", "NVIDIA", 48, 0.49, 0.33, 8, 8,
             {"POD": {"US-KS-2": 6, "US-TX-3": 16}}, pool="AMPERE_48", cuda=("12.4", "12.2", "11.8")),
    GpuOffer("NVIDIA H100 80GB HBM3", "H100 SXM", "NVIDIA", 80, 2.99, 2.69, 8, 0,
             {"POD": {"US-TX-3": 2}, "CLUSTER": {"US-TX-3": 16}, "SERVERLESS": {"US-TX-3": 3}},
             pool="HOPPER_141", cuda=("12.9", "12.8")),
    GpuOffer("AMD Instinct MI300X OAM", "MI300X", "AMD", 192, 2.49, 0.0, 8, 0, {}),
)

_BY_ID = {g.id: g for g in GPUS}


def find(gpu_id: str) -> GpuOffer | None:
    """The offer with this id, or None."""
    return _BY_ID.get(gpu_id)


def level(free: int, count: int) -> str:
    """Availability for pods of ``count`` GPUs where ``free`` GPUs are idle."""
    pods = free // max(count, 1)
    return "HIGH" if pods >= 8 else "MEDIUM" if pods >= 3 else "LOW" if pods >= 1 else "NONE"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def cuda_versions(offer: GpuOffer, exact: Iterable[str] = (), floor: str | None = None) -> list[str]:
    """The offer's CUDA versions within an exact set (empty: any) and above a floor."""
    wanted = set(exact)
    return [v for v in offer.cuda
            if (not wanted or v in wanted) and (floor is None or _version(v) >= _version(floor))]


def stock(offer: GpuOffer, query: GpuQuery, no_capacity: Collection[str]) -> dict[str, str]:
    """Data center → level (never ``NONE``) for the query's products, count, cloud,
    countries and CUDA versions, with the no-capacity fault applied."""
    if offer.id in no_capacity or not offer.offered(query.cloud) or query.count > offer.max_count(query.cloud):
        return {}
    if (query.cuda_versions or query.min_cuda) and not cuda_versions(offer, query.cuda_versions, query.min_cuda):
        return {}
    levels: dict[str, str] = {}
    for product in query.products or ("POD",):
        for dc, free in offer.free.get(product, {}).items():
            if query.country_codes and DATA_CENTERS[dc].country not in query.country_codes:
                continue
            found = level(free, query.count)
            if found != "NONE" and LEVELS.index(found) > LEVELS.index(levels.get(dc, "NONE")):
                levels[dc] = found
    return levels


def in_countries(offer: GpuOffer, countries: Collection[str]) -> bool:
    """Whether the offer has any data center in these countries (any, when none are named)."""
    places = {dc for by_dc in offer.free.values() for dc in by_dc}
    return not countries or any(DATA_CENTERS[dc].country in countries for dc in places)


def gpu_json(offer: GpuOffer, query: GpuQuery, no_capacity: Collection[str]) -> dict[str, Any]:
    """A v2 ``GpuType``; ``include=AVAILABILITY`` adds availability, data centers and CUDA versions."""
    body: dict[str, Any] = {
        "id": offer.id,
        "name": offer.name,
        "pool": offer.pool,
        "manufacturer": offer.manufacturer,
        "memory": offer.memory,
        "secure": offer.max_secure > 0,
        "community": offer.max_community > 0,
        "price": {"secure": offer.price_secure, "community": offer.price_community},
        "maxCount": {"secure": offer.max_secure, "community": offer.max_community},
    }
    if offer.price_serverless is not None:
        body["price"]["serverless"] = offer.price_serverless
    if not query.include:
        return body
    levels = stock(offer, query, no_capacity)
    body["availability"] = max(levels.values(), key=LEVELS.index, default="NONE")
    if levels:
        body["dataCenters"] = [
            {"id": dc, "name": DATA_CENTERS[dc].name, "availability": found} for dc, found in levels.items()
        ]
    shown = cuda_versions(offer, query.cuda_versions)
    usable = set(cuda_versions(offer, query.cuda_versions, query.min_cuda)) if levels else set()
    if shown:
        body["cudaVersions"] = [{"version": v, "available": v in usable} for v in shown]
    return body
