"""Library errors name the option's field; only the command line turns a field into its flag."""

from __future__ import annotations

import numpy as np
import pytest

import inference.app.batch
from inference.app.cli import main
from inference.core.errors import OptionError, UserError
from inference.io.encode_options import EncodeOptions
from inference.io.readers import open_source


def test_trim_and_rate_errors_name_the_field_not_a_flag(tmp_path):
    from PIL import Image

    path = tmp_path / "one.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    cases = [
        (lambda: open_source(path, start=-1.0), "start", "start must be in [0, "),
        (lambda: open_source(path, duration=0.0), "duration", "duration must be in (0, "),
        (lambda: open_source(path, fps=0.0), "fps", "fps must be in ["),
        (lambda: EncodeOptions(gif_fps=float("nan")), "gif_fps", "gif_fps must be a finite number"),
    ]
    for call, field, start in cases:
        with pytest.raises(OptionError) as err:
            call()
        assert err.value.field == field and str(err.value).startswith(start), str(err.value)
        assert "--" not in str(err.value)
        assert isinstance(err.value, UserError)  # still one line and exit status 2 wherever it surfaces


def test_the_command_line_names_its_flag_for_a_field(monkeypatch, capsys, tmp_path):
    def refuse(inputs):
        raise OptionError("gif_fps", "must be in [0.01, 50], got 0")

    monkeypatch.setattr(inference.app.batch, "is_batch", refuse)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "in.mp4"), "-m", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "out.gif")])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: --gif-fps must be in [0.01, 50], got 0\n"


@pytest.mark.parametrize(
    "command",
    [
        ("inference.app.cli", "stylize-video"),
        ("inference.serve.cli", "stylize-serve"),
        ("styletrain.export", "styletrain export"),
        ("styletrain.evaluate", "styletrain evaluate"),
    ],
)
def test_every_command_line_reports_a_usage_mistake_in_one_line(command, capsys):
    import importlib

    from inference.core.errors import exit_on_user_error

    module, prog = command
    entry = exit_on_user_error(importlib.import_module(module).main)  # a no-op where main is decorated already
    with pytest.raises(SystemExit) as exit_info:
        entry(["--no-such-flag"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert err.rstrip().endswith(f"(see {prog} --help)")
