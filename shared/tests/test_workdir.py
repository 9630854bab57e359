"""Reads of a hostile work directory (``touchstone.shared.workdir``) and the console splitter:
every planted link, special file and oversized file is refused, on the real filesystem."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from touchstone.shared import workdir
from touchstone.shared.attempt import judge_exit, run_deadline
from touchstone.shared.console import split_console
from touchstone.shared.reports import parse_report
from touchstone.shared.workdir import Budget, Refused


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    (folder / "out" / "models" / "sub").mkdir(parents=True)
    (folder / "out" / "models" / "long.json").write_text("{}")
    (folder / "out" / "models" / "sub" / "short.json").write_text("{}")
    return folder


def test_links_anywhere_on_the_path_are_refused(work: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    (secret / "models").mkdir(parents=True)
    (secret / "models" / "theirs.bin").write_text("another attempt's model")
    (secret / "metrics.json").write_text('{"theirs": 1}')
    os.symlink(secret, work / "linked")
    os.symlink(secret / "metrics.json", work / "out" / "metrics.json")
    with pytest.raises(Refused):
        workdir.read_bounded(work, "linked/metrics.json", 100)
    assert workdir.read_json(work, "out/metrics.json") is None
    budget = Budget(total_bytes=1 << 20, file_bytes=1 << 20)
    assert workdir.copy_tree(work, "linked/models", tmp_path / "dest", budget) == []
    assert not (tmp_path / "dest").exists() and budget.skipped
    with pytest.raises(Refused):
        workdir.read_bounded(work, "../secret/metrics.json", 100)


def test_special_files_are_never_opened(work: Path, tmp_path: Path) -> None:
    models = work / "out" / "models"
    os.mkfifo(models / "fifo.bin")
    os.symlink("/dev/zero", models / "zero.bin")
    if os.geteuid() == 0:  # a real device node (a task without CAP_MKNOD cannot make one)
        os.mknod(models / "null.bin", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    budget = Budget(total_bytes=1 << 20, file_bytes=1 << 20)
    done: list[list[str]] = []
    reader = threading.Thread(target=lambda: done.append(workdir.copy_tree(work, "out/models", tmp_path / "d", budget)))
    reader.start()
    reader.join(10)
    assert done == [["long.json", "sub/short.json"]], "the reader blocked on a FIFO"
    assert {line.split(":")[0] for line in budget.skipped} >= {"fifo.bin", "zero.bin"}
    with pytest.raises(Refused):
        workdir.open_regular(work, "out/models/fifo.bin")


def test_a_sparse_10_gb_file_costs_a_stat_and_a_growing_file_is_refused(work: Path, tmp_path: Path) -> None:
    with (work / "out" / "models" / "huge.bin").open("wb") as f:
        f.truncate(10 << 30)
    budget = Budget(total_bytes=1 << 20, file_bytes=1 << 20)
    assert workdir.copy_tree(work, "out/models", tmp_path / "d", budget) == ["long.json", "sub/short.json"]
    assert not (tmp_path / "d" / "huge.bin").exists()
    assert any("10737418240 bytes" in line for line in budget.skipped)
    fd = workdir.open_regular(work, "out/models/long.json")
    try:
        os.truncate(work / "out" / "models" / "long.json", 5000)  # grows after its size was looked at
        assert workdir.copy_out(fd, tmp_path / "copy", 100) is None
        assert not (tmp_path / "copy").exists()
        assert workdir.copy_out(fd, tmp_path / "head", 100, head=True) == 100
    finally:
        os.close(fd)


def test_tails_and_json_are_bounded(work: Path) -> None:
    (work / "big.log").write_bytes(b"a" * (50 << 20) + b"\nlast line\n")
    tail = workdir.tail_lines(work, "big.log", 5)
    assert tail[-1] == "last line" and all(len(line) < 2100 for line in tail)
    (work / "out" / "report.json").write_text('{"x": "' + "y" * 2_000_000 + '"}')
    assert workdir.read_json(work, "out/report.json") is None


def test_private_files_are_never_written_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file")
    os.symlink(victim, tmp_path / "state.json.partial")
    workdir.write_private(tmp_path / "state.json", b"{}")
    assert victim.read_text() == "host file" and (tmp_path / "state.json").read_text() == "{}"


def test_an_overlong_line_is_cut_once_and_its_rest_skipped() -> None:
    limit = 1000
    first = b"x" * limit
    consumed, got = split_console(first, final=False, cutting=False, limit=limit, max_line=200)
    assert consumed == limit and got.cutting is True and len(got.lines) == 1 and got.lines[0].endswith("bytes cut]")
    consumed, got = split_console(b"x" * limit, final=False, cutting=True, limit=limit)
    assert consumed == limit and got.lines == [] and got.cutting is None
    consumed, got = split_console(b"xx\nnext\npart", final=False, cutting=True, limit=limit)
    assert got.lines == ["next"] and got.cutting is False and consumed == len(b"xx\nnext\n")
    consumed, got = split_console(b"part", final=True, cutting=False, limit=limit)
    assert got.lines == ["part"] and consumed == 4


def test_one_judge_and_deadlines() -> None:
    assert judge_exit(0, "training", None).succeeded
    assert not judge_exit(0, "validation", None).succeeded
    verdict = parse_report({"passed": False, "duration_s": 1.0,
                            "checks": [{"name": "imports", "passed": False, "detail": "no module x"}]})
    assert judge_exit(1, "validation", verdict).succeeded
    assert judge_exit(1, "validation", None, "report.json is not a valid report").failure_class == "trainer"
    assert judge_exit(2, "training", None).failure_class == "trainer"
    assert judge_exit(None, "training", None).failure_class == "infrastructure"
    validation = run_deadline("validation", 5, 900, 3600)
    assert validation.seconds == 900 and "validation run deadline of 900s" in validation.error()
    assert run_deadline("training", 120, 900, 3600).seconds == 120
    assert "training_timeout_s default" in run_deadline("training", None, 900, 3600).error()
