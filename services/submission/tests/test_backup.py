"""Backup and restore round trip, as an operator runs it: real events through the API on one
nats-server, ``touchstone backup``, ``touchstone restore`` into a fresh nats-server,
``touchstone projections rebuild`` into a new store, and the restored API answers the same.
Then a hostile or damaged file is refused before anything is written."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from touchstone.shared import events as ev
from touchstone.shared.backup import BackupError, read_backup, restore
from touchstone.shared.jetstream import connect
from touchstone.shared.natsserver import NatsServer
from touchstone.shared.rebuild import evaluation_rows

METRICS = {"prediction_interval": 15, "long": {"roc_auc": 0.61, "sharpe": 1.2, "verdict": "good"},
           "short": {"roc_auc": 0.53, "sharpe": 0.4}}


async def touchstone(tmp_path: Path, nats_url: str, ns: str, *args: str, store: str = "none.db") -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TOUCHSTONE_NATS_URL": nats_url,
           "TOUCHSTONE_NAMESPACE": ns, "TOUCHSTONE_DATA_DIR": str(tmp_path / "cli"),
           "TOUCHSTONE_STORE_URL": f"sqlite:///{tmp_path / store}"}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "touchstone.cli", *args],
                                   capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def history(api) -> str:
    """A submission trained end to end, one rejected, a token and a setting changed."""
    sid = await api.submit(api.alice)
    await api.validated(sid)
    r = await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json={"prediction_intervals": [15]})
    assert r.status_code in (200, 202), r.text
    await api.caught_up()  # 202: accepted, the read model follows the record
    scheduled = await api.deps.store.get_submission(sid)
    assert scheduled is not None and scheduled.schedule is not None
    tid, key = "pi-15", f"{sid}-pi-15"
    common = {"aggregate_id": key, "correlation_id": sid, "submission_id": sid, "task_id": tid}
    queued = ev.TaskQueued(**common, kind="training", prediction_interval=15,
                           spec=ev.TaskSpec(git_url="https://github.com/org/fs.git", trainer_ref="v3"))
    finished = ev.TrainingFinished(**common, attempt=1, metrics=METRICS, cost_usd=0.42)
    await api.record(
        queued, ev.TaskAssigned(**common, attempt=1, platform="onprem", placement="gpu-a/0"),
        ev.ContainerLaunched(**common, attempt=1, container_name=f"touchstone-{sid}-{tid}-1"),
        ev.ContainerReady(**common, attempt=1), ev.TrainingStarted(**common, attempt=1), finished,
        ev.SubmissionStarted(aggregate_id=sid, correlation_id=sid),  # the scheduler's roll-up
        ev.SubmissionCompleted(aggregate_id=sid, correlation_id=sid),
    )
    created = ev.SubmissionCreated(aggregate_id=sid, correlation_id=sid, owner="alice", name=scheduled.name,
                                   git_url=scheduled.git_url)
    await api.deps.store.put_evaluations(evaluation_rows(finished, queued, created))  # the results service
    rejected = await api.submit(api.bob)
    await api.validated(rejected, passed=False)
    assert (await api.admin.post("/api/v1/tokens", json={"user": "carol", "role": "user"})).status_code == 201
    assert (await api.admin.patch("/api/v1/system", json={"runpod_max_running_tasks": 3})).status_code == 200
    return sid


async def answers(api, sid: str) -> dict[str, object]:
    """What people see: lists, one submission, tasks, evaluations, the leaderboard, settings."""
    got: dict[str, object] = {}
    for name, client, path in (
        ("alice list", api.alice, "/api/v1/submissions"), ("admin list", api.admin, "/api/v1/submissions"),
        ("one", api.alice, f"/api/v1/submissions/{sid}"), ("tasks", api.admin, "/api/v1/tasks"),
        ("evaluations", api.admin, "/api/v1/evaluations"), ("leaderboard", api.admin, "/api/v1/leaderboard"),
        ("system", api.admin, "/api/v1/system"),
    ):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        if isinstance(body, dict):
            body.pop("revision", None)  # a KV revision is the broker's, not the record's
        got[name] = body
    return got


async def test_backup_restore_into_a_fresh_broker_and_rebuild_answers_the_same(api, make_api, tmp_path) -> None:
    sid = await history(api)
    before = await answers(api, sid)
    assert before["one"]["status"] == "COMPLETED" and len(before["evaluations"]["items"]) == 2
    ns = api.deps.subjects.ns
    file = tmp_path / "backup.jsonl"
    out = await touchstone(tmp_path, api.settings.nats_url, ns, "backup", str(file))
    assert "written to" in out and oct(file.stat().st_mode & 0o777) == "0o600"
    events = await api.events_in_stream()
    assert f"stream events: {events} messages" in out

    fresh = NatsServer(tmp_path / "fresh")
    fresh.start()
    try:
        out = await touchstone(tmp_path, fresh.url, ns, "restore", str(file), "--no-rebuild")
        assert f"restored namespace {ns}" in out
        nc2 = await connect(fresh.url, "restored")
        try:
            restored = await make_api(on=(fresh.url, nc2, nc2.jetstream()), db="restored.db", run_projector=False)
            assert (await restored.events_in_stream()) == events
            assert (await restored.alice.get("/api/v1/submissions")).json()["items"] == []  # not rebuilt yet
            out = await touchstone(tmp_path, fresh.url, ns, "projections", "rebuild", store="restored.db")
            assert f"from {events} events (2 evaluation rows)" in out
            after = await answers(restored, sid)
            # a token made before the backup signs in to the restored instance
            tokens = (await restored.admin.get("/api/v1/tokens")).json()
            assert "carol" in json.dumps(tokens)
            # and nothing can be restored on top of it
            with pytest.raises(BackupError, match="already holds"):
                await restore(nc2.jetstream(), file)
        finally:
            await nc2.close()
    finally:
        fresh.stop()
    assert after == before


def test_a_damaged_or_hostile_backup_is_refused_whole(tmp_path) -> None:
    good = [
        {"format": "touchstone-backup", "version": 1, "namespace": "ns1", "created_at": "2026-01-01T00:00:00Z",
         "streams": {"events": {"last_seq": 1, "messages": 1}, "deadletter": {"last_seq": 0, "messages": 0}},
         "buckets": {"system": {"description": "", "history": 5, "ttl_s": None}}},
        {"t": "msg", "stream": "events", "seq": 1, "subject": "ns1.evt.submission.s-1.SubmissionCreated",
         "headers": {"Nats-Msg-Id": "x"}, "data": base64.b64encode(b"{}").decode()},
        {"t": "kv", "bucket": "system", "key": "system", "value": base64.b64encode(b"{}").decode()},
    ]

    def write(name: str, lines: list[dict], *, end: bool = True, tamper=None) -> Path:
        import hashlib
        raw = [json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines]
        digest = hashlib.sha256(b"".join(raw)).hexdigest()
        if tamper:
            raw = tamper(raw)
        if end:
            raw.append(json.dumps({"t": "end", "records": len(lines), "sha256": digest}).encode() + b"\n")
        path = tmp_path / name
        path.write_bytes(b"".join(raw))
        return path

    contents = read_backup(write("good", good))
    assert contents.header.namespace == "ns1" and len(contents.messages) == 1 and len(contents.keys) == 1

    def with_line(i: int, **change: object) -> list[dict]:
        lines = [dict(line) for line in good]
        lines[i] = {**lines[i], **change}
        return lines

    cases = {
        "truncated": (write("cut", good, end=False), "truncated"),
        "altered": (write("alt", good, tamper=lambda r: [r[0], r[1].replace(b"s-1", b"s-2"), r[2]]), "altered"),
        "version": (write("v9", with_line(0, version=9)), "version 9"),
        "other namespace": (write("ns", with_line(1, subject="other.evt.submission.s-1.X")), "outside"),
        "wildcard": (write("wild", with_line(1, subject="ns1.evt.>")), "outside"),
        "commands": (write("cmd", with_line(1, subject="ns1.cmd.runpod-provider.LaunchTask")), "outside"),
        "stream": (write("stream", with_line(1, stream="logs")), "record 2"),
        "bucket": (write("bucket", with_line(2, bucket="scheduler")), "record 3"),
        "unlisted bucket": (write("unlisted", with_line(2, bucket="tokens")), "does not list"),
        "key": (write("key", with_line(2, key="system.>")), "record 3"),
        "header": (write("hdr", with_line(1, headers={"X\r\nInjected": "1"})), "record 2"),
        "base64": (write("b64", with_line(1, data="not base64!")), "record 2"),
        "extra field": (write("extra", with_line(1, exec="rm -rf /")), "record 2"),
        "beyond header": (write("seq", with_line(1, seq=7)), "beyond"),
        "huge line": (write("huge", with_line(1, data="A" * (3 * 1024 * 1024))), "longer than"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(BackupError, match=message):
            read_backup(path)
            pytest.fail(f"{name}: read")
