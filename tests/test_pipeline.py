"""The pipeline end to end with the real Fuser, real files, real sockets and real video encoding."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rtfuse.calib import Calibration, RegistrationStats
from rtfuse.capture import FolderSource, Grab, Source
from rtfuse.errors import RtfuseError
from rtfuse.fuser import Fuser, _unit_tensor, prepare_infrared, prepare_visible, to_uint8_image
from rtfuse.imageio import list_images, read_image, write_image
from rtfuse.pipeline import Pipeline, PipelineConfig, PlanManager, scene_changed, scene_signature
from rtfuse.process import engine_threads
from rtfuse.profiling import STAGES, Profiler, load_report, summary
from rtfuse.publish import StreamEnded, Subscriber
from rtfuse.video import read_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fuser() -> Fuser:
    return Fuser.default()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def write_folder(folder: Path, n: int, shape: tuple[int, ...], corrupt: int | None = None) -> Path:
    rng = np.random.default_rng(len(shape))
    for k in range(n):
        path = folder / f"{k:04d}.png"
        write_image(path, rng.integers(0, 256, shape, dtype=np.uint8))
        if k == corrupt:
            path.write_bytes(path.read_bytes()[:40])
    return folder


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """Motion-JPEG .avi: its header holds the frame count, and a cut copy still opens."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def real_frames(path: Path, n: int, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    """The first ``n`` frames of a real clip, made small so that fusing them is quick."""
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in read_video(path, n)]


def test_replay_of_real_clips_reaches_two_subscribers_and_records(shared_data: Path, fuser: Fuser, tmp_path: Path):
    n = 30
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = PipelineConfig(
        vis=str(shared_data / "video/m2vd/vi/0111_1716.mp4"), ir=str(shared_data / "video/m2vd/ir/0111_1716.mp4"),
        frames=n, publish=endpoint, wait_subscribers=2, record=str(tmp_path / "out.mp4"),
        profile=str(tmp_path / "report.json"),
    )
    received: dict[int, list[dict]] = {0: [], 1: []}

    def listen(k: int) -> None:
        with Subscriber(endpoint) as sub:
            while len(received[k]) < n:
                got = sub.recv(timeout=60, newest=False)
                if got is None:
                    return
                frame, header = got
                assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
                received[k].append(header)

    listeners = [threading.Thread(target=listen, args=(k,)) for k in (0, 1)]
    for t in listeners:
        t.start()
    pipeline = Pipeline(cfg, fuser=fuser)
    assert pipeline.mode == "replay"
    report = pipeline.run()
    for t in listeners:
        t.join(timeout=30)
    for headers in received.values():
        assert [h["frame"] for h in headers] == list(range(n))
        assert [(h["index_vis"], h["index_ir"]) for h in headers] == [(k, k) for k in range(n)]
        assert [h["media_time"] for h in headers] == pytest.approx([k / 30 for k in range(n)])
        for h in headers:
            assert h["label"] and h["plan"] and set(h["probs"]) >= {h["label"]}
            assert h["grab"] <= h["publish"] and set(h["stages_s"]) >= {"sync", "inference"}
    assert received[0] == received[1]
    assert frame_count(tmp_path / "out.mp4") == n == report["meta"]["recorded_frames"] == report["frames"]
    assert report["drops"] == {}
    assert set(report["stages_ms"]) == set(STAGES) and report["glass_to_glass_ms"]["p50"] > 0
    assert report["label_changes"][0]["frame"] == 0


def test_mismatched_sizes_are_refused_unless_resized(fuser: Fuser, tmp_path: Path):
    vis = write_folder(tmp_path / "vi", 3, (48, 64, 3))
    ir = write_folder(tmp_path / "ir", 3, (24, 32))
    base = dict(vis=str(vis), ir=str(ir), publish=None)
    with pytest.raises(RtfuseError, match=r"streams: visible is 64x48 but infrared is 32x24.*`resize`.*`calib`"):
        Pipeline(PipelineConfig(**base), fuser=fuser).run()
    report = Pipeline(PipelineConfig(**base, resize=True, record=str(tmp_path / "r.mp4")), fuser=fuser).run()
    assert report["frames"] == 3  # and the replay ends cleanly at the end of the folders
    assert frame_count(tmp_path / "r.mp4") == 3
    assert report["meta"]["ended_first"] is None and report["meta"]["unpaired_remainder"] == {}  # ended together



class _RecordingFuser:
    """Passes through to a real Fuser and notes what kind of input each call received."""

    def __init__(self, fuser: Fuser):
        self.fuser, self.inputs = fuser, []

    def __getattr__(self, name: str):
        return getattr(self.fuser, name)

    def __call__(self, vis, ir, plan=None):
        self.inputs.append((type(vis).__name__, type(ir).__name__))
        return self.fuser(vis, ir, plan=plan)


def test_capture_threads_prepare_engine_inputs_unless_infrared_is_still_warped(fuser: Fuser, tmp_path: Path):
    """Conversion to engine tensors runs in the capture threads (overlapping the engine's previous
    call); infrared that the main loop resizes or warps is converted after that, and the fused
    frames are the same either way."""
    vis = write_folder(tmp_path / "vi", 3, (48, 64, 3))
    ir = write_folder(tmp_path / "ir", 3, (48, 64))
    for resize in (False, True):
        spy = _RecordingFuser(fuser)
        Pipeline(PipelineConfig(vis=str(vis), ir=str(ir), publish=None, resize=resize), fuser=spy).run()
        assert spy.inputs == [("Tensor", "ndarray" if resize else "Tensor")] * 3
    vis_img, ir_img = read_image(vis / "0000.png"), read_image(ir / "0000.png")
    plan = fuser.plan_for(vis_img, ir_img)
    assert np.array_equal(fuser(prepare_visible(vis_img), prepare_infrared(ir_img), plan), fuser(vis_img, ir_img, plan))


def test_calibration_file_registers_infrared(fuser: Fuser, tmp_path: Path):
    vis = write_folder(tmp_path / "vi", 2, (48, 64, 3))
    ir = write_folder(tmp_path / "ir", 2, (40, 56))
    stats = RegistrationStats((0.9,), (0.1,), 0.0, 1, 1)
    shift = np.array([[1.0, 0, 4], [0, 1.0, 4], [0, 0, 1]])
    Calibration(shift, (56, 40), (64, 48), stats, "2026-01-01T00:00:00Z").save(tmp_path / "rig.toml")
    Calibration(shift, (56, 40), (640, 480), stats, "2026-01-01T00:00:00Z").save(tmp_path / "other.toml")
    base = dict(vis=str(vis), ir=str(ir), publish=None)
    report = Pipeline(PipelineConfig(**base, calib=str(tmp_path / "rig.toml")), fuser=fuser).run()
    assert report["frames"] == 2
    with pytest.raises(RtfuseError, match="calibration is for visible 640x480 .* streams are visible 64x48"):
        Pipeline(PipelineConfig(**base, calib=str(tmp_path / "other.toml")), fuser=fuser).run()


def test_folder_pairs_missing_partners_are_counted(fuser: Fuser, tmp_path: Path):
    vis = write_folder(tmp_path / "vi", 4, (32, 32, 3))
    ir = write_folder(tmp_path / "ir", 4, (32, 32))
    (ir / "0002.png").unlink()
    report = Pipeline(PipelineConfig(vis=str(vis), ir=str(ir), publish=None), fuser=fuser).run()
    assert report["frames"] == 3 and report["drops"] == {"unpaired_file": 1}


def test_a_corrupt_frame_file_is_skipped_and_counted_and_the_replay_goes_on(fuser: Fuser, tmp_path: Path):
    """A file does not heal when reopened: its frame is dropped at once, by reason, not retried."""
    vis = write_folder(tmp_path / "vi", 6, (32, 32, 3), corrupt=3)
    ir = write_folder(tmp_path / "ir", 6, (32, 32))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    headers: list[dict] = []
    ended: list[StreamEnded] = []

    def listen() -> None:
        with Subscriber(endpoint) as sub:
            try:
                while (got := sub.recv(timeout=60, newest=False)) is not None:
                    headers.append(got[1])
            except StreamEnded as end:
                ended.append(end)

    listener = threading.Thread(target=listen)
    listener.start()
    cfg = PipelineConfig(vis=str(vis), ir=str(ir), publish=endpoint, wait_subscribers=1, wait_timeout=60)
    report = Pipeline(cfg, fuser=fuser).run()
    listener.join(timeout=30)
    assert [(h["index_vis"], h["index_ir"]) for h in headers] == [(0, 0), (1, 1), (2, 2), (4, 4), (5, 5)]
    assert report["frames"] == 5 and report["meta"]["source_retries"] == 0
    assert report["drops"] == {"corrupt_vis": 1, "unmatched_ir": 1}  # the frame, and its partner left alone
    assert "drops: corrupt_vis 1, unmatched_ir 1" in summary(report)
    assert report["meta"]["ended_first"] is None
    assert len(ended) == 1 and ended[0].sent == 5  # the subscriber was told the stream ended
    report = Pipeline(PipelineConfig(vis=str(vis), ir=str(ir), publish=None, frames=4), fuser=fuser).run()
    assert report["frames"] == 4 and report["meta"]["ended_first"] is None  # `frames` counts fused pairs


def test_a_cut_video_replays_to_its_end_with_the_shortfall_counted(shared_data: Path, fuser: Fuser, tmp_path: Path):
    clips = shared_data / "video/m2vd"
    vis = write_avi(tmp_path / "vi.avi", real_frames(clips / "vi/0111_1716.mp4", 20))
    ir = write_avi(tmp_path / "ir.avi", real_frames(clips / "ir/0111_1716.mp4", 20))
    vis.write_bytes(vis.read_bytes()[: int(vis.stat().st_size * 0.6)])  # the header still announces 20
    decodable = frame_count(vis)
    assert 0 < decodable < 20
    report = Pipeline(PipelineConfig(vis=str(vis), ir=str(ir), publish=None), fuser=fuser).run()
    assert report["frames"] == decodable and report["meta"]["source_retries"] == 0
    assert report["drops"] == {"truncated_vis": 20 - decodable}
    assert report["meta"]["ended_first"] == "vis" and report["meta"]["unpaired_remainder"] == {"ir": 20 - decodable}
    # a cut .mp4 has lost its index (written last): it is refused at start, naming the file
    mp4 = tmp_path / "cut.mp4"
    mp4.write_bytes((clips / "vi/0111_1716.mp4").read_bytes()[:600_000])
    with pytest.raises(RtfuseError, match=f"{mp4}: cannot open"):
        Pipeline(PipelineConfig(vis=str(mp4), ir=str(ir), publish=None), fuser=fuser).run()


def test_a_source_that_ends_first_is_named_in_the_summary_and_the_report(shared_data: Path, fuser: Fuser,
                                                                         tmp_path: Path):
    ir = shared_data / "video/m2vd/ir/0111_1716.mp4"
    vis = write_avi(tmp_path / "vi.avi", real_frames(shared_data / "video/m2vd/vi/0111_1716.mp4", 8))
    report = Pipeline(PipelineConfig(vis=str(vis), ir=str(ir), resize=True, publish=None), fuser=fuser).run()
    left = frame_count(ir) - 8
    assert report["frames"] == 8 and report["drops"] == {}
    assert report["meta"]["ended_first"] == "vis" and report["meta"]["unpaired_remainder"] == {"ir": left}
    assert f"vis ended first: {left} ir frames left unpaired" in summary(report)


class UnpluggedCamera(Source):
    """A camera driver that delivers ``good`` frames, then fails on every read (a pulled cable)."""

    finite = False
    self_paced = True
    fps = 30.0

    def __init__(self, good: int):
        self.name, self.good, self._index = "usb-cam", good, 0

    def open(self) -> None:
        """Reopening finds the device node; reading is what fails."""

    def read(self) -> Grab:
        if self._index >= self.good:
            raise OSError("USB transfer error")
        self._index += 1
        return Grab(np.full((32, 32, 3), 90, np.uint8), time.monotonic(), (self._index - 1) / self.fps)


def test_a_camera_failing_mid_run_is_retried_then_stops_naming_the_source(fuser: Fuser, tmp_path: Path):
    ir = write_folder(tmp_path / "ir", 6, (32, 32))
    sources = {"vis": UnpluggedCamera(good=3), "ir": FolderSource(list_images(ir), str(ir))}
    cfg = PipelineConfig(vis="usb-cam", ir=str(ir), mode="replay", publish=None, retries=2, backoff_s=0.05)
    done: list[int] = []
    t0 = time.monotonic()
    with pytest.raises(RtfuseError) as err:
        Pipeline(cfg, fuser=fuser, sources=sources).run(on_frame=done.append)
    assert "vis source 'usb-cam' failed after 2 retries: OSError: USB transfer error" in str(err.value)
    assert done == [1, 2, 3] and time.monotonic() - t0 >= 0.15  # backoff 0.05 s, then 0.1 s


def test_non_loopback_publish_without_keys_is_refused(fuser: Fuser):
    cfg = PipelineConfig(synthetic_size=(32, 32), publish="tcp://0.0.0.0:5999", frames=1)
    with pytest.raises(RtfuseError, match="refusing to publish on non-loopback tcp://0.0.0.0:5999"):
        Pipeline(cfg, fuser=fuser).run()


def test_plan_refresh_runs_aside_on_scene_change(fuser: Fuser):
    dark = (np.full((48, 64, 3), 20, np.uint8), np.full((48, 64), 30, np.uint8))
    bright = (np.full((48, 64, 3), 200, np.uint8), np.full((48, 64), 90, np.uint8))
    assert not scene_changed(scene_signature(*dark), scene_signature(*dark), 0.1)
    assert scene_changed(scene_signature(*dark), scene_signature(*bright), 0.1)
    profiler = Profiler()
    plans = PlanManager(fuser, profiler, refresh_s=3600, scene_threshold=0.1)
    try:
        first = plans.current(*dark)
        assert first is not None and [r["reason"] for r in profiler.plan_refreshes] == ["first pair"]
        assert plans.current(*dark) is first  # same scene: no refresh
        t0 = time.perf_counter()
        assert plans.current(*bright) is first  # the refresh is queued, the frame goes on with the old plan
        assert time.perf_counter() - t0 < 0.05
        deadline = time.monotonic() + 30
        while len(profiler.plan_refreshes) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r["reason"] for r in profiler.plan_refreshes] == ["first pair", "scene change"]
    finally:
        plans.close()


def test_sigint_stops_a_live_run_within_2s_with_the_recording_finalised(tmp_path: Path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtfuse.cli", "run", "--backend", "eager", "--size", "96x64", "--duration", "120", "--publish", endpoint,
         "--record", str(out), "--profile", str(tmp_path / "live.json")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    ended: StreamEnded | None = None
    try:
        with Subscriber(endpoint) as sub:
            headers = []
            deadline = time.monotonic() + 90
            while len(headers) < 3 and time.monotonic() < deadline and proc.poll() is None:
                got = sub.recv(timeout=1.0, newest=False)
                if got is not None:
                    headers.append(got[1])
            assert len(headers) == 3, proc.stderr.read() if proc.poll() is not None else "no frames"
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            while ended is None and time.monotonic() < t0 + 10:
                try:
                    sub.recv(timeout=1.0)
                except StreamEnded as end:
                    ended = end
        stdout, stderr = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert elapsed < 2.0, f"shutdown took {elapsed:.2f} s"
    assert ended is not None and ended.sent >= 3  # a stop ends the stream for subscribers
    recorded = int(stdout.split("recorded ")[1].split()[0])
    assert recorded >= 3 and frame_count(out) == recorded
    report = load_report(tmp_path / "live.json")
    assert report["meta"]["mode"] == "live" and report["frames"] >= recorded
    assert "glass-to-glass p50/p95/p99" in stdout
    assert headers[0]["label"] and headers[0]["plan"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT twice", "SIGKILL"])
def test_a_recording_survives_any_stop(stop: str, tmp_path: Path):
    """What docker stop / systemd / timeout send, a double Ctrl-C, and a kill: the .mkv recording
    plays; after SIGKILL it holds every frame published more than 2 s before the kill; the clean
    and the interrupted stops write the profile."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out, profile = tmp_path / "rec.mkv", tmp_path / "rec.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtfuse.cli", "run", "--backend", "eager", "--size", "320x240", "--duration", "120", "--publish", endpoint,
         "--record", str(out), "--profile", str(profile)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    received: list[float] = []
    handled = ""  # stderr up to the line that says the first signal was handled
    try:
        with Subscriber(endpoint) as sub:
            deadline = time.monotonic() + 120
            while len(received) < 90 and time.monotonic() < deadline and proc.poll() is None:
                if sub.recv(timeout=1.0, newest=False) is not None:
                    received.append(time.monotonic())
            assert len(received) == 90, proc.stderr.read() if proc.poll() is not None else "too few frames"
            # the subscriber stops reading: a clean stop waits 0.5 s for it to confirm the end of the
            # stream, and a second Ctrl-C in that time must abort at once
            stopped = time.monotonic()
            if stop == "SIGKILL":
                proc.kill()
            else:
                proc.send_signal(signal.SIGTERM if stop == "SIGTERM" else signal.SIGINT)
                if stop == "SIGINT twice":  # once the first is handled: sent too soon, both make one stop
                    while "stopping on SIGINT" not in handled and (line := proc.stderr.readline()):
                        handled += line
                    time.sleep(0.05)  # the handler logs before it notes the signal (rtfuse/cli/_signals.py)
                    proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
        stderr = handled + stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    frames = frame_count(out)
    if stop == "SIGKILL":
        assert frames >= sum(t <= stopped - 2.0 for t in received) > 0
        return
    assert profile.is_file() and load_report(profile)["frames"] >= frames > 0
    if stop == "SIGTERM":
        assert proc.returncode == 0, stderr
        assert int(stdout.split("recorded ")[1].split()[0]) == frames
        assert "stopping on SIGTERM" in stderr
    else:
        assert proc.returncode == 130, stderr


