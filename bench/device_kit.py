"""The device kit: what the GPU machine lacks, carried as wheels, and the one command that runs the check there.

The GPU machine (Python 3.12, its own PyTorch, no package registry) has most of what the project imports
(/work/.library/device/KINDS.md lists its packages) but not PyAV, which ``bench.gpu_check`` and 11 test modules import
at module level, nor jsonargparse, which ``tests/test_runs.py`` imports (so ``pytest -m gpu`` would stop at
collection). :data:`WHEELS` names each missing distribution with one pinned version; ``ray`` and ``fastapi`` are left
behind on purpose (their tests skip without them, and Ray alone is larger than the whole 64 MiB a call may carry).

Here (with network access), once::

    python -m bench.device_kit download          # writes .whl/ (git-ignored), about 37 MB

There (the device machine, from the repository root, ``.whl`` carried)::

    python3 -m bench.device_kit run --out $OUT   # install, versions, NVDEC/NVENC, then bench.gpu_check

``run`` installs the wheels into the interpreter's own site-packages (``pip install --no-index --no-deps``: not
through ``PYTHONPATH``, which a test replaces for the child it starts) and the project itself (editable, no build
isolation: the console scripts exist for the tests that start them), prints the versions and whether the NVIDIA
decoder and encoder user libraries load, then runs ``python3 -m bench.gpu_check --out OUT`` in its own process group
with a budget that ends :data:`MARGIN_S` seconds before ``--limit`` (default :data:`LIMIT_S`, under the device's
600 s per command); the check writes its JSON after every row, so whatever it measured comes back.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_DIR = ROOT / ".whl"
#: Distribution name -> (the one version carried, why it is needed there). Pure-Python wheels except PyAV.
WHEELS: dict[str, tuple[str, str]] = {
    "av": ("18.1.0", "video I/O: the runtime, bench.gpu_check and 11 test modules import it"),
    "jsonargparse": ("4.53.0", "styletrain's CLI; tests/test_runs.py imports it at module level"),
    "docstring-parser": ("0.18.0", "jsonargparse[signatures]: help text from docstrings"),
    "typeshed-client": ("2.15.0", "jsonargparse[signatures]: resolves stub types"),
}
#: The distributions the GPU machine's image holds (the device notes, KINDS.md, as read there on 2026-11-17): what
#: the project imports beyond these must travel in :data:`WHEELS` (tests/test_device_kit.py checks that collection
#: needs nothing else).
MACHINE_PACKAGES = frozenset({
    "absl-py", "accelerate", "aiofiles", "aiohappyeyeballs", "aiohttp", "aiosignal", "annotated-doc", "anyio",
    "attrs", "botorch", "build", "certifi", "charset-normalizer", "chex", "click", "cloudpickle", "cmake", "colorama",
    "contourpy", "coverage", "cuda-bindings", "cuda-core", "cuda-pathfinder", "cuda-toolkit", "cupy-cuda13x",
    "cycler", "cython", "diffrax", "e3nn", "einops", "equinox", "etils", "execnet", "filelock", "flatbuffers", "flax",
    "fonttools", "formulaic", "frozenlist", "fsspec", "gpytorch", "grpcio", "h11", "h5py", "hf-xet", "httpcore",
    "httpx", "huggingface-hub", "humanize", "hypothesis", "idna", "imageio", "iniconfig", "interface-meta", "jax",
    "jax-cuda13-pjrt", "jax-cuda13-plugin", "jaxlib", "jaxtyping", "jinja2", "joblib", "kiwisolver", "lazy-loader",
    "lightning", "lightning-utilities", "linear-operator", "lineax", "llvmlite", "lxml", "markdown", "markdown-it-py",
    "markupsafe", "matplotlib", "mdurl", "meson", "ml-dtypes", "mpi4py", "mpmath", "msgpack", "multidict",
    "multipledispatch", "mypy-extensions", "nanobind", "narwhals", "networkx", "ninja", "numba", "numba-cuda",
    "numpy", "numpyro", "nvidia-cublas", "nvidia-cuda-cupti", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime",
    "nvidia-cudnn-cu13", "nvidia-cufft", "nvidia-cufile", "nvidia-curand", "nvidia-cusolver", "nvidia-cusparse",
    "nvidia-cusparselt-cu13", "nvidia-ml-py", "nvidia-nccl-cu13", "nvidia-nvjitlink", "nvidia-nvshmem-cu13",
    "nvidia-nvtx", "onnx", "onnx-ir", "onnxruntime", "onnxscript", "opencv-python-headless", "optax", "opt-einsum",
    "opt-einsum-fx", "optimistix", "orbax-checkpoint", "packaging", "pandas", "pathspec", "patsy", "peft", "pillow",
    "pip", "pluggy", "portalocker", "prometheus-client", "propcache", "protobuf", "psutil", "pyarrow", "pybind11",
    "py-cpuinfo", "pygments", "pyparsing", "pyproject-hooks", "pyre-extensions", "pytest", "pytest-benchmark",
    "pytest-cov", "pytest-mock", "pytest-timeout", "pytest-xdist", "python-dateutil", "pytorch-lightning", "pyyaml",
    "regex", "requests", "rich", "sacrebleu", "safetensors", "scikit-build-core", "scikit-image", "scikit-learn",
    "scipy", "seaborn", "sentencepiece", "sentence-transformers", "setuptools", "shellingham", "simplejson", "six",
    "sortedcontainers", "statsmodels", "sympy", "tabulate", "tensorboard", "tensorboard-data-server", "tensorstore",
    "threadpoolctl", "tifffile", "tiktoken", "timm", "tokenizers", "toolz", "torch", "torchaudio", "torchdiffeq",
    "torch-geometric", "torchmetrics", "torchvision", "tqdm", "transformers", "treescope", "triton", "typer",
    "typing-extensions", "typing-inspect", "urllib3", "uvloop", "wadler-lindig", "werkzeug", "wheel", "wrapt",
    "xarray", "xxhash", "yarl", "zipp"
})  # fmt: skip
PYTHON_VERSION = "3.12"
#: pip matches manylinux tags exactly: the common ones, newest first.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: The device's limit on one command is 600 s; the kit stops everything by LIMIT_S, and the check's own budget ends
#: MARGIN_S before that (installing, starting and the summary need the rest).
LIMIT_S = 560.0
MARGIN_S = 45.0
#: What the travelling tree (tracked files plus .whl) may weigh: the device tool's limit.
TREE_LIMIT_BYTES = 64 * 2**20
#: NVIDIA's user-space libraries for NVDEC and NVENC (installed with the driver, not with CUDA).
NV_LIBRARIES = {"NVDEC": "libnvcuvid.so.1", "NVENC": "libnvidia-encode.so.1"}

_WHEEL_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-(?:\d[^-]*-)?[^-]+-[^-]+-[^-]+\.whl$")


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Docstring_Parser`` -> ``docstring-parser``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> list[str]:
    """``name==version`` for every carried wheel."""
    return [f"{name}=={version}" for name, (version, _) in WHEELS.items()]


def download_command(dest: Path) -> list[str]:
    """The ``pip download`` that fetches :data:`WHEELS` for the GPU machine's Python into ``dest``."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
            PYTHON_VERSION, "--implementation", "cp", *platforms, "-d", str(dest), *requirements()]  # fmt: skip


