"""``/healthz``, ``/readyz`` and ``/metrics`` of a service process without an HTTP API.

- ``/healthz`` (liveness): the process's event loop answers within a few seconds. A wedged
  loop fails it, so an orchestrator restarts the process.
- ``/readyz`` (readiness): every check passes: NATS connected, the store answers, and each
  long-running loop of the process (consumers, feeds) is running; a 503 names the failed part.
- ``/metrics``: the Prometheus registry.

The listener runs in its own thread (prometheus_client's WSGI server), not on the event loop:
a loop that stops answering is reported as such instead of taking its health check down with
it. Checks themselves run on the loop (``run_coroutine_threadsafe``), where the state they read
lives.

Loops mark themselves with ``LOOPS.running(name)``; a loop that ended, by an error or
otherwise, makes the process unready until it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import ThreadingWSGIServer
from touchstone.shared import metrics

log = logging.getLogger(__name__)

Checks = Callable[[], Awaitable[dict[str, Any]]]
"""Returns check name -> ``True`` (passed) or a reason (failed)."""

ANSWER_WITHIN_S = 5.0


class Loops:
    """The long-running loops of this process and whether each still runs."""

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[None]:
        self._state[name] = True
        try:
            yield
        except BaseException as e:
            self._state[name] = f"stopped: {type(e).__name__}: {e}"[:200]
            raise
        else:
            self._state[name] = "stopped"

    def checks(self) -> dict[str, Any]:
        return {f"loop:{name}": state for name, state in self._state.items()}

    def clear(self) -> None:
        self._state.clear()


LOOPS = Loops()


def status(checks: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    ok = all(v is True for v in checks.values())
    return (200 if ok else 503), {"status": "ok" if ok else "unavailable", "checks": checks}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds are noise
        return


class HealthServer:
    """The three routes on ``host:port`` (``port=0``: a free port, see ``port``)."""

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop, ready: Checks) -> None:
        self.loop = loop
        self.ready = ready
        self._server = make_server(host, port, self._app, ThreadingWSGIServer, handler_class=_Quiet)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)",
                 self._server.server_address[0], self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _on_loop(self, check: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        async def bounded() -> dict[str, Any]:
            return await asyncio.wait_for(check(), ANSWER_WITHIN_S)

        try:
            return asyncio.run_coroutine_threadsafe(bounded(), self.loop).result(ANSWER_WITHIN_S + 1)
        except Exception as e:
            return {"event_loop": f"no answer: {type(e).__name__}: {e}"}

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, 405, b"method not allowed\n", "text/plain")
        if path == "/metrics":
            return _reply(start_response, 200, metrics.render(), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            async def answer() -> dict[str, Any]:
                return {"event_loop": True}

            code, body = status(self._on_loop(answer))
        elif path == "/readyz":
            code, body = status(self._on_loop(self.ready))
        else:
            return _reply(start_response, 404, b"not found\n", "text/plain")
        return _reply(start_response, code, json.dumps(body).encode(), "application/json")


def _reply(start_response: Callable[..., Any], code: int, body: bytes, media_type: str) -> list[bytes]:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[code]
    start_response(f"{code} {reason}", [("Content-Type", media_type), ("Content-Length", str(len(body))),
                                        ("Cache-Control", "no-store")])
    return [body]
