"""ZeroMQ publishing on real loopback sockets: wire format, slow subscribers, security, detection node."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from rtfuse.detect import Detection, DetectionNode, detection_message, yolo_detector
from rtfuse.errors import RtfuseError
from rtfuse.publish import Publisher, StreamEnded, Subscriber, generate_keys, is_loopback

REPO = Path(__file__).resolve().parents[1]
ANY_PORT = "tcp://127.0.0.1:*"
HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(n: int = 4, shape=(480, 640, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_raw_and_jpeg_round_trip_with_header():
    img = frames(1, (37, 53, 3))[0]
    for encoding in ("raw", "jpeg"):
        with Publisher(ANY_PORT, encoding=encoding) as pub, Subscriber(pub.endpoint) as sub:
            assert pub.wait_for_subscribers(1, timeout=5)
            pub.send(img, {"frame": 7, "label": "haze", "plan": "ab12"})
            got = sub.recv(timeout=5)
            assert got is not None
            frame, header = got
            assert header["frame"] == 7 and header["label"] == "haze" and header["plan"] == "ab12"
            assert header["shape"] == [37, 53, 3] and header["dtype"] == "uint8" and header["encoding"] == encoding
            assert frame.shape == img.shape and frame.dtype == np.uint8
            if encoding == "raw":
                assert np.array_equal(frame, img)
            else:
                assert float(np.abs(frame.astype(int) - img).mean()) < 60  # noise image: JPEG is lossy


def test_wire_format_is_three_parts_topic_json_payload_and_a_two_part_end():
    img = frames(1, (4, 5, 3))[0]
    sock = zmq.Context.instance().socket(zmq.SUB)
    try:
        with Publisher(ANY_PORT, topic="cam") as pub:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(pub.endpoint)
            assert pub.wait_for_subscribers(1, timeout=5)
            pub.send(img, {"frame": 0})
            assert sock.poll(5000)
            topic, header, payload = sock.recv_multipart()
        assert sock.poll(5000)
        end = sock.recv_multipart()
    finally:
        sock.close(linger=0)
    assert topic == b"cam" and json.loads(header)["shape"] == [4, 5, 3] and payload == img.tobytes()
    assert end[0] == b"cam" and json.loads(end[1]) == {"end_of_stream": True, "stream": pub.stream_id, "sent": 1,
                                                       "topic": "cam"}


def test_subscribers_see_the_end_of_a_stream_but_not_of_a_failed_one():
    imgs = frames(3, (8, 8, 3))
    with Publisher(ANY_PORT) as pub, Subscriber(pub.endpoint) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        for k in range(3):
            pub.send(imgs[k], {"frame": k})
        pub.close()
        assert [sub.recv(timeout=5, newest=False)[1]["frame"] for _ in range(3)] == [0, 1, 2]
        with pytest.raises(StreamEnded, match="the stream ended") as ended:
            sub.recv(timeout=5)
        assert ended.value.sent == 3 and sub.received == 3
        assert sub.recv(timeout=0.3) is None  # the copies sent until the confirmation are skipped
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(endpoint) as sub:
        with pytest.raises(RuntimeError, match="camera on fire"), Publisher(endpoint) as failing:
            assert failing.wait_for_subscribers(1, timeout=5)
            failing.send(imgs[0], {"frame": 0})
            assert sub.recv(timeout=5)[1]["frame"] == 0
            raise RuntimeError("camera on fire")
        assert sub.recv(timeout=0.5) is None  # a failed stream closes without the end-of-stream message


PUBLISH_3 = """
import sys
import numpy as np
from rtfuse.publish import Publisher
with Publisher(sys.argv[1]) as pub:
    assert pub.wait_for_subscribers(1, timeout=30)
    for k in range(3):
        pub.send(np.zeros((8, 8, 3), np.uint8), {"frame": k})
