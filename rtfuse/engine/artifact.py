"""Engine artifacts on disk: the compiled file plus a JSON sidecar that says what it was built from.

A compiled artifact embeds every weight that is not plan-dependent, so running it with another
checkpoint, or under another torch version, gives wrong results or crashes; loading compares the
sidecar with the running model and torch first and refuses a mismatch in one line.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from rtfuse.checkpoint import file_sha256
from rtfuse.errors import RtfuseError
from rtfuse.model import FusionNet

FORMAT = "rtfuse-engine"
VERSION = 2  # bump when the exported forward changes; 2: the fused colour takes the input's chroma
SUFFIX = {"aoti": ".pt2", "tensorrt": ".ep"}


def state_dict_sha256(model: FusionNet) -> str:
    """Hash of the weights themselves (names, dtypes, shapes, bytes), for models without a file."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_sha256(model: FusionNet, checkpoint: str | Path | None) -> str:
    """The checkpoint file's hash when the model came from one, else the state dict's."""
    return file_sha256(checkpoint) if checkpoint else state_dict_sha256(model)


@dataclass(frozen=True)
class Sidecar:
    backend: str
    artifact: str  # file name, next to the sidecar
    model: str
    checkpoint_sha256: str
    height: int
    width: int
    precision: str
    device: str
    channels_last: bool
    torch: str
    stages: str = "all"  # the PKDM stages compiled in (engine.fold.stages_spec); older sidecars: all
    format: str = FORMAT
    version: int = VERSION
    created: str = ""

    def write(self, path: Path) -> None:
        data = asdict(self) | {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> "Sidecar":
        if not path.is_file():
            raise RtfuseError(f"{path}: no engine sidecar (export writes NAME.json next to the artifact)")
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise RtfuseError(f"{path}: not an rtfuse engine sidecar (no '{FORMAT}' format)")
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise RtfuseError(f"{path}: unreadable engine sidecar ({exc})") from None

    def check(self, path: Path, model_hash: str, device: str) -> None:
        """Refuse an artifact that was not built for this model, torch, device and rtfuse forward."""
        if self.version != VERSION:
            raise RtfuseError(f"{path}: engine format {self.version}, this rtfuse runs format {VERSION} "
                              "(the exported forward changed); re-export it")
        if self.checkpoint_sha256 != model_hash:
            raise RtfuseError(
                f"{path}: engine was exported from model {self.checkpoint_sha256[:12]}, the running model is "
                f"{model_hash[:12]}; re-export it with this checkpoint"
            )
        if self.torch != str(torch.__version__):
            raise RtfuseError(f"{path}: engine was built with torch {self.torch}, this is torch {torch.__version__}; re-export it")
        if self.device != device:
            raise RtfuseError(f"{path}: engine was built for {self.device}, requested {device}")


def artifact_paths(out: str | Path, backend: str) -> tuple[Path, Path]:
    """``export/NAME`` -> (``export/NAME.pt2`` or ``.ep``, ``export/NAME.json``)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (*SUFFIX.values(), ".json") else out
    return stem.with_name(stem.name + SUFFIX[backend]), stem.with_name(stem.name + ".json")
