"""The README works as written: its quick commands and Python blocks run on this checkout, and every
relative link in README.md, CHANGELOG.md and docs/*.md points at a file (and heading) that exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
DATA_IN_README = "../shared/data"  # how the README names the real data (the `shared_data` fixture's default)
TMP_IN_README = "/tmp/"  # README examples write only here; the test writes to its own tmp_path instead
TIMEOUT_S = 120  # per command; the quick ones take a few seconds

# Commands of README bash blocks that this test does not run, by prefix, with the reason.
LONG_COMMANDS = {
    "make run": "a set-up command (creates .venv, installs dependencies)",
    "make test": "runs the whole test suite, this test included",
    "rtfuse eval --suite": "the cross-camera suite takes about 8 minutes on 2 cores",
    "rtfuse export": "compiles an engine (minutes)",
    "rtfuse bench": "compiles and times engines (minutes)",
    "rtfuse launch": "starts long-running nodes",
    "rtfuse detect": "needs the 'detect' extra, YOLO weights and a publisher",
    "rtfuse subscribe": "waits for a publisher",
    "python -m rtfuse_train": "training (minutes to hours)",
    "torchrun": "training (minutes to hours)",
    "python bench/": "benchmarks (minutes)",
    "pip install": "needs the network",
}
NEEDS_DEVICE = ("--vis cam", "--ir cam", "rtsp://", "http://", "--show")  # a camera, the network or a desktop


def _fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, first line number of the body, body) of every fenced code block."""
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip() or "text", number + 1, []
            else:
                blocks.append((lang, start, "\n".join(body)))
                lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md: code block opened at line {start - 1} is never closed"
    return blocks


def _bash_commands() -> list[tuple[int, str]]:
    """(line number, command) of each command in README bash blocks (continuation lines joined)."""
    commands = []
    for lang, start, body in _fenced_blocks(README.read_text()):
        if lang not in ("bash", "sh"):
            continue
        pending, first = "", 0
        for offset, line in enumerate(body.splitlines()):
            if not pending:
                first = start + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append((first, command))
    return commands


def _python_blocks() -> list[tuple[int, str]]:
    return [(start, body) for lang, start, body in _fenced_blocks(README.read_text()) if lang == "python"]


def _why_skipped(command: str) -> str | None:
    for prefix, reason in LONG_COMMANDS.items():
        if command.startswith(prefix):
            return f"{prefix!r}: {reason}"
    for marker in NEEDS_DEVICE:
        if marker in command:
            return f"{marker!r}: needs a camera, the network or a desktop"
    if command.startswith("rtfuse run") and "--duration" not in command and "--frames" not in command:
        return "'rtfuse run' without --duration or --frames runs until stopped"
    return None


def _adapt(code: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The README's paths made to work here: the real data where the fixture finds it, outputs in tmp_path."""
    if DATA_IN_README in code:
        data = request.getfixturevalue("shared_data")  # skips with a reason when the data is absent
        code = code.replace(DATA_IN_README, str(data))
    return code.replace(TMP_IN_README, f"{tmp_path}/")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TQDM_DISABLE"] = "1"
    return env


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, (
        f"{what} exited with status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
    )


def test_readme_has_runnable_examples():
    """Guards the extraction: the README keeps its set-up commands, quick commands and a Python block."""
    commands = [command for _, command in _bash_commands()]
    assert "make run" in [c.split("#")[0].strip() for c in commands]
    assert "make test" in [c.split("#")[0].strip() for c in commands]
    assert any(_why_skipped(c) is None for c in commands), "no quick bash command left to run"
    assert _python_blocks(), "no python block in README.md"


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 300


BASH_COMMANDS = _bash_commands()
PYTHON_BLOCKS = _python_blocks()


@pytest.mark.parametrize(("line", "command"), BASH_COMMANDS, ids=[f"L{line}" for line, _ in BASH_COMMANDS])
def test_readme_bash_command(line: int, command: str, request: pytest.FixtureRequest, tmp_path: Path):
    reason = _why_skipped(command)
    if reason:
        pytest.skip(f"README.md:{line}: not run here: {reason}")
    command = _adapt(command, request, tmp_path)
    result = subprocess.run(["bash", "-c", command], check=False, cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    _check(result, f"README.md:{line}: {command}")


@pytest.mark.parametrize(("line", "code"), PYTHON_BLOCKS, ids=[f"L{line}" for line, _ in PYTHON_BLOCKS])
def test_readme_python_block(line: int, code: str, request: pytest.FixtureRequest, tmp_path: Path):
    script = tmp_path / f"readme_L{line}.py"
    script.write_text(_adapt(code, request, tmp_path))
    result = subprocess.run([str(PYTHON), str(script)], check=False, cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    _check(result, f"README.md:{line}: python block")


# ------------------------------------------------------------------------------------------- links

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
DOCS = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """Markdown outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a markdown text (lower case, punctuation dropped, spaces -> '-')."""
    anchors: set[str] = set()
    for line in _prose(markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        anchor, n = base, 0
        while anchor in anchors:
            n += 1
            anchor = f"{base}-{n}"
        anchors.add(anchor)
    return anchors


def test_anchor_rules():
    """The slug rules on headings of the kinds these docs use."""
    page = "# A\n## Training (`python -m rtfuse_train`)\n## Qabf / VIF, 1.5x\n## A\n```\n# not a heading\n```\n"
    assert _anchors(page) == {"a", "training-python--m-rtfuse_train", "qabf--vif-15x", "a-1"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path):
    assert doc.is_file(), f"{doc} is missing"
    broken = []
    for target in LINK.findall(_prose(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}: broken links:\n" + "\n".join(broken)
