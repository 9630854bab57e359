"""Experiment tracking: one MLflow run per task attempt, or nothing when MLflow is off.

A run is tagged with the id of the ``TrainingFinished`` event it records; ``record`` looks that
tag up before creating a run, so a redelivered event finds its run instead of making a second.
A run found unfinished (a crash between creating and finishing it) is completed.

MLflow's client reads its HTTP timeout and retry count from the environment at each call;
``MlflowTracker`` sets both from its arguments, so they are declared where the client is made.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

from touchstone.results.domain import EVENT_ID_TAG, RunSpec
from touchstone.shared.errors import PermanentError, RateLimitedError, UnavailableError

BATCH_METRICS, BATCH_PARAMS, BATCH_TAGS = 1000, 100, 100


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    url: str | None = None
    created: bool = False


class Tracker(Protocol):
    async def record(self, spec: RunSpec) -> TrackedRun | None:
        """Make sure exactly one finished run holds ``spec``; ``None`` when tracking is off."""
        ...


class NullTracker:
    """MLflow off."""

    async def record(self, spec: RunSpec) -> TrackedRun | None:
        return None


class MlflowTracker:
    """Runs in one experiment of an MLflow tracking server (or any store URI MLflow accepts)."""

    def __init__(self, tracking_uri: str, experiment: str, *, timeout_s: float = 30.0, max_retries: int = 3) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, timeout_s)))
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._lock = asyncio.Lock()

    async def record(self, spec: RunSpec) -> TrackedRun | None:
        async with self._lock:  # one at a time: the client is not shared across threads
            return await asyncio.to_thread(self._call, self._record, spec)

    def find(self, event_id: str) -> Any | None:
        """The run tagged with ``event_id`` (blocking; for ``record`` and for tests)."""
        runs = self._client_().search_runs(
            [self._experiment()], filter_string=f"tags.`{EVENT_ID_TAG}` = '{event_id}'", max_results=2
        )
        return runs[0] if runs else None

    def run_url(self, run_id: str) -> str | None:
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self._experiment()}/runs/{run_id}"

    # --- blocking internals, run in a worker thread --------------------------------------

    def _client_(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _experiment(self) -> str:
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            client = self._client_()
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self._experiment_id = str(client.create_experiment(self.experiment))
                except MlflowException:  # another replica created it first
                    found = client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
            if found is not None:
                self._experiment_id = str(found.experiment_id)
        assert self._experiment_id is not None
        return self._experiment_id

    def _record(self, spec: RunSpec) -> TrackedRun:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client_()
        run = self.find(spec.event_id)
        if run is not None and run.info.status == "FINISHED":
            return TrackedRun(run.info.run_id, self.run_url(run.info.run_id))
        created = run is None
        if run is None:
            run = client.create_run(self._experiment(), tags={EVENT_ID_TAG: spec.event_id}, run_name=spec.name)
        run_id = run.info.run_id
        now_ms = int(time.time() * 1000)
        metrics = [Metric(k, v, now_ms, 0) for k, v in sorted(spec.metrics.items())]
        params = [Param(k, v) for k, v in sorted(spec.params.items())]
        tags = [RunTag(k, v) for k, v in sorted(spec.tags.items())]
        for i in range(0, len(metrics), BATCH_METRICS):
            client.log_batch(run_id, metrics=metrics[i : i + BATCH_METRICS])
        for i in range(0, len(params), BATCH_PARAMS):
            client.log_batch(run_id, params=params[i : i + BATCH_PARAMS])
        for i in range(0, len(tags), BATCH_TAGS):
            client.log_batch(run_id, tags=tags[i : i + BATCH_TAGS])
        client.set_terminated(run_id, "FINISHED")
        return TrackedRun(run_id, self.run_url(run_id), created=created)

    @staticmethod
    def _call(fn: Any, *args: Any) -> Any:
        """Map MLflow's errors to ours: 4xx is permanent, 429 and everything else retryable."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args)
        except MlflowException as e:
            status = e.get_http_status_code()  # type: ignore[no-untyped-call]
            if status == 429:
                raise RateLimitedError(f"MLflow: {e.message}") from e
            if 400 <= status < 500:
                raise PermanentError(f"MLflow {e.error_code}: {e.message}") from e
            raise UnavailableError(f"MLflow {e.error_code}: {e.message}") from e
        except OSError as e:  # connection refused, timeouts (requests' errors are OSErrors)
            raise UnavailableError(f"MLflow unreachable: {e}") from e
