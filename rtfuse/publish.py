"""ZeroMQ publishing of fused frames, and the subscriber downstream nodes use.

Wire format: one multipart message per frame, ``[topic, header, payload]``. The header is UTF-8
JSON (frame id, grab and stage times, shape, dtype, encoding, degradation label/probabilities,
expert plan id); the payload is the raw C-order pixels (sent zero-copy) or a JPEG. The socket is
an XPUB (a PUB that also reports subscriptions, so a replay can wait for its subscribers) with a
small send high-water mark: a slow subscriber loses old frames, the publisher never blocks and
its memory stays flat (ZMQ_CONFLATE would do this but does not work with multipart messages).
A publisher that closes normally ends with a ``[topic, header]`` message whose header is
``{"end_of_stream": true, "stream": ID, "sent": N, "topic": ...}``; ``Subscriber.recv`` raises
``StreamEnded`` on it, so that the end of a stream does not look like a lost publisher. A
subscriber confirms the end by unsubscribing (and subscribing again, ready for the next
publisher). Until every subscriber confirmed or left (``END_TIMEOUT_S`` at most) the publisher
sends the message again every ``END_RESEND_S``, because a full subscriber queue drops it like a
frame, and ZeroMQ discards on close whatever it has not written to the network yet; subscribers
skip the copies by their ``stream`` id.

Binding anything but loopback needs CURVE keys (``rtfuse keys``), or an explicit ``insecure``.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from rtfuse import defaults
from rtfuse.errors import ParameterError, RtfuseError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = defaults.ENDPOINT
DEFAULT_TOPIC = defaults.TOPIC
SERVER_KEY = "server"
CLIENT_KEY = "client"
END_TIMEOUT_S = 0.5  # how long close() waits for the subscribers to confirm the end-of-stream message
END_RESEND_S = 0.1  # how often it sends the message again meanwhile
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def is_loopback(endpoint: str) -> bool:
    """True for endpoints no other machine can reach: ipc, inproc, or tcp on a loopback host."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS or bool(re.fullmatch(r"127(\.\d{1,3}){3}", host))


def generate_keys(directory: str | Path, name: str = CLIENT_KEY) -> tuple[Path, Path]:
    """Create a CURVE key pair ``NAME.key`` (public) / ``NAME.key_secret`` in ``directory``.

    The first call also creates the ``server`` pair the publisher uses. Every ``*.key`` public
    key in the folder is a subscriber the publisher accepts, so adding a client is one call.
    """
    directory = Path(directory)
    if name == SERVER_KEY:
        raise RtfuseError(f"{SERVER_KEY!r} is the publisher's key name; give the subscriber another name")
    directory.mkdir(parents=True, exist_ok=True)
    server_secret = directory / f"{SERVER_KEY}.key_secret"
    if not server_secret.is_file():
        zmq.auth.create_certificates(str(directory), SERVER_KEY)
        server_secret.chmod(0o600)
    secret = directory / f"{name}.key_secret"
    if secret.exists():
        raise ParameterError(f"{secret}: already exists; choose another `name`")
    zmq.auth.create_certificates(str(directory), name)
    secret.chmod(0o600)
    return directory / f"{name}.key", secret


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    if not path.is_file():
        raise RtfuseError(f"{path}: CURVE key not found (create keys with `rtfuse keys DIR`)")
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise RtfuseError(f"{path}: holds no secret key")
    return public, secret


def _load_public(path: Path) -> bytes:
    if not path.is_file():
        raise RtfuseError(f"{path}: CURVE public key not found (copy it from the publisher's key folder)")
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def encode_frame(frame: np.ndarray, encoding: str = "raw", jpeg_quality: int = 90) -> tuple[Any, dict]:
    """Payload and the header fields describing it; raw payloads are the array itself (zero-copy)."""
    frame = np.ascontiguousarray(frame)
    meta = {"shape": list(frame.shape), "dtype": str(frame.dtype), "encoding": encoding}
    if encoding == "raw":
        return frame, meta
    if encoding == "jpeg":
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RtfuseError("JPEG encoding failed")
        return buf, meta
    raise RtfuseError(f"unknown encoding {encoding!r} (raw or jpeg)")


def decode_frame(payload: memoryview | bytes, header: dict) -> np.ndarray:
    """Inverse of encode_frame; raw frames are a read-only view on the message buffer."""
    if header["encoding"] == "raw":
        return np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
    img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise RtfuseError("undecodable JPEG payload")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