"""


def test_after_an_end_the_subscriber_receives_the_next_publisher_on_the_endpoint():
    """A publisher process that starts again (a restarted run) reaches the same Subscriber."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(endpoint) as sub:
        for _ in range(2):
            proc = subprocess.Popen([sys.executable, "-c", PUBLISH_3, endpoint], cwd=REPO)
            try:
                assert [sub.recv(timeout=30, newest=False)[1]["frame"] for _ in range(3)] == [0, 1, 2]
                with pytest.raises(StreamEnded):
                    sub.recv(timeout=30)
                assert proc.wait(timeout=30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def test_a_lagging_subscriber_still_gets_the_end_of_the_stream():
    """A full queue drops the end-of-stream message like a frame: the publisher sends it again
    until the subscriber confirms."""
    imgs = frames(4)
    other = zmq.Context()  # the subscriber's own I/O thread, as in another process
    got: list[int] = []
    ended: list[StreamEnded] = []
    try:
        with Publisher(ANY_PORT) as pub, Subscriber(pub.endpoint, context=other) as slow:
            assert pub.wait_for_subscribers(1, timeout=5)
            for k in range(60):  # far more than the queues and socket buffers hold
                pub.send(imgs[k % 4], {"frame": k})

            def read() -> None:
                time.sleep(0.2)  # the publisher closes while the queues are still full
                try:
                    while (message := slow.recv(timeout=5, newest=False)) is not None:
                        got.append(message[1]["frame"])
                except StreamEnded as end:
                    ended.append(end)

            reader = threading.Thread(target=read)
            reader.start()
            pub.close()
            reader.join(timeout=30)
    finally:
        other.term()
    assert 0 < len(got) < 60 and ended and ended[0].sent == 60


def test_newest_skips_queued_frames_and_counts_them():
    imgs = frames(5, (8, 8, 3))
    with Publisher(ANY_PORT) as pub, Subscriber(pub.endpoint) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.send(imgs[0], {"frame": 0})
        assert sub.recv(timeout=2)[1]["frame"] == 0
        for k in (1, 2, 3):
            pub.send(imgs[k], {"frame": k})
        time.sleep(0.3)
        frame, header = sub.recv(timeout=2)
        assert header["frame"] == 3 and np.array_equal(frame, imgs[3]) and sub.missed == 2
        pub.send(imgs[4], {"frame": 4})
        pub.send(imgs[0], {"frame": 5})
        time.sleep(0.3)
        assert sub.recv(timeout=2, newest=False)[1]["frame"] == 4  # in-order reading
        assert sub.recv(timeout=2, newest=False)[1]["frame"] == 5
        assert sub.recv(timeout=0.05) is None and sub.missed == 2


def test_malformed_messages_are_skipped():
    with Publisher(ANY_PORT) as pub, Subscriber(pub.endpoint) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        pub._sock.send_multipart([b"fused", b"{not json", b"x"])
        assert sub.recv(timeout=2) is None and sub.malformed == 1


def test_stalled_subscriber_neither_slows_the_publisher_nor_grows_memory():
    imgs = frames(4)
    other = zmq.Context()  # the subscriber's own I/O thread, as in another process
    try:
        with Publisher(ANY_PORT) as alone, Publisher(ANY_PORT) as pub, \
                Subscriber(pub.endpoint, context=other) as stalled:
            assert pub.wait_for_subscribers(1, timeout=5)
            for k in range(200):  # fill the subscriber's queues and socket buffers
                pub.send(imgs[k % 4], {"frame": k})
            rss0 = rss_bytes()
            # time single sends, alternating between the two publishers, and compare medians:
            # robust against load from other processes on a shared machine
            t_alone, t_stalled = [], []
            for k in range(2000):
                t0 = time.perf_counter()
                alone.send(imgs[k % 4], {"frame": k})
                t1 = time.perf_counter()
                pub.send(imgs[k % 4], {"frame": k})
                t_stalled.append(time.perf_counter() - t1)
                t_alone.append(t1 - t0)
            growth = rss_bytes() - rss0
            stale = []  # reading again, it first gets what its queue held ...
            while (got := stalled.recv(timeout=0.5)) is not None:
                stale.append(got[1]["frame"])
            assert stale
            pub.send(imgs[0], {"frame": 5000})
            _, header = stalled.recv(timeout=2)  # ... then the present
            assert header["frame"] == 5000 and stalled.missed > 1000
    finally:
        other.term()
    rate_alone, rate_stalled = 1 / np.median(t_alone), 1 / np.median(t_stalled)
    print(f"publish rate alone {rate_alone:.0f}/s, with a stalled subscriber {rate_stalled:.0f}/s, "
          f"RSS growth {growth / 1e6:.1f} MB")
    assert rate_stalled >= 0.9 * rate_alone, (rate_alone, rate_stalled)
    assert growth < 30e6, f"memory grew {growth / 1e6:.1f} MB over 2,000 frames (one frame is 0.9 MB)"


def test_loopback_detection():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://localhost:1") and is_loopback("ipc:///tmp/x")
    assert is_loopback("tcp://[::1]:5555")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555")
    assert not is_loopback("tcp://192.168.1.5:5555") and not is_loopback("tcp://eth0:5555")


def test_non_loopback_bind_needs_keys_or_insecure(tmp_path: Path):
    with pytest.raises(RtfuseError, match="non-loopback tcp://0.0.0.0:.*`keys`.*`insecure`"):
        Publisher("tcp://0.0.0.0:*")
    with Publisher("tcp://0.0.0.0:*", insecure=True) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")
    generate_keys(tmp_path / "keys")
    with Publisher("tcp://0.0.0.0:*", keys=tmp_path / "keys") as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")


def test_curve_subscribers_must_hold_an_accepted_key(tmp_path: Path):
    keys, strangers = tmp_path / "keys", tmp_path / "strangers"
    generate_keys(keys)
    generate_keys(strangers)
    (strangers / "server.key").write_bytes((keys / "server.key").read_bytes())  # knows the server, not accepted
    assert (keys / "client.key_secret").stat().st_mode & 0o077 == 0
    img = frames(1, (6, 6, 3))[0]
    with Publisher("tcp://127.0.0.1:*", keys=keys) as pub:
        port = pub.endpoint.rsplit(":", 1)[1]
        endpoint = f"tcp://127.0.0.1:{port}"
        with Subscriber(endpoint, keys=keys) as good, Subscriber(endpoint, keys=strangers) as stranger, \
                Subscriber(endpoint) as plain:
            assert pub.wait_for_subscribers(1, timeout=5)
            time.sleep(0.3)  # give the rejected handshakes time to (not) complete
            assert pub.subscribers == 1
            pub.send(img, {"frame": 0})
            frame, _ = good.recv(timeout=3)
            assert np.array_equal(frame, img)
            assert stranger.recv(timeout=0.3) is None and plain.recv(timeout=0.3) is None
    with pytest.raises(RtfuseError, match="already exists"):
        generate_keys(keys)


def test_two_keyed_publishers_live_in_one_process(tmp_path: Path):
    """ZeroMQ allows one authenticator per context: each keyed publisher owns its context."""
    generate_keys(tmp_path / "keys")
    with Publisher("tcp://127.0.0.1:*", keys=tmp_path / "keys") as a, \
            Publisher("tcp://127.0.0.1:*", keys=tmp_path / "keys") as b:
        assert a.endpoint != b.endpoint


def test_keys_cli_creates_a_usable_folder(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "rtfuse.cli", "keys", str(tmp_path / "k"), "--name", "cam-node"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in (tmp_path / "k").iterdir()} == {
        "server.key", "server.key_secret", "cam-node.key", "cam-node.key_secret"}


def bright_blob_detector(frame: np.ndarray) -> list[Detection]:
    """A stand-in for YOLO, which is an optional extra: the box around pixels brighter than 200."""
    ys, xs = np.nonzero(frame.max(axis=2) > 200)
    if len(xs) == 0:
        return []
    return [Detection(0, "hot", 1.0, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))]


