"""Library messages name fields; only the command lines (``stylize-video``, ``styletrain``) write them as flags."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest

from inference.app.argtypes import flag
from inference.core.errors import MediaError, OptionError, UserError
from inference.engine.index_limit import PeakTensor
from inference.io.encoders import resolve_encoder
from inference.model.networks import build_network
from inference.model.styles import style_weights
from styletrain.cli import flag_of

ROOT = Path(__file__).resolve().parents[1]
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_.-]*")
# Everything but the command lines themselves (stylize-video's and stylize-serve's cli.py and their shared usage-error
# parser, styletrain/cli.py and the run-folder resolution it does on the parsed command line, the argparse parts of
# export and evaluate), which name their own flags. The web server's messages go to web clients, not to a command line.
_LIBRARY = ("inference/core", "inference/model", "inference/io", "inference/engine", "inference/app", "styletrain")
_COMMAND_LINES = {"inference/app/cli.py", "inference/app/console.py", "styletrain/cli.py", "styletrain/runs.py"}


def _messages(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string in a ``raise`` or a ``log.warning``/``warnings.warn`` call of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node if node.func.attr in ("warning", "warn", "error") else None
        for sub in ast.walk(target) if target is not None else ():
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                found.append((sub.lineno, sub.value))
    return found


def test_no_library_message_names_a_command_line_flag():
    offenders = []
    for package in _LIBRARY:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name in _COMMAND_LINES:
                continue
            for line, text in _messages(path):
                if name in ("styletrain/export.py", "styletrain/evaluate.py") and text.startswith("--"):
                    continue  # these two modules are also a command line: their main() checks its own flags
                offenders += [f"{name}:{line} {m.group()}" for m in _FLAG.finditer(text)]
    assert not offenders, "name the field (OptionError, or `field` with mentions=...):\n" + "\n".join(offenders)


def test_mentioned_fields_become_flags_and_survive_a_worker_process():
    error = OptionError("codec", "libx265 needs frames of at least 49x16 (use `size`)", mentions=("size",))
    assert str(error) == "codec libx265 needs frames of at least 49x16 (use `size`)"
    back = pickle.loads(pickle.dumps(error))  # a batch worker may send it to the parent
    assert (
        back.field == "codec" and back.with_flags(flag) == "--codec libx265 needs frames of at least 49x16 (use --size)"
    )
    media = MediaError("out.mp4: already exists (use `overwrite` to replace it)", mentions=("overwrite",))
    assert media.with_flags(flag) == "out.mp4: already exists (use --overwrite to replace it)"
    assert UserError("no fields here `x`").with_flags(flag) == "no fields here `x`"  # only the mentioned ones


@pytest.mark.parametrize(
    ("call", "field", "on_the_command_line"),
    [
        (lambda: style_weights("a:0,b:0", ["a", "b"]), "style", "--style: the style weights sum to zero"),
        (lambda: resolve_encoder("aac", ".mp4", 18, "medium", "yuv420p"), "codec", "--codec aac encodes audio"),
        (
            lambda: PeakTensor(build_network("johnson")).max_batch(2160, 3840, 0.25),
            None,
            "use --max-side, --size or a larger --stroke-scale",
        ),
    ],
)
def test_library_errors_read_as_stylize_video_flags(call, field, on_the_command_line):
    with pytest.raises(UserError) as err:
        call()
    assert "--" not in str(err.value)
    assert getattr(err.value, "field", None) == field
    assert on_the_command_line in err.value.with_flags(flag)


def test_styletrain_maps_module_fields_to_model_and_data_flags():
    assert flag_of("vgg_weights") == "--model.vgg_weights"
    assert flag_of("temporal_balance") == "--model.temporal.balance"  # a flat name finds its group
    assert flag_of("temporal.balance") == "--model.temporal.balance" and flag_of("lr") == "--model.optimizer.lr"
    assert flag_of("image_size") == "--data.image_size" and flag_of("hf_data_dir") == "--data.hf_data_dir"
    assert flag_of("style") == "--style"  # the shortcut the CLI offers for --model.style


def test_conversion_warnings_read_as_flags_on_the_command_line(tmp_path, make_video, model, capsys):
    from .conftest import run_cli

    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(64, 48), audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "o.mp4", "--size", "33x17", "--device", "cpu") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert any("--size 33x17 became" in w and "use --pix-fmt yuv444p" in w for w in warnings), warnings
    assert not any("`" in w for w in warnings), warnings
