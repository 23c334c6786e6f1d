"""Every default a user may want to change, in one annotated place.

Plain constants without heavy imports: the command line offers them as choices and defaults while
parsing, before torch loads; the library modules take their defaults from here.
"""

from __future__ import annotations

# --- publishing (rtfuse.publish, `rtfuse run`, `rtfuse subscribe`, `rtfuse detect`)
ENDPOINT = "tcp://127.0.0.1:5555"  # loopback: needs no CURVE keys; any other address does
TOPIC = "fused"  # the ZeroMQ topic of fused frames; detections go out under their own

# --- planning (rtfuse.pipeline, `rtfuse run`, `rtfuse fuse`)
SCENE_THRESHOLD = 0.1  # mean thumbnail difference (0..1) that counts as a new scene and is planned anew

# --- engines (rtfuse.engine, rtfuse.fuser)
BACKENDS = ("eager", "compiled", "aoti", "tensorrt")  # eager runs anywhere; the others compile once
EXPORTABLE_BACKENDS = ("aoti", "tensorrt")  # the backends whose artifact `rtfuse export` writes
PRECISIONS = ("fp32", "bf16", "fp16")  # bf16 is the CPU option, fp16 the GPU one; eager is fp32

# --- metrics (rtfuse.metrics, `rtfuse eval`)
METRIC_CONVENTIONS = ("cddfuse", "matlab", "matlab-uint8")
METRIC_CONVENTION = "cddfuse"  # quirk-free Qabf: decisions and comparisons; matlab reproduces published tables
