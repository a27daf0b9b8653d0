"""Every ``styletrain`` and ``stylize-video`` command line in the code blocks of README.md and the pages of docs/ parses
as written."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from inference.app.cli import build_parser as stylize_parser
from styletrain.cli import main
from styletrain.evaluate import build_parser as evaluate_parser
from styletrain.export import build_parser as export_parser

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = ("styletrain", "stylize-video")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the markdown's fenced code blocks marked ``bash``, ``sh``, ``console`` or nothing."""
    blocks, body, language = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if body is None:
                body, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(body) + "\n")
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def readme_commands(text: str) -> list[list[str]]:
    """The ``styletrain``/``stylize-video`` commands of the shell code blocks, as argument lists.

    Continuation lines are joined, comments dropped, and ``a && b`` chains split into their commands.
    """
    commands = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            start = 0
            for i, word in enumerate([*words, "&&"]):
                if word in ("&&", "||", ";"):
                    if words[start:i] and words[start] in PROGRAMS:
                        commands.append(words[start:i])
                    start = i + 1
    return commands


PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
ALL_COMMANDS = [command for page in PAGES for command in readme_commands(page.read_text())]
# A command shown on two pages is parsed once: the second parse checks nothing new.
COMMANDS = [command for i, command in enumerate(ALL_COMMANDS) if command not in ALL_COMMANDS[:i]]


def test_readme_has_commands():
    programs = [c[0] for c in COMMANDS]
    assert programs.count("styletrain") >= 8 and programs.count("stylize-video") >= 6, COMMANDS


def test_extraction_joins_continuations_and_chains():
    text = "```bash\npip install x && styletrain fit --a 1 \\\n   --b 2  # note\n```\n"
    assert readme_commands(text) == [["styletrain", "fit", "--a", "1", "--b", "2"]]


def _styletrain(args: list[str], capsys) -> None:
    command = args[0] if args else ""
    if command == "export":
        export_parser().parse_args(args[1:])
    elif command == "evaluate":
        evaluate_parser().parse_args(args[1:])
    else:
        # "styletrain fit ..." in the README stands for any fit command line.
        args = [word for a in args for word in (["--style", "painting.jpg"] if a == "..." else [a])]
        with pytest.raises(SystemExit) as info:
            main([*args, *([] if "--print_config" in args else ["--print_config"])])
        out = capsys.readouterr()
        assert info.value.code in (0, None), out.err
        config = yaml.safe_load(out.out)
        assert "trainer" in config and "model" in config


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c)[:80])
def test_readme_command_parses(command, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # relative --config paths are the repository's
    before = sorted(p.name for p in REPO.iterdir())
    if command[0] == "stylize-video":
        stylize_parser().parse_args(command[1:])
    else:
        _styletrain(command[1:], capsys)
    assert sorted(p.name for p in REPO.iterdir()) == before  # parsing wrote nothing (no runs/, no wandb/)


def test_ci_runs_lint_then_the_readme_test_command():
    """.ci/run runs ruff, then the README's second set-up command word for word (the README promises both)."""
    readme_block = shell_blocks((REPO / "README.md").read_text())[0]
    test_command = [line for line in readme_block.splitlines() if line.endswith("python -m pytest")]
    assert len(test_command) == 1
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command[0] in ci
    lint = [i for i, line in enumerate(ci) if "ruff check ." in line and "ruff format --check ." in line]
    assert lint and lint[0] < ci.index(test_command[0])
