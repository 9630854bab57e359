"""The fake's fixed GPU catalog and data centers, rendered in RunPod v2 shapes.

Prices and stock are illustrative, not RunPod's. Stock is per data center; a no-capacity
fault turns a GPU type's stock to ``NONE`` everywhere.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")

DATA_CENTERS: Mapping[str, str] = {
    "US-KS-2": "US Kansas 2",
    "US-TX-3": "US Texas 3",
    "EU-RO-1": "EU Romania 1",
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
    stock: Mapping[str, str] = field(default_factory=dict)
    """Data center id → ``LOW|MEDIUM|HIGH``; absent means not offered there."""
    pool: str | None = None
    price_serverless: float | None = None
    cuda: tuple[str, ...] = ("12.8", "12.6", "12.4")

    def offered(self, cloud: str) -> bool:
        return (self.max_secure if cloud == "SECURE" else self.max_community) > 0

    def price(self, cloud: str) -> float:
        return self.price_secure if cloud == "SECURE" else self.price_community

    def max_count(self, cloud: str) -> int:
        return self.max_secure if cloud == "SECURE" else self.max_community


GPUS: tuple[GpuOffer, ...] = (
    GpuOffer(
        "NVIDIA GeForce RTX 4090",
        "RTX 4090",
        "NVIDIA",
        24,
        0.44,
        0.31,
        8,
        4,
        {"US-KS-2": "HIGH", "EU-RO-1": "LOW"},
        pool="ADA_24",
        price_serverless=1.1,
    ),
    GpuOffer(
        "NVIDIA RTX A6000",
        "RTX A6000",
        "NVIDIA",
        48,
        0.49,
        0.33,
        8,
        8,
        {"US-KS-2": "MEDIUM", "US-TX-3": "HIGH"},
        pool="AMPERE_48",
    ),
    GpuOffer(
        "NVIDIA H100 80GB HBM3",
        "H100 SXM",
        "NVIDIA",
        80,
        2.99,
        2.69,
        8,
        0,
        {"US-TX-3": "LOW"},
        pool="HOPPER_141",
    ),
    GpuOffer(
        "AMD Instinct MI300X OAM",
        "MI300X",
        "AMD",
        192,
        2.49,
        0.0,
        8,
        0,
        {},
        cuda=(),
    ),
)

_BY_ID = {g.id: g for g in GPUS}


def find(gpu_id: str) -> GpuOffer | None:
    """The offer with this id, or None."""
    return _BY_ID.get(gpu_id)


def stock(offer: GpuOffer, no_capacity: Collection[str]) -> dict[str, str]:
    """Data center → level for an offer now, with the no-capacity fault applied."""
    if offer.id in no_capacity:
        return {}
    return {dc: level for dc, level in offer.stock.items() if level != "NONE"}


def gpu_json(offer: GpuOffer, *, include: bool, cloud: str, no_capacity: Collection[str]) -> dict[str, Any]:
    """A v2 ``GpuType`` object; ``include`` adds availability, data centers and CUDA versions."""
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
    if not include:
        return body
    levels = stock(offer, no_capacity) if offer.offered(cloud) else {}
    body["availability"] = max(levels.values(), key=LEVELS.index, default="NONE")
    if levels:
        body["dataCenters"] = [
            {"id": dc, "name": DATA_CENTERS[dc], "availability": level} for dc, level in levels.items()
        ]
    if offer.cuda:
        body["cudaVersions"] = [{"version": v, "available": bool(levels)} for v in offer.cuda]
    return body