def test_the_profile_is_written_when_a_run_fails(fuser: Fuser, tmp_path: Path):
    cfg = PipelineConfig(synthetic_size=(48, 32), frames=5, publish=f"tcp://127.0.0.1:{free_port()}",
                         wait_subscribers=1, wait_timeout=0.2, profile=str(tmp_path / "p.json"))
    pipeline = Pipeline(cfg, fuser=fuser)
    with pytest.raises(RtfuseError, match="0 of 1 subscribers"):
        pipeline.run()
    assert load_report(tmp_path / "p.json")["frames"] == 0 and pipeline.report["frames"] == 0


def test_summary_says_when_the_auto_engine_switched_and_how_it_ran_since():
    profiler = Profiler()
    for k in range(12):  # 15 FPS on the eager engine, then 30 FPS compiled from frame 6
        t = 100.0 + (k / 15 if k < 6 else 6 / 15 + (k - 6) / 30)
        profiler.add({s: 0.001 for s in STAGES}, 0.05 if k < 6 else 0.02, t, 0.06 if k < 6 else 0.025)
    profiler.meta = {"engine": "aoti", "engine_backend": "auto", "source_fps": 30.0,
                     "engine_switches": [{"engine": "aoti", "size": "64x48", "frame": 6}]}
    text = summary(profiler.report())
    assert "engine: eager, then aoti from frame 6" in text and "since then 30.0 FPS" in text
    assert "hint:" not in text
    profiler.meta["engine_switches"] = [{"engine": "aoti", "size": "64x48", "stages": "none", "frame": 6},
                                        {"engine": "aoti", "size": "64x48", "stages": "lowlight", "frame": 10}]
    text = summary(profiler.report())
    assert "engine: eager, then aoti (PKDM stages: none) from frame 6" in text
    assert "engine: aoti for PKDM stages lowlight from frame 10" in text
    profiler.meta = {"engine": "eager", "engine_backend": "auto", "source_fps": 30.0, "engine_switches": []}
    assert "still building aside and stays cached" in summary(profiler.report())


