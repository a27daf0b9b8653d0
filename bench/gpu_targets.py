"""The GPU targets of ``python -m bench.gpu_check``, its summary table and printed report: pure functions of the
measured figures, so that the verdicts and the report are tested without a GPU (tests/test_gpu_check.py).

Targets of the GPU path, each on one H100-class GPU with 16 host cores:

* identity at 1080p end to end >= 0.9x libx264 encoding alone (same preset): the pipeline around the network costs
  at most 10 % of what the encoder allows;
* johnson fp16 at 1080p end to end >= 0.8x min(encoder alone, johnson fp16 model only): the slowest stage bounds;
* johnson at 360p end to end >= 200 frames/s with ``--preset veryfast``;
* training johnson at 256 px in bf16-mixed >= 300 images/s (the best of with and without compile, temporal loss off;
  the temporal-on figures are in the JSON beside it).

Targets of the device consistency stage: at its default (0.8) it costs <= 1.3x the per-frame time without it, at
1080p with light and with johnson (frames in memory: network, flow and stage only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One target: what it asks, what was measured, and whether it is met (``None``: not measured)."""

    name: str
    required: str
    measured: str
    met: bool | None

    @property
    def status(self) -> str:
        return "not measured" if self.met is None else ("met" if self.met else "NOT met")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _verdict(name: str, required: str, value: float | None, threshold: float, unit: str, most: bool = False) -> Verdict:
    """Met when ``value >= threshold`` (or ``<=`` with ``most``: a cost that must stay under a bound)."""
    if value is None:
        return Verdict(name, required, "not measured", None)
    return Verdict(name, required, f"{value:.2f}{unit}", value <= threshold if most else value >= threshold)


def evaluate(figures: dict[str, Any]) -> list[Verdict]:
    """The verdict of every target from the figures ``bench.gpu_check`` measured (missing keys: not measured).

    Args:
        figures: ``identity_1080p_fps``, ``libx264_1080p_fps`` (libx264 alone, same preset),
            ``johnson_fp16_1080p_fps``, ``encoder_1080p_fps`` (the encoder johnson's run used, alone),
            ``johnson_fp16_1080p_model_fps``, ``johnson_360p_veryfast_fps``, ``train_johnson_bf16_ips``,
            ``consistency_light_1080p_ratio``, ``consistency_johnson_1080p_ratio`` (ms per frame at consistency 0.8
            over ms per frame at 0).
    """
    f = figures.get
    bound = None
    if f("encoder_1080p_fps") and f("johnson_fp16_1080p_model_fps"):
        bound = min(f("encoder_1080p_fps"), f("johnson_fp16_1080p_model_fps"))
    return [
        _verdict(
            "identity 1080p e2e / libx264 alone", ">= 0.90x",
            _ratio(f("identity_1080p_fps"), f("libx264_1080p_fps")), 0.9, "x",
        ),
        _verdict(
            "johnson fp16 1080p e2e / min(encoder, model)", ">= 0.80x",
            _ratio(f("johnson_fp16_1080p_fps"), bound), 0.8, "x",
        ),
        _verdict("johnson 360p e2e, --preset veryfast", ">= 200 frames/s", f("johnson_360p_veryfast_fps"), 200, ""),
        _verdict("training johnson 256px bf16-mixed", ">= 300 images/s", f("train_johnson_bf16_ips"), 300, ""),
        _verdict("consistency 0.8 / 0, light 1080p", "<= 1.30x", f("consistency_light_1080p_ratio"), 1.3, "x", True),
        _verdict("consistency 0.8 / 0, johnson 1080p", "<= 1.30x", f("consistency_johnson_1080p_ratio"), 1.3, "x",
                 True),
    ]  # fmt: skip


def table(verdicts: list[Verdict]) -> str:
    """The summary table: one row per target with what it requires, the figure, and met / NOT met / not measured."""
    rows = [("target", "required", "measured", "status")]
    rows += [(v.name, v.required, v.measured, v.status) for v in verdicts]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def all_met(verdicts: list[Verdict]) -> bool:
    """Whether every target was measured and met."""
    return all(v.met is True for v in verdicts)


def summary(results: dict[str, Any]) -> str:
    """The printed report: GPU tests, model-only and end-to-end figures, then the targets table."""
    lines = [f"machine: {', '.join(results['machine']['gpus'])}; {results['machine']['host_cores']} host cores"]
    tests = results.get("gpu_tests", {})
    lines.append(f"GPU tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                 f"{tests.get('skipped', 0)} skipped (exit {tests.get('exit', 'not run')})")  # fmt: skip
    lines += [f"  {line}" for line in tests.get("failures", [])]
    for row in results.get("model_only", []):
        fps = f"{row['fps']:.1f} frames/s (batch {row['batch']})" if row.get("fps") else row.get("status", "")
        lines.append(f"model only  {row['network']:<8} {row['size']:<5} {row['precision']:<4} {fps}")
    for row in results.get("end_to_end", []):
        fps = f"{row['fps']['median']:.1f} frames/s" if "fps" in row else row.get("status", "")
        lines.append(f"end to end  {row['network']:<8} {row['size']:<5} {row.get('encoder', ''):<10} "
                     f"consistency {row.get('consistency', 0):<3g} {fps}")  # fmt: skip
    for row in results.get("consistency", []):
        if "ratio" in row:
            cost = (f"{row['ms_per_frame_0']:.2f} -> {row['ms_per_frame_0.8']:.2f} ms/frame ({row['ratio']:.2f}x), "
                    f"flow: {row.get('flow')}")  # fmt: skip
        else:
            cost = row.get("status", "")
        lines.append(f"consistency {row['network']:<13} {row['size']:<5} {cost}")
    for row in results.get("training", []):
        ips = f"{row['images_per_sec']:.1f} images/s" if "images_per_sec" in row else row.get("status", "")
        size = f"{row.get('size', 256)}px"
        lines.append(
            f"training    johnson {size:<5} {row['variant']:<13} temporal {'on ' if row['temporal'] else 'off'} {ips}"
        )
    if "multi_gpu" in results:
        m = results["multi_gpu"]
        if "status" in m:
            lines.append(f"batch over {m['gpus']} GPU(s): {m['status']}")
        else:
            lines.append(f"batch over {m['gpus']} GPU(s): {m['written']}/{m['files']} written in {m['seconds']}s "
                         f"on {', '.join(m['devices_used']) or 'no GPU reported'} (exit {m['exit']})")  # fmt: skip
    lines += ["", table(evaluate(results["figures"]))]
    return "\n".join(lines)
