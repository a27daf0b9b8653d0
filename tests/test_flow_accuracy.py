"""``bench/flow_accuracy.py``: endpoint error and occlusion scores against ground truth, on a generated pair whose
flow is known exactly (the Sintel pairs it is meant for live outside the repository)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bench import flow_accuracy
from styletrain.temporal.flow import write_flo


def _pair_folder(folder, make_image, shift: int = 3):
    """frame2 is frame1 moved ``shift`` px right: flow (+shift, 0) everywhere; the last ``shift`` columns of frame1
    leave the picture (occluded), nothing is invalid."""
    folder.mkdir(parents=True)
    frame2 = make_image(64, 96, seed=4)
    frame1 = np.roll(frame2, -shift, axis=1)
    flow = np.zeros((64, 96, 2), np.float32)
    flow[..., 0] = shift
    occluded = np.zeros((64, 96), np.uint8)
    occluded[:, -shift:] = 255
    Image.fromarray(frame1).save(folder / "frame1.png")
    Image.fromarray(frame2).save(folder / "frame2.png")
    Image.fromarray(occluded).save(folder / "occlusions.png")
    Image.fromarray(np.zeros((64, 96), np.uint8)).save(folder / "invalid.png")
    write_flo(folder / "flow.flo", flow)


def test_a_perfect_estimate_scores_zero_error_and_finds_the_occlusion(tmp_path, make_image):
    _pair_folder(tmp_path / "shift", make_image)
    pair = flow_accuracy.load_pair(tmp_path / "shift")
    assert pair["visible"].sum() == 64 * 93 and pair["valid"].all()
    backward = np.zeros_like(pair["flow"])
    backward[..., 0] = -3
    scores = flow_accuracy.score(pair, pair["flow"], backward)
    assert scores["epe"] == 0.0 and scores["over_3px"] == 0.0
    assert scores["occlusion_recall"] == 1.0  # the columns that leave the frame are flagged
    wrong = flow_accuracy.score(pair, pair["flow"] + 4.0, backward)
    assert abs(wrong["epe"] - np.hypot(4.0, 4.0)) < 1e-5 and wrong["over_3px"] == 1.0


def test_the_benchmark_writes_a_row_per_pair_and_estimator(tmp_path, make_image, monkeypatch, capsys):
    _pair_folder(tmp_path / "flow" / "shift", make_image)
    monkeypatch.setattr(flow_accuracy, "hub_weights_file", lambda variant: tmp_path / "missing.pth")
    out = tmp_path / "result.json"
    assert flow_accuracy.main(["--flow-dir", str(tmp_path / "flow"), "--repeats", "1", "--out", str(out)]) == 0
    rows = {row["method"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"dis", "dis-stage", "farneback", "raft_small", "raft"}
    assert rows["dis"]["epe_visible"] < 0.5 and rows["dis"]["seconds"] > 0  # a 3 px shift is easy
    assert rows["raft"]["status"].startswith("not measured")
    assert "shift" in capsys.readouterr().out