class StreamEnded(Exception):
    """The publisher closed its stream normally (end of a replay, a stop): not an error.

    ``Subscriber.recv`` raises it at the end-of-stream message; ``sent`` is how many messages the
    publisher had sent, ``header`` the whole message.
    """

    def __init__(self, endpoint: str, header: dict):
        self.header = header
        self.sent: int | None = header.get("sent")
        super().__init__(f"{endpoint}: the stream ended ({self.sent} messages sent)")


class Publisher:
    """Non-blocking frame publisher on an XPUB socket.

    ``keys`` is a folder made by ``rtfuse keys``: the socket becomes a CURVE server with its
    ``server.key_secret`` and only subscribers whose public key is in the folder may connect.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        topic: str = DEFAULT_TOPIC,
        encoding: str = "raw",
        jpeg_quality: int = 90,
        hwm: int = 4,
        keys: str | Path | None = None,
        insecure: bool = False,
        context: zmq.Context | None = None,
    ):
        if not is_loopback(endpoint) and keys is None and not insecure:
            raise RtfuseError(
                f"refusing to publish on non-loopback {endpoint} without encryption: give `keys` (a key "
                f"folder, e.g. from `rtfuse keys DIR`) or `insecure` to publish in the clear"
            )
        if encoding not in ("raw", "jpeg"):
            raise RtfuseError(f"unknown encoding {encoding!r} (raw or jpeg)")
        self.endpoint, self.topic, self.encoding, self.jpeg_quality = endpoint, topic.encode(), encoding, jpeg_quality
        self.sent = 0
        self.subscribers = 0
        self.stream_id = secrets.token_hex(8)  # tells the copies of this stream's end-of-stream message apart
        # ZeroMQ allows one authenticator (ZAP handler) per context, and a stopped one releases its
        # inproc endpoint asynchronously: a keyed publisher gets a context of its own, so that two
        # of them in one process (or one right after another) never collide on it.
        self._own_ctx = keys is not None and context is None
        self._ctx = zmq.Context() if self._own_ctx else context or zmq.Context.instance()
        self._auth: ThreadAuthenticator | None = None
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # report subscribes and unsubscribes
        sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys = Path(keys)
            public, secret = _load_secret(keys / f"{SERVER_KEY}.key_secret")
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(keys))
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            self._release_auth()
            raise RtfuseError(f"cannot bind {endpoint}: {exc}") from exc
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)  # the real port when bound to ":*"

    def _release_auth(self) -> None:
        """Stop the authenticator, and end the context that a keyed publisher owns."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx:
            self._ctx.term()
            self._own_ctx = False

    def _poll_subscriptions(self) -> None:
        while True:
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscribers += 1
            elif msg[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)

    def wait_for_subscribers(self, count: int, timeout: float) -> bool:
        """Block until ``count`` subscriptions arrived (replay: nobody misses the first frame)."""
        deadline = time.monotonic() + timeout
        while True:
            self._poll_subscriptions()
            if self.subscribers >= count:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._sock.poll(min(left, 0.1) * 1000)

    def send(self, frame: np.ndarray, header: dict) -> None:
        """Publish one frame without blocking.

        Raw frames are sent zero-copy: the caller must not modify ``frame`` afterwards. A
        subscriber whose queue is full silently misses the frame (ZeroMQ PUB semantics);
        subscribers count the gaps in frame ids (``Subscriber.missed``).
        """
        self._poll_subscriptions()
        payload, meta = encode_frame(frame, self.encoding, self.jpeg_quality)
        head = json.dumps({**header, **meta, "topic": self.topic.decode()}).encode()
        self._sock.send_multipart([self.topic, head, payload], flags=zmq.NOBLOCK, copy=False)
        self.sent += 1

    def send_header(self, header: dict) -> None:
        """Publish a message without pixels, ``[topic, header]`` (detections, events)."""
        self._poll_subscriptions()
        head = json.dumps({**header, "topic": self.topic.decode()}).encode()
        self._sock.send_multipart([self.topic, head], flags=zmq.NOBLOCK)
        self.sent += 1

    def close(self, end_of_stream: bool = True) -> None:
        """Close the socket; ``end_of_stream`` first tells the subscribers that the stream ended.

        Pass False when the stream failed: subscribers then time out, as when a publisher dies.
        """
        if self._sock.closed:
            return
        if end_of_stream:
            self._end_stream()
        self._sock.close(linger=0)
        self._release_auth()

    def _end_stream(self) -> None:
        """Send the end-of-stream message until each subscriber confirmed it or left.

        A subscriber that never reads, or does not confirm (a raw ZeroMQ socket, an older rtfuse),
        costs ``END_TIMEOUT_S`` once, at close, and may get several copies.
        """
        self._poll_subscriptions()
        waiting = self.subscribers
        head = json.dumps({"end_of_stream": True, "stream": self.stream_id, "sent": self.sent,
                           "topic": self.topic.decode()}).encode()
        deadline = time.monotonic() + END_TIMEOUT_S
        resend_at = 0.0
        while True:
            now = time.monotonic()
            if now >= resend_at:
                self._sock.send_multipart([self.topic, head], flags=zmq.NOBLOCK)
                resend_at = now + END_RESEND_S
            if waiting <= 0:
                return
            if now >= deadline:
                log.info("%s: %d subscriber(s) did not confirm the end of the stream", self.endpoint, waiting)
                return
            if self._sock.poll((min(resend_at, deadline) - now) * 1000) and self._sock.recv()[:1] == b"\x00":
                waiting -= 1  # an unsubscription: a confirmation, or a subscriber leaving

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(end_of_stream=exc_type is None)


