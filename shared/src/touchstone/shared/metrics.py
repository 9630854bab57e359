"""Prometheus metrics helpers: one registry per process and the few shapes we use."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(f"touchstone_{name}", doc, labels, registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(f"touchstone_{name}", doc, labels, registry=REGISTRY)


def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(f"touchstone_{name}", doc, labels, registry=REGISTRY, buckets=LATENCY_BUCKETS)


def render() -> bytes:
    """The registry in the Prometheus text format (for an HTTP ``/metrics`` route)."""
    return generate_latest(REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on its own port (for services without an HTTP API)."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)
