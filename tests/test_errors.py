"""Errors name parameters, not flags: library code speaks Python, the CLI spells its options."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from rtfuse.cli import main as cli_main
from rtfuse.errors import ParameterError, RtfuseError, spell

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(^|[\s(/`'\"])--[a-z]")
MESSAGE_CALLS = {"debug", "info", "warning", "error", "exception", "critical", "warn", "print", "write"}


def test_parameter_error_spells_parameters_per_front_end():
    err = ParameterError("`resize` and `calib` exclude each other (see `rtfuse calib`)")
    assert isinstance(err, RtfuseError) and err.parameters == ("resize", "calib")
    assert str(err) == "`resize` and `calib` exclude each other (see `rtfuse calib`)"
    assert err.spelled({"resize": "--resize", "calib": "--calib"}) == "--resize and --calib exclude each other (see `rtfuse calib`)"
    assert err.spelled({"resize": "--resize"}) == "--resize and `calib` exclude each other (see `rtfuse calib`)"
    assert spell("hint: `backend` aoti", {"backend": "--backend"}) == "hint: --backend aoti"


def _message_strings(tree: ast.AST):
    """String pieces of what a module raises, logs, warns or prints."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            roots = [node.exc]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in MESSAGE_CALLS:
            roots = list(node.args)
        else:
            continue
        for root in roots:
            for sub in ast.walk(root):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


def test_no_library_message_names_a_flag():
    offenders = []
    for package in ("rtfuse", "rtfuse_train"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "cli" in path.relative_to(ROOT / package).parts:
                continue
            for line, text in _message_strings(ast.parse(path.read_text())):
                if FLAG.search(text):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()[:70]}")
    assert not offenders, "library messages naming command-line flags:\n" + "\n".join(offenders)


def test_cli_spells_a_library_parameter_error_as_its_options(capsys):
    """`rtfuse run --resize --calib X`: the pipeline's ParameterError reaches the user with the flags."""
    assert cli_main(["run", "--resize", "--calib", "/nonexistent/rig.toml", "--frames", "1", "--publish", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("error: --resize and --calib exclude each other")


def test_eval_spells_what_to_score_with_its_options(tmp_path: Path, capsys):
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    assert cli_main(["eval", "--data", str(tmp_path)]) == 2
    assert "nothing to score: give --fused NAME=DIR or --ours or --baseline" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["run", "fuse", "bench", "eval"])
def test_every_subcommand_knows_its_option_names(module):
    from rtfuse.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[module]
    assert sub.get_default("_options"), f"rtfuse {module} has no option names for library errors"
