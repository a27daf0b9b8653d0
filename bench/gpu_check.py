"""The device check: one prepared command for a short GPU window, that returns whatever it measured.

Usage (from the repository root; on the device machine through ``python3 -m bench.device_kit run --out $OUT``)::

    python -m bench.gpu_check --out DIR                  # everything below in at most 8 minutes on one GPU
    python -m bench.gpu_check --budget 300 --out DIR     # a shorter window: rows that do not fit are "not run: time"
    python -m bench.gpu_check --dry-run --out DIR        # every section on the CPU at tiny sizes (under 2 minutes)

Without CUDA (and without ``--dry-run``) it prints one line and exits with status 1 at once. With CUDA, in order, each
section within its share of ``--budget`` seconds (a row that runs past its section's deadline is stopped there):

1. model only: johnson, light, identity x 360p, 1080p, 4K x fp32, fp16, bf16 (bf16 only where native), frames/s;
2. end to end: identity, light, johnson through the artifact loader ``stylize-video`` uses (cuDNN autotuning on) and
   ``stylize_file``, at the default consistency (0.8, RAFT with random ``raft_small`` weights: its timing does not
   depend on them) and at 0; 360p rows from a 360p clip; plus the encoders alone at 1080p;
3. consistency: the stage's cost per 1080p frame (0.8 against 0) for light, johnson and the shipped artifact
   (``docs/models/``), frames in memory, with the flow and stage busy times;
4. training: johnson at 256 px, bf16-mixed, with and without compile, temporal loss off and on, images/s;
5. a batch over every visible GPU (``stylize-video a.mp4 b.mp4 ... --devices cuda``), only where there are two;
6. last, the GPU tests (``pytest -m gpu``) with their own timeout (``--tests-timeout``), in their own process group,
   killed as a whole when it passes.

End-to-end figures are steady state: each row times the clip's first :attr:`Plan.short_seconds` and the whole clip,
and reports the frames between them over the time between them (start-up, cuDNN autotuning and the encoder's
opening excluded), beside the whole-file rate. Writes ``gpu-check-<gpu>.json`` into ``--out`` after every row
(machine, every figure, the stage tables, errors, the verdicts at the end) and prints one summary table with every GPU
target met or not (:mod:`bench.gpu_targets`). A section that fails is recorded under ``errors`` and the next one
runs. Exit status 0 when the GPU tests passed and every target was met, else 1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.check_guard import Budget, Report, guarded
from bench.gpu_plan import DRY, FULL, ROOT, Context
from bench.gpu_sections import SECTIONS
from bench.gpu_targets import all_met, evaluate, summary

# Shares of the budget (after the GPU tests' own timeout) per section, in order; what a section leaves unused goes to
# the next ones.
SHARES = {"model_only": 0.25, "end_to_end": 0.35, "consistency": 0.15, "training": 0.17, "multi_gpu": 0.08}


def machine(device: str) -> dict[str, Any]:
    """The GPU(s), host cores and library versions the figures were measured on."""
    import av
    import torch

    cuda = device == "cuda"
    return {
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
        "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        "host_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pyav": av.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def cuda_present() -> bool:
    """Whether a CUDA device is usable; answers at once (before importing torch) on machines without NVIDIA's driver
    or with ``CUDA_VISIBLE_DEVICES`` empty."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1") or not os.path.exists("/dev/nvidiactl"):
        return False
    import torch

    return torch.cuda.is_available()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything (default 480: 8 min)")
    parser.add_argument("--tests-timeout", type=float, default=150.0,
                        help="seconds for the GPU tests, run last, out of the budget (default 150)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder of the JSON result")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes (no GPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the check (see the module docstring); returns the exit status."""
    args = parse_args(argv)
    plan = DRY if args.dry_run else FULL
    names = args.sections.split(",")
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"gpu_check: unknown section {unknown[0]!r}; sections are {', '.join(SECTIONS)}")
        return 2
    if plan.device == "cuda" and not cuda_present():
        print("gpu_check: no CUDA device visible; nothing run, every GPU figure is not measured")
        return 1
    if plan.device == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # as stylize-video sets it (inference.app.jobs.load_stylizer)
    info = machine(plan.device)
    slug = re.sub(r"[^a-z0-9]+", "-", info["gpus"][0].lower()).strip("-")
    report = Report(args.out / f"gpu-check-{slug}.json", machine=info, budget_s=args.budget, dry_run=args.dry_run,
                    figures={}, errors={})  # fmt: skip
    report.save()
    tests_timeout = min(args.tests_timeout, 0.5 * args.budget) if "gpu_tests" in names else 0.0
    budget = Budget(args.budget - tests_timeout)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(plan, budget, report, Path(tmp), tests_timeout)
        for name in (n for n in SECTIONS if n in names):  # always in the documented order
            budget.open(SHARES.get(name, 0.0))
            guarded(name, lambda name=name: SECTIONS[name](ctx), report)
    report["verdicts"] = [v.__dict__ | {"status": v.status} for v in evaluate(report["figures"])]
    report.save()
    print(summary(report))
    for name, error in report["errors"].items():
        print(f"section {name} failed: {error}")
    print(f"written: {report.path} ({time.monotonic() - budget.start:.0f}s)")
    tests_ok = report.get("gpu_tests", {}).get("exit") == 0
    return 0 if tests_ok and all_met(evaluate(report["figures"])) and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