def wheel_files(folder: Path) -> dict[str, tuple[str, Path]]:
    """The wheels in ``folder``: normalised name -> ``(version, path)``.

    Raises:
        SystemExit: A file that is not a wheel name, or two versions of one distribution (pip would refuse them).
    """
    found: dict[str, tuple[str, Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        match = _WHEEL_NAME.match(path.name)
        if match is None:
            raise SystemExit(f"device_kit: {path}: not a wheel file name")
        name = normalise(match["name"])
        if name in found and found[name][0] != match["version"]:
            raise SystemExit(f"device_kit: {folder}: two versions of {name} ({found[name][0]}, {match['version']})")
        found[name] = (match["version"], path)
    return found


def check_folder(folder: Path) -> list[str]:
    """What is wrong with ``folder`` as the kit (empty: nothing): missing, extra or wrong-version wheels."""
    found = wheel_files(folder) if folder.is_dir() else {}
    wanted = {normalise(name): version for name, (version, _) in WHEELS.items()}
    problems = [f"{name}=={version} missing" for name, version in wanted.items() if name not in found]
    problems += [f"{name} is {found[name][0]}, the kit pins {version}" for name, version in wanted.items()
                 if name in found and found[name][0] != version]  # fmt: skip
    problems += [f"{found[name][1].name} is not in the kit's list" for name in found if name not in wanted]
    return problems


def tracked_bytes(root: Path = ROOT) -> int:
    """Bytes of the files git tracks under ``root`` (what travels besides ``.whl``)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.split(b"\0")
    return sum((root / n.decode()).stat().st_size for n in names if n and (root / n.decode()).is_file())


def download(dest: Path = WHEEL_DIR) -> int:
    """Fetch the wheels into ``dest`` (here, with network access); prints the sizes. Returns the exit status."""
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(download_command(dest))
    if done.returncode != 0:
        print(f"device_kit: pip download failed (exit {done.returncode})", file=sys.stderr)
        return 1
    problems = check_folder(dest)
    if problems:
        print(f"device_kit: {dest}: {'; '.join(problems)}", file=sys.stderr)
        return 1
    wheels = sum(p.stat().st_size for _, p in wheel_files(dest).values())
    tree = tracked_bytes()
    total = wheels + tree
    print(f"wheels {wheels / 2**20:.1f} MiB + tracked tree {tree / 2**20:.1f} MiB = {total / 2**20:.1f} MiB "
          f"(limit {TREE_LIMIT_BYTES / 2**20:.0f} MiB)")  # fmt: skip
    return 0 if total < TREE_LIMIT_BYTES else 1


def nv_libraries() -> dict[str, bool]:
    """Whether NVIDIA's decoder and encoder user libraries load in this process (``{"NVDEC": bool, "NVENC": bool}``)."""
    present = {}
    for what, soname in NV_LIBRARIES.items():
        try:
            ctypes.CDLL(soname)
            present[what] = True
        except OSError:
            present[what] = False
    return present


def _run(cmd: list[str], timeout: float) -> int:
    """``cmd`` in its own process group; the whole group is killed when ``timeout`` passes. Returns the exit status
    (``124`` on timeout)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        return proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return 124
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def run(out: Path, limit: float = LIMIT_S, extra: list[str] | None = None) -> int:
    """On the GPU machine: install the kit, report, run the check into ``out``; all within ``limit`` seconds."""
    t0 = time.monotonic()
    problems = check_folder(WHEEL_DIR)
    if problems:
        print(f"device_kit: {WHEEL_DIR}: {'; '.join(problems)} (run `python -m bench.device_kit download` here)")
        return 2
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
    code = _run([*pip, *(str(p) for _, p in wheel_files(WHEEL_DIR).values())], 120)
    if code != 0:
        print(f"device_kit: installing the wheels failed (exit {code})")
        return 2
    # The project too, so that the console scripts the tests start exist; the check still runs from the tree if not.
    if _run([*pip, "--no-build-isolation", "-e", str(ROOT)], 120) != 0:
        print("device_kit: installing the project failed; its console scripts are missing (tests that start them fail)")
    print(f"installed in {time.monotonic() - t0:.0f}s into {sys.prefix}")
    subprocess.run([sys.executable, "-c", _VERSIONS], cwd=ROOT)
    print("user libraries: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in nv_libraries().items()))
    sys.stdout.flush()
    left = limit - (time.monotonic() - t0)
    budget = max(30.0, left - MARGIN_S)
    cmd = [sys.executable, "-m", "bench.gpu_check", "--out", str(out), "--budget", f"{budget:.0f}", *(extra or [])]
    print("running: " + " ".join(cmd[1:]), flush=True)
    code = _run(cmd, left - 5)
    if code == 124:
        print(f"device_kit: the check ran past {limit:.0f}s and was stopped; its JSON holds every row it finished")
    return code


_VERSIONS = """
import importlib.metadata as md, platform, torch
names = ["torch", "torchvision", "av", "jsonargparse", "numpy", "opencv-python-headless", "pytorch-lightning"]
print("python", platform.python_version(), "|", ", ".join(f"{n} {md.version(n)}" for n in names))
cuda = torch.cuda.is_available()
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
print("cuda", torch.version.cuda, "| cudnn", torch.backends.cudnn.version(), "| gpus", gpus or "none")
import av
print("PyAV FFmpeg codecs:", sorted(c for c in av.codecs_available if "nvenc" in c or "cuvid" in c) or "no NVIDIA ones")
"""


def main(argv: list[str] | None = None) -> int:
    """``download`` (here) or ``run`` (on the GPU machine); see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.device_kit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("download", help="fetch the wheels into .whl/ (here, with network access)")
    sub.add_parser("check", help="check .whl/ against the kit's list and the size limit, without network")
    go = sub.add_parser("run", help="on the GPU machine: install, report, run bench.gpu_check")
    go.add_argument("--out", type=Path, required=True, help="folder for the check's JSON (the device's $OUT)")
    go.add_argument("--limit", type=float, default=LIMIT_S, help=f"seconds for everything (default {LIMIT_S:.0f})")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "download":
        return download()
    if args.command == "check":
        problems = check_folder(WHEEL_DIR)
        print("; ".join(problems) or f"{WHEEL_DIR}: the kit's {len(WHEELS)} wheels, one version each")
        return 1 if problems else 0
    return run(args.out, args.limit, extra)


if __name__ == "__main__":
    sys.exit(main())
