"""bench.device_kit without network or GPU: its wheel list, the folder check, and that the GPU machine's packages plus
the kit's wheels are all that collecting the GPU tests and starting the check need."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import device_kit

ROOT = Path(__file__).resolve().parents[1]


def test_each_wheel_is_named_once_with_one_exact_version():
    names = [device_kit.normalise(name) for name in device_kit.WHEELS]
    assert len(names) == len(set(names)) and names == list(device_kit.WHEELS)  # already in normal form, no doubles
    for name, (version, why) in device_kit.WHEELS.items():
        assert re.fullmatch(r"\d+(\.\d+)+", version), (name, version)  # one release, no range or wildcard
        assert why
    assert {"av", "jsonargparse"} <= set(device_kit.WHEELS)
    # Nothing carried that the machine has already: two versions of one package would stop pip there.
    assert not set(device_kit.WHEELS) & device_kit.MACHINE_PACKAGES


def test_download_command_targets_the_machines_python_without_dependencies():
    cmd = device_kit.download_command(Path("/tmp/x"))
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    platforms = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
    assert platforms and all(p.startswith("manylinux") and p.endswith("x86_64") for p in platforms)
    assert cmd[-len(device_kit.WHEELS) :] == [f"{n}=={v}" for n, (v, _) in device_kit.WHEELS.items()]


def _fake_kit(folder: Path, versions: dict[str, str]) -> None:
    for name, version in versions.items():
        (folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"")


def test_folder_check_names_missing_wrong_and_extra_wheels(tmp_path):
    wanted = {name: version for name, (version, _) in device_kit.WHEELS.items()}
    _fake_kit(tmp_path, wanted)
    assert device_kit.check_folder(tmp_path) == []
    (tmp_path / "av-18.1.0-py3-none-any.whl").unlink()
    _fake_kit(tmp_path, {"jsonargparse": "1.0", "ray": "2.9.0"})
    with pytest.raises(SystemExit, match="two versions of jsonargparse"):
        device_kit.check_folder(tmp_path)
    (tmp_path / "jsonargparse-1.0-py3-none-any.whl").unlink()
    problems = device_kit.check_folder(tmp_path)
    assert problems == ["av==18.1.0 missing", "ray-2.9.0-py3-none-any.whl is not in the kit's list"]
    assert device_kit.check_folder(tmp_path / "none") == [f"{n}=={v} missing" for n, v in wanted.items()]


def test_run_refuses_an_incomplete_kit_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device_kit, "WHEEL_DIR", tmp_path)
    assert device_kit.run(tmp_path / "out") == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "av==18.1.0 missing" in out and "download" in out


def test_tracked_tree_leaves_room_for_the_wheels():
    # The wheels are about 36 MB (PyAV with its FFmpeg); the tracked tree must leave them room under 64 MiB.
    assert device_kit.tracked_bytes() < device_kit.TREE_LIMIT_BYTES - 40 * 2**20


def _machine_view(folder: Path, allowed: set[str]) -> Path:
    """A copy of this environment's site-packages, as links, holding only the distributions in ``allowed`` (and
    the project's own modules, found from the working tree): modules of any other distribution are simply absent, so
    ``import`` fails and ``find_spec`` answers None, as on the GPU machine."""
    site = Path(md.distribution("pytest").locate_file(""))
    normal = device_kit.normalise
    blocked = {
        top for top, dists in md.packages_distributions().items() if not any(normal(d) in allowed for d in dists)
    }
    for entry in site.iterdir():
        stem = entry.name.split(".")[0] if entry.suffix in (".py", ".so") or entry.is_dir() else entry.name
        info = entry.suffix in (".dist-info", ".egg-info") and normal(entry.name.split("-")[0]) not in allowed
        if stem in blocked or info or entry.suffix == ".pth":
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def _as_on_the_machine(tmp: Path, code: str, kit: bool = True) -> subprocess.CompletedProcess:
    """``code`` run from the repository root by Python without its site-packages (``-S``) but with
    :func:`_machine_view` of them: the machine's packages, and the kit's wheels when ``kit``."""
    allowed = set(device_kit.MACHINE_PACKAGES) | ({*device_kit.WHEELS} if kit else set())
    view = _machine_view(tmp, {device_kit.normalise(n) for n in allowed})
    script = f"import sys; sys.path.insert(1, {str(view)!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-S", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_gpu_tests_collect_with_only_the_machines_packages_and_the_kit(tmp_path):
    """`pytest -m gpu` on the GPU machine must not stop at collection (11 modules import av, one
    jsonargparse), nor may the check fail to start. Every installed distribution that neither the machine nor the kit
    provides is left out of the interpreter's path."""
    assert "av" in md.packages_distributions()  # the simulation needs the carried packages installed here
    (tmp_path / "kit").mkdir()
    done = _as_on_the_machine(tmp_path / "kit", """
        import bench.gpu_check, inference.app.convert, pytest
        sys.exit(pytest.main(["--collect-only", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"]))
    """)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
    # The simulation does leave things out: without the kit, PyAV is missing there.
    (tmp_path / "bare").mkdir()
    without_kit = _as_on_the_machine(tmp_path / "bare", "import av", kit=False)
    assert without_kit.returncode != 0 and "No module named 'av'" in without_kit.stderr