def test_detection_node_republishes_detections_as_json():
    img = np.zeros((48, 64, 3), np.uint8)
    img[10:20, 30:40] = 255
    with Publisher(ANY_PORT) as pub:
        with DetectionNode(bright_blob_detector, pub.endpoint, ANY_PORT) as node, \
                Subscriber(node.publisher.endpoint, topic="detections") as out:
            assert pub.wait_for_subscribers(1, timeout=5) and node.publisher.wait_for_subscribers(1, timeout=5)
            pub.send(img, {"frame": 3, "grab": 1.5, "label": "clean", "plan": "p1"})
            message = node.step(timeout=3)
            assert message is not None
            frame, header = out.recv(timeout=3)
    assert frame is None and header == {**message, "topic": "detections"}
    assert header["frame"] == 3 and header["grab"] == 1.5 and header["label"] == "clean"
    assert header["detections"] == [{"cls": 0, "name": "hot", "conf": 1.0, "box": [30.0, 10.0, 40.0, 20.0]}]
    assert detection_message({"frame": 1}, [], 0.0)["detections"] == []


def test_detection_node_stops_at_the_end_of_the_fused_stream_and_passes_it_on():
    img = np.zeros((48, 64, 3), np.uint8)
    with Publisher(ANY_PORT) as pub, DetectionNode(bright_blob_detector, pub.endpoint, ANY_PORT) as node, \
            Subscriber(node.publisher.endpoint, topic="detections") as out:
        assert pub.wait_for_subscribers(1, timeout=5) and node.publisher.wait_for_subscribers(1, timeout=5)
        runner = threading.Thread(target=node.run, args=(threading.Event(),))
        runner.start()
        pub.send(img, {"frame": 0})
        assert out.recv(timeout=5)[1]["frame"] == 0
        pub.close()  # the fused stream ends: the node stops ...
        runner.join(timeout=10)
        assert not runner.is_alive() and node.processed == 1
        node.close()  # ... and its own subscribers learn that its stream ended too
        with pytest.raises(StreamEnded):
            out.recv(timeout=5)


@pytest.mark.skipif(HAS_ULTRALYTICS, reason="the 'detect' extra is installed")
def test_detect_without_the_extra_says_so_in_one_line():
    with pytest.raises(RtfuseError, match=r"needs the 'detect' extra.*pip install 'rtfuse\[detect\]'"):
        yolo_detector("yolov8n.pt")
    out = subprocess.run([sys.executable, "-m", "rtfuse.cli", "detect", "--weights", "yolov8n.pt"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "'detect' extra" in out.stderr


@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="the 'detect' extra (ultralytics) is not installed")
def test_yolo_detection_node_with_random_weights():
    detector = yolo_detector("yolov8n.yaml", conf=0.0)
    img = frames(1, (160, 224, 3))[0]
    detections = detector(img)
    assert all(0 <= d.box[0] <= d.box[2] <= 224 and 0 <= d.box[1] <= d.box[3] <= 160 for d in detections)
    with pytest.raises(RtfuseError, match="never downloads"):
        yolo_detector("yolov8n.pt")
    stop = threading.Event()
    with Publisher(ANY_PORT) as pub, DetectionNode(detector, pub.endpoint, ANY_PORT) as node:
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.send(img, {"frame": 0})
        node.run(stop, frames=1)
    assert node.processed == 1
