"""Launch files: parsing, restart/give-up policy, and the shipped demo end to end (real processes)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import cv2
import pytest

from rtfuse.errors import RtfuseError
from rtfuse.launch import Launcher, LaunchSpec, NodeSpec, Sink, load_launch, parse_launch

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collect() -> tuple[list[tuple[str, str, str]], Sink]:
    lines: list[tuple[str, str, str]] = []
    return lines, lambda name, kind, line: lines.append((name, kind, line))


@pytest.mark.parametrize("path", sorted(LAUNCH.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_launch_files_parse_and_name_real_subcommands(path):
    from rtfuse.cli import build_parser

    spec = load_launch(path)
    parser = build_parser()
    for node in spec.nodes:
        assert node.argv[1:3] == ("-m", "rtfuse.cli")
        parser.parse_args(list(node.argv[3:]))  # exits (SystemExit) on an unknown flag


def test_shipped_launch_files_cover_the_issue():
    assert {p.name for p in LAUNCH.glob("*.toml")} >= {
        "demo.toml", "llvip_replay.toml", "m2vd_replay.toml", "two_cameras.toml"}
    cams = " ".join(" ".join(n.argv) for n in load_launch(LAUNCH / "two_cameras.toml").nodes)
    assert "--calib calib/rig.toml" in cams and "cam0" in cams and "cam1" in cams


@pytest.mark.parametrize("doc, message", [
    ({}, "no [[node]]"),
    ({"node": [{"name": "a", "rtfuse": "run", "command": "ls"}]}, "exactly one of"),
    ({"node": [{"name": "a", "rtfuse": "run"}, {"name": "a", "rtfuse": "run"}]}, "duplicate name"),
    ({"node": [{"name": "a", "rtfuse": "run", "retsart": "always"}]}, "unknown key(s) retsart"),
    ({"node": [{"name": "a", "command": "ls", "restart": "sometimes"}]}, "'sometimes' is not one of"),
    ({"launch": {"max_restarts": -1}, "node": [{"name": "a", "command": "ls"}]}, "max_restarts"),
    ({"nodes": []}, "unknown top-level key(s) nodes"),
])
def test_bad_launch_files_are_refused_naming_the_key(doc, message):
    with pytest.raises(RtfuseError, match=re.escape(message)):
        parse_launch(doc, Path("x.toml"))


def test_defaults_env_and_backoff():
    spec = parse_launch(tomllib.loads("""
        [launch]
        max_restarts = 2
        backoff_s = 0.25
        [env]
        A = "1"
        B = "1"
        [[node]]
        name = "n"
        command = ["echo", "a b"]
        env = { B = "2" }
        max_restarts = 7
    """), Path("x.toml"))
    (node,) = spec.nodes
    assert node.argv == ("echo", "a b") and node.env == {"A": "1", "B": "2"} and node.max_restarts == 7
    assert [node.backoff(k) for k in (1, 2, 3, 10)] == [0.25, 0.5, 1.0, 8.0]
    assert node.wants_restart(1) and node.wants_restart(-9) and not node.wants_restart(0)
    assert not node.wants_restart(2)  # rtfuse's one-line configuration error


def _spec(*nodes: NodeSpec) -> LaunchSpec:
    return LaunchSpec(Path("test.toml"), nodes)


def test_crashing_node_is_restarted_with_backoff_then_given_up_and_the_others_stopped(caplog):
    crash = NodeSpec("crash", (sys.executable, "-c", "print('up'); raise SystemExit(3)"),
                     max_restarts=2, backoff_s=0.05)
    sleeper = NodeSpec("sleeper", (sys.executable, "-c", "import time; time.sleep(60)"))
    lines, sink = _collect()
    t0 = time.monotonic()
    with caplog.at_level("INFO", logger="rtfuse.launch"):
        code = Launcher(_spec(crash, sleeper), sink).run()
    assert code == 1 and time.monotonic() - t0 < 10
    assert lines.count(("crash", "stdout", "up")) == 3  # first start + 2 restarts
    assert "crash failed with exit status 3; giving up after 2 restart(s); stopping the other nodes" in caplog.text
    assert "stopped sleeper" in caplog.text


def test_optional_node_with_configuration_error_is_not_restarted(caplog):
    bad = NodeSpec("bad", (sys.executable, "-c", "import sys; print('no extra', file=sys.stderr); sys.exit(2)"),
                   optional=True)
    ok = NodeSpec("ok", (sys.executable, "-c", "print('done')"))
    lines, sink = _collect()
    with caplog.at_level("INFO", logger="rtfuse.launch"):
        code = Launcher(_spec(bad, ok), sink).run()
    assert code == 0
    assert ("bad", "stderr", "no extra") in lines and ("ok", "stdout", "done") in lines
    assert "restarting cannot fix it (optional node: the others keep running)" in caplog.text
    assert "restarting in" not in caplog.text and "restarted" not in caplog.text


def test_node_ignoring_sigint_is_terminated_then_killed_within_3_s():
    stubborn = NodeSpec("stubborn", (sys.executable, "-c",
                                     "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                                     "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                                     "time.sleep(60)"))
    lines, sink = _collect()
    launcher = Launcher(_spec(stubborn), sink)
    runner = threading.Thread(target=launcher.run)
    runner.start()
    deadline = time.monotonic() + 20
    while ("stubborn", "stdout", "ready") not in lines and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = launcher.nodes[0].proc.pid
    t0 = time.monotonic()
    launcher.stop.set()
    runner.join(10)
    assert not runner.is_alive() and time.monotonic() - t0 < 3.0
    assert not Path(f"/proc/{pid}").exists()


def _wait_for(lines: list[str], pattern: str, timeout: float, start: int = 0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines[start:]:
            if m := re.search(pattern, line):
                return m
        time.sleep(0.1)
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output:\n" + "\n".join(lines[-60:]))


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


@pytest.mark.slow
def test_demo_launch_restarts_a_killed_node_and_stops_cleanly_on_sigint(tmp_path):
    """launch/demo.toml with small frames and free ports: kill the viewer, see it back, Ctrl-C, play the mp4."""
    text = (LAUNCH / "demo.toml").read_text()
    for old, new in {
        "tcp://127.0.0.1:5555": f"tcp://127.0.0.1:{_free_port()}",
        "tcp://127.0.0.1:5556": f"tcp://127.0.0.1:{_free_port()}",
        "--size 320x240 --fps 15": "--size 160x120 --fps 8",
        'OMP_NUM_THREADS = "2"': 'OMP_NUM_THREADS = "1"',
    }.items():
        assert old in text, f"demo.toml changed: {old!r} not found"
        text = text.replace(old, new)
    (tmp_path / "demo.toml").write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtfuse.cli", "launch", "demo.toml"], cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        pids = {m.group(1): int(m.group(2)) for m in (
            _wait_for(lines, rf"started ({name}) \(pid (\d+)\)", 20) for name in ("fusion", "viewer"))}
        _wait_for(lines, r"^\[viewer +\] frame \d+  160x120", 60)
        _wait_for(lines, r"detect failed with exit status 2 .*configuration error.*optional node", 30)
        mark = len(lines)
        os.kill(pids["viewer"], signal.SIGKILL)
        _wait_for(lines, r"viewer exited with signal SIGKILL .* restarting in 0\.5 s \(1/5\)", 10, mark)
        new_pid = int(_wait_for(lines, r"restarted viewer \(pid (\d+), restart 1/5\)", 10, mark).group(1))
        assert new_pid != pids["viewer"]
        _wait_for(lines, r"^\[viewer +\] frame \d+  160x120", 40, mark)
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15)
        wall = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    out = "\n".join(lines)
    assert code == 0, out[-3000:]
    stopped = float(re.search(r"all nodes stopped in ([\d.]+) s", out).group(1))
    assert stopped < 3.0 and wall < 4.0, out[-3000:]
    assert "still running" not in out  # every node honoured SIGINT (no SIGTERM/SIGKILL needed)
    all_pids = [int(p) for p in re.findall(r"(?:re)?started \S+ \(pid (\d+)", out)]
    assert len(all_pids) == 5  # four nodes + one restart
    assert all(_gone(p) for p in all_pids)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "demo.mp4"))
    ok, frame = cap.read()
    count = 1 if ok else 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert ok and frame.shape[:2] == (120, 160) and count >= 5
