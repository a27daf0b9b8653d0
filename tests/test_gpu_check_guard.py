"""bench.gpu_check returns what it measured: the JSON after every row, sections that survive SystemExit and
overruns, budgets enforced inside rows, the GPU tests' process group killed whole; and its CPU dry run."""

from __future__ import annotations

import json
import os
import time

import pytest

from bench import gpu_check, gpu_plan, gpu_sections
from bench.check_guard import Budget, Report, RowTimeout, guarded, run_group
from inference.core.errors import UserError


def test_report_is_on_disk_after_every_row(tmp_path):
    report = Report(tmp_path / "r.json", figures={})
    report.save()
    report.add("rows", {"fps": 1.0})
    assert json.loads(report.path.read_text())["rows"] == [{"fps": 1.0}]
    report.add("rows", {"fps": 2.0})
    assert [r["fps"] for r in json.loads(report.path.read_text())["rows"]] == [1.0, 2.0]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_section_ending_in_systemexit_keeps_its_rows_and_the_next_section_runs(tmp_path):
    report = Report(tmp_path / "r.json", errors={})

    def dies() -> None:
        report.add("rows", {"done": 1})
        try:
            raise UserError("bad option")
        except UserError as exc:
            raise SystemExit(str(exc)) from None  # what a CLI main turns a UserError into

    guarded("first", dies, report)
    guarded("second", lambda: report.add("rows", {"done": 2}), report)
    saved = json.loads(report.path.read_text())
    assert [r["done"] for r in saved["rows"]] == [1, 2]
    assert saved["errors"] == {"first": "SystemExit: bad option"}
    assert set(saved["section_seconds"]) == {"first", "second"}


def test_ctrl_c_still_stops_the_check(tmp_path):
    report = Report(tmp_path / "r.json", errors={})

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guarded("s", interrupted, report)
    assert json.loads(report.path.read_text())["section_seconds"]["s"] >= 0  # saved on the way out


def test_a_row_is_stopped_at_its_sections_deadline():
    budget = Budget(100.0)
    budget.open(0.005)  # 0.5 s
    t0 = time.monotonic()
    with pytest.raises(RowTimeout):
        with budget.row():
            time.sleep(5)
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(RowTimeout):  # nothing left: the next row does not start
        with budget.row():
            pass


def test_a_row_that_fits_leaves_no_alarm_behind():
    budget = Budget(100.0)
    budget.open(0.5)
    with budget.row():
        pass
    time.sleep(0.1)  # an alarm left armed would fire in later code


def test_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "grandchild.pid"
    cmd = ["bash", "-c", f"sleep 60 & echo $! > {marker}; wait"]
    t0 = time.monotonic()
    code, _ = run_group(cmd, tmp_path, 1.0, tmp_path / "log")
    assert code == "timeout" and time.monotonic() - t0 < 10
    pid = int(marker.read_text())
    deadline = time.monotonic() + 10  # killed at once; reaped by whoever inherited it (a zombie answers kill 0)
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid)  # the shell's child went with it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_multi_gpu_is_not_run_on_one_gpu(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    report = Report(tmp_path / "r.json", figures={}, errors={})
    ctx = gpu_plan.Context(gpu_plan.FULL, Budget(60.0), report, tmp_path)
    gpu_sections.multi_gpu(ctx)
    assert report["multi_gpu"] == {"gpus": 1, "status": "not run: one GPU visible"}


def test_the_plan_measures_the_default_command():
    rows = gpu_plan.FULL.e2e_rows
    for network in ("light", "johnson"):
        levels = {row[5] for row in rows if row[:2] == (network, "1080p")}
        assert levels == {0.0, gpu_plan.DEFAULT_CONSISTENCY}, network
    assert gpu_plan.DEFAULT_CONSISTENCY == 0.8
    assert list(gpu_sections.SECTIONS)[-1] == "gpu_tests"
    assert gpu_plan.SHIPPED_ARTIFACT.is_file()


def test_360p_rows_read_a_360p_source(tmp_path):
    import av

    report = Report(tmp_path / "r.json")
    ctx = gpu_plan.Context(gpu_plan.DRY, Budget(60.0), report, tmp_path)
    with av.open(str(ctx.clip("360p"))) as container:
        stream = container.streams.video[0]
        assert (stream.height, stream.width) == gpu_plan.DRY.sizes["360p"]
    assert ctx.clip("360p") == ctx.clip("360p")  # made once


def test_unknown_section_is_one_line(capsys):
    assert gpu_check.main(["--dry-run", "--sections", "model_only,nope"]) == 2
    assert capsys.readouterr().out.count("\n") == 1


@pytest.mark.slow
def test_dry_run_runs_every_section_on_the_cpu_in_under_two_minutes(tmp_path):
    """The script's own code paths, every section, at tiny sizes: the first GPU window must not be spent on a typo."""
    t0 = time.monotonic()
    code = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    seconds = time.monotonic() - t0
    result = json.loads((tmp_path / "gpu-check-cpu.json").read_text())
    assert result["errors"] == {}, result["errors"]
    assert seconds < 120, seconds
    assert code == 1  # the targets are GPU figures: not measured on the CPU
    assert set(result["section_seconds"]) == set(gpu_sections.SECTIONS)
    assert all(r.get("status") == "ok" and r["fps"] > 0 for r in result["model_only"]), result["model_only"]
    e2e = result["end_to_end"]
    assert [r["consistency"] for r in e2e] == [0.0, 0.8] and all(r["fps"]["median"] > 0 for r in e2e)
    assert "network" in e2e[0]["table"] and e2e[1]["flow"].startswith("OpenCV DIS")
    assert result["encoders_alone_1080p"]["libx264"] > 0
    assert [r["network"] for r in result["consistency"]] == ["light", "shipped light"]
    assert all(r["ratio"] > 0 for r in result["consistency"])
    assert len(result["training"]) == 1 and all(r["images_per_sec"] > 0 for r in result["training"])
    assert result["multi_gpu"]["written"] == result["multi_gpu"]["files"] == 2
    assert result["gpu_tests"]["exit"] == 0 and result["gpu_tests"]["failures"] == []
    assert len(result["verdicts"]) == 6


def test_a_section_out_of_time_marks_its_rows_not_run_and_raises_nothing(tmp_path):
    report = Report(tmp_path / "r.json", figures={}, errors={})
    budget = Budget(100.0)
    budget.open(0.0)  # nothing left
    ctx = gpu_plan.Context(gpu_plan.DRY, budget, report, tmp_path)
    guarded("end_to_end", lambda: gpu_sections.end_to_end(ctx), report)
    guarded("multi_gpu", lambda: gpu_sections.multi_gpu(ctx), report)
    assert report["errors"] == {}
    assert {r["status"] for r in report["end_to_end"]} == {"not run: time"}
    assert report["encoders_alone_1080p"] == {"status": "not run: time"}
    assert report["multi_gpu"]["status"] == "not run: time"
