"""bench.gpu_check without a GPU: one line and at once; its verdicts and table; a CPU smoke run of its sections; on a
GPU (marker ``gpu``), the model-only helper it times with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.check_guard import Budget
from bench.gpu_targets import Verdict, all_met, evaluate, summary, table

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_one_line_at_once():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert time.perf_counter() - t0 < 5.0
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and "no CUDA device" in done.stdout and "not measured" in done.stdout


def test_verdicts_from_figures():
    figures = {
        "identity_1080p_fps": 95.0, "libx264_1080p_fps": 100.0,  # 0.95x: met
        "johnson_fp16_1080p_fps": 70.0, "encoder_1080p_fps": 400.0, "johnson_fp16_1080p_model_fps": 100.0,  # 0.7x
        "johnson_360p_veryfast_fps": 250.0,
    }  # fmt: skip
    verdicts = evaluate(figures)
    assert [v.met for v in verdicts] == [True, False, True, None, None, None]  # training, consistency not measured
    assert verdicts[0].measured == "0.95x" and verdicts[1].measured == "0.70x"
    assert [v.status for v in verdicts][:4] == ["met", "NOT met", "met", "not measured"]
    assert not all_met(verdicts) and all_met([Verdict("a", "", "1", True)])
    assert [v.met for v in evaluate({})] == [None] * 6
    # The stage's cost is met under its bound, not over it.
    cost = evaluate({"consistency_light_1080p_ratio": 1.25, "consistency_johnson_1080p_ratio": 1.31})[4:]
    assert [(v.measured, v.status) for v in cost] == [("1.25x", "met"), ("1.31x", "NOT met")]


def test_table_lists_every_target_with_its_status():
    text = table(evaluate({"johnson_360p_veryfast_fps": 150.0, "train_johnson_bf16_ips": 320.0}))
    lines = text.splitlines()
    assert lines[0].split() == ["target", "required", "measured", "status"] and set(lines[1]) <= {"-", " "}
    assert len(lines) == 8
    assert "150.00" in lines[4] and lines[4].endswith("NOT met")
    assert "320.00" in lines[5] and lines[5].endswith("met") and not lines[5].endswith("NOT met")
    assert lines[2].endswith("not measured") and lines[3].endswith("not measured")


def test_report_lists_tests_figures_and_targets():
    results = {
        "machine": {"gpus": ["NVIDIA H100"], "host_cores": 16},
        "gpu_tests": {"exit": 1, "passed": 10, "failed": 1, "failures": ["FAILED tests/x.py::test_y"]},
        "model_only": [{"network": "johnson", "size": "4K", "precision": "fp16", "batch": 4, "fps": 50.0},
                       {"network": "light", "size": "4K", "precision": "bf16", "status": "not run: time"}],
        "end_to_end": [{"network": "identity", "size": "1080p", "encoder": "libx264", "fps": {"median": 90.0}}],
        "training": [{"variant": "bf16", "temporal": False, "images_per_sec": 310.0}],
        "multi_gpu": {"gpus": 2, "files": 4, "written": 4, "seconds": 9.5, "devices_used": ["cuda:0", "cuda:1"],
                      "exit": 0},
        "figures": {"identity_1080p_fps": 90.0, "libx264_1080p_fps": 100.0, "train_johnson_bf16_ips": 310.0},
    }  # fmt: skip
    text = summary(results)
    assert "NVIDIA H100; 16 host cores" in text and "10 passed, 1 failed" in text and "FAILED tests/x.py" in text
    assert "johnson  4K    fp16 50.0 frames/s (batch 4)" in text and "not run: time" in text
    assert "90.0 frames/s" in text and "310.0 images/s" in text and "4/4 written" in text and "cuda:1" in text
    assert text.splitlines()[-6].startswith("identity 1080p e2e") and text.splitlines()[-6].endswith("met")


def test_budget_carries_what_a_section_leaves():
    budget = Budget(100.0)
    budget.open(0.1)
    assert 9.0 < budget.left() <= 10.0
    budget.open(0.1)  # the unused 10 s of the first section carry over
    assert 19.0 < budget.left() <= 20.0


@pytest.mark.gpu
def test_the_model_only_helper_times_a_network_on_cuda():
    """The model-only helper bench.gpu_check uses runs on this GPU (a smoke test of the check itself)."""
    from bench.runtime_speed import measure_model_fps
    from inference.model.networks import build_network

    t0 = time.perf_counter()
    row = measure_model_fps(build_network("light"), 360, 640, 8, "cuda", "fp16", backend="torch", min_time=0.1)
    assert row["status"] == "ok" and row["fps"] > 0 and time.perf_counter() - t0 < 60
