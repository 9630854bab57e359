"""Prometheus metrics helpers: one registry per process and the few shapes we use.

Names follow Prometheus's conventions: the ``touchstone_`` prefix, base units in the name
(``_seconds``, ``_usd``, ``_ratio``), ``_total`` on counters, labels with bounded values only
(a platform, a phase, a consumer, never a task id). ``docs/monitoring.md`` lists every family.
The registry carries the standard process, platform and GC collectors as well.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_standard)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(f"touchstone_{name}", doc, labels, registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(f"touchstone_{name}", doc, labels, registry=REGISTRY)


DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)
"""Buckets for waits and phases that last seconds to a day (queue wait, a training run)."""


def histogram(
    name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
) -> Histogram:
    return Histogram(f"touchstone_{name}", doc, labels, registry=REGISTRY, buckets=buckets)


def render() -> bytes:
    """The registry in the Prometheus text format (for an HTTP ``/metrics`` route)."""
    return generate_latest(REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on its own port (for services without an HTTP API)."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)