def test_summary_hints_at_a_compiled_engine_when_eager_falls_behind():
    profiler = Profiler()
    for k in range(6):  # 15 published frames per second
        profiler.add({s: 0.001 for s in STAGES}, 0.05, 100.0 + k / 15, 0.06)
    for engine, source_fps, hinted in (("eager", 30.0, True), ("aoti", 30.0, False), ("eager", 15.0, False)):
        profiler.meta = {"engine": engine, "source_fps": source_fps}
        assert ("`backend` aoti" in summary(profiler.report())) == hinted


def test_profile_cli_prints_and_plots(fuser: Fuser, tmp_path: Path):
    report_path = tmp_path / "r.json"
    Pipeline(PipelineConfig(synthetic_size=(48, 32), mode="replay", frames=5, publish=None,
                            profile=str(report_path)), fuser=fuser).run()
    out = subprocess.run([sys.executable, "-m", "rtfuse.cli", "profile", str(report_path), "--plot",
                          str(tmp_path / "p.png")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "glass-to-glass p50/p95/p99" in out.stdout and "inference" in out.stdout
    assert cv2.imread(str(tmp_path / "p.png")) is not None
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    out = subprocess.run([sys.executable, "-m", "rtfuse.cli", "profile", str(bad)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 2 and "not an rtfuse profile report" in out.stderr


def test_subscribe_cli_prints_a_line_per_frame(fuser: Fuser):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = subprocess.Popen([sys.executable, "-m", "rtfuse.cli", "subscribe", "--connect", endpoint, "--frames", "3",
                            "--all"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cfg = PipelineConfig(synthetic_size=(48, 32), mode="replay", frames=3, publish=endpoint,
                             wait_subscribers=1, wait_timeout=60)
        Pipeline(cfg, fuser=fuser).run()
        stdout, stderr = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, stderr
    lines = stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["0", "1", "2"]
    assert all("48x32 raw" in line and "label" in line and "glass-to-here" in line for line in lines)


def test_subscribe_cli_exits_0_when_a_run_ends_its_stream():
    """The end of a run is not a lost publisher: `rtfuse subscribe` says so and exits 0."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = subprocess.Popen([sys.executable, "-m", "rtfuse.cli", "subscribe", "--connect", endpoint, "--all",
                            "--timeout", "120"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "rtfuse.cli", "run", "--backend", "eager", "--size", "48x32", "--mode", "replay",
             "--frames", "3", "--publish", endpoint, "--wait-subscribers", "1", "--wait-timeout", "60"],
            cwd=REPO, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        stdout, stderr = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert run.returncode == 0, run.stderr
    assert sub.returncode == 0, stderr
    *frames, last = stdout.splitlines()
    assert [line.split()[1] for line in frames] == ["0", "1", "2"]
    assert last == f"stream ended: the publisher at {endpoint} closed it after 3 messages (3 received here)"


def test_window_output_refuses_clearly_without_a_gui():
    from rtfuse.pipeline import Window

    try:
        Window("rtfuse-test").close()
    except RtfuseError as exc:
        assert "no GUI" in str(exc) and "opencv-python" in str(exc)
    else:
        pytest.skip("this OpenCV build has a GUI")


def test_conversions_round_trip_uint8_frames():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    t = _unit_tensor(rgb)
    assert t.shape == (1, 3, 7, 9) and t.is_contiguous() and t.dtype == torch.float32
    assert np.array_equal(to_uint8_image(t), rgb)
    gray = to_uint8_image(_unit_tensor(rgb[..., 0]))
    assert gray.shape == (7, 9, 3) and np.array_equal(gray[..., 2], rgb[..., 0])
    out_of_range = torch.tensor([-0.3, 0.5, 1.7]).view(1, 1, 1, 3)
    assert to_uint8_image(out_of_range)[0, :, 0].tolist() == [0, 128, 255]  # clipped, never mirrored



def test_engine_leaves_one_core_to_the_decoders():
    assert [engine_threads(n) for n in (1, 2, 4, 16)] == [1, 1, 3, 15]
    assert engine_threads() >= 1


_RSS_AFTER_FREE = """
import os, sys
from rtfuse.process import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
block = bytearray(64 << 20)  # zero-filled: every page touched
del block
print(kept, (rss() - before) >> 20)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc to read the resident size")
def test_freed_frame_memory_stays_mapped_for_the_next_frame():
    def run(mode: str) -> tuple[bool, int]:
        out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE, mode], capture_output=True, text=True, check=True)
        kept, grown = out.stdout.split()
        return kept == "True", int(grown)

    kept, grown = run("keep")
    if not kept:
        pytest.skip("not glibc: keep_freed_memory is a no-op here")
    assert grown >= 60  # the 64 MB stay in the process, ready for the next allocation
    assert run("default")[1] < 16  # without it glibc unmaps the block at once


def test_a_replay_progress_bar_knows_its_total(tmp_path: Path):
    vis = write_folder(tmp_path / "vi", 5, (32, 48, 3))
    ir = write_folder(tmp_path / "ir", 5, (32, 48))
    r = subprocess.run([sys.executable, "-m", "rtfuse.cli", "run", "--backend", "eager", "--vis", str(vis), "--ir", str(ir),
                        "--no-publish"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "/5 [" in r.stderr  # tqdm's "n/total [elapsed" once the sources are open