class Subscriber:
    """Receives frames from a Publisher: ``recv()`` gives the newest (frame, header).

    Older queued frames are skipped, so a slow consumer always works on the present; pass
    ``newest=False`` to read every frame in order instead. ``keys`` is a folder holding the
    publisher's ``server.key`` and this subscriber's ``NAME.key_secret``.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        topic: str = DEFAULT_TOPIC,
        hwm: int = 4,
        keys: str | Path | None = None,
        key_name: str = CLIENT_KEY,
        context: zmq.Context | None = None,
    ):
        self.endpoint = endpoint
        self.malformed = 0
        self.received = 0
        self.missed = 0  # frames skipped for newest-first reading or lost to a full queue
        self._last_frame: int | None = None
        self._ended: str | None = None  # stream id of the last end-of-stream message: its copies are skipped
        self._ctx = context or zmq.Context.instance()
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys = Path(keys)
            public, secret = _load_secret(keys / f"{key_name}.key_secret")
            sock.curve_secretkey, sock.curve_publickey = secret, public
            sock.curve_serverkey = _load_public(keys / f"{SERVER_KEY}.key")
        self._topic = topic.encode()
        sock.setsockopt(zmq.SUBSCRIBE, self._topic)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise RtfuseError(f"cannot connect to {endpoint}: {exc}") from exc
        self._sock = sock

    def _parse(self, parts: list[zmq.Frame]) -> tuple[np.ndarray | None, dict] | None:
        try:
            header = json.loads(parts[1].bytes)
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            if header.get("end_of_stream") is True:
                return self._end(header)
            frame = None if len(parts) == 2 else decode_frame(parts[2].buffer, header)
        except (IndexError, KeyError, ValueError, TypeError, RtfuseError) as exc:
            self.malformed += 1
            log.warning("%s: skipping malformed message: %s", self.endpoint, exc)
            return None
        self.received += 1
        n = header.get("frame")
        if isinstance(n, int):
            if self._last_frame is not None and n > self._last_frame:
                self.missed += n - self._last_frame - 1
            self._last_frame = n
        return frame, header

    def _end(self, header: dict) -> None:
        """Raise StreamEnded at an end-of-stream message, and confirm it; its copies give None."""
        if header.get("stream") is not None and header.get("stream") == self._ended:
            return None
        self._ended = header.get("stream")
        # the publisher sees the unsubscription; subscribing again waits for the next publisher
        self._sock.setsockopt(zmq.UNSUBSCRIBE, self._topic)
        self._sock.setsockopt(zmq.SUBSCRIBE, self._topic)
        raise StreamEnded(self.endpoint, header)

    def recv(self, timeout: float | None = 1.0, newest: bool = True) -> tuple[np.ndarray | None, dict] | None:
        """Next (frame, header), or None when nothing arrived within ``timeout`` seconds.

        Messages without pixels (``Publisher.send_header``: detections) give ``(None, header)``.
        Raises ``StreamEnded`` when the publisher ended the stream (and confirms it to the
        publisher); the subscriber stays connected, so a later call receives a new publisher on the
        same endpoint.
        """
        if not self._sock.poll(None if timeout is None else timeout * 1000):
            return None
        parts = self._sock.recv_multipart(copy=False)
        while newest:
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
        return self._parse(parts)

    def close(self) -> None:
        self._sock.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
