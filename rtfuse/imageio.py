"""Reading, writing and normalising images; pairing IR/visible folders by file name.

Everything the CLI, the evaluator and the replay sources read goes through here, so that
bit depth, channel order and error messages are handled in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rtfuse.color import rgb_to_gray
from rtfuse.errors import ParameterError, RtfuseError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Read an image as RGB (H,W,3) or gray (H,W), keeping 16-bit data 16-bit."""
    path = Path(path)
    if not path.is_file():
        raise RtfuseError(f"{path}: no such file")
    flag = cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), flag)
    if img is None:
        raise RtfuseError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if gray and img.ndim == 3:
        img = rgb_to_gray(img)
    return img


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write an RGB or gray uint8 image; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise RtfuseError(f"{path}: cannot encode image with suffix {path.suffix!r}")
    buf.tofile(str(path))


def save_figure(fig, path: str | Path, dpi: int, **savefig_options) -> None:
    """Write a matplotlib figure (parent folders are created) and release it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig_options)
    plt.close(fig)


def agc_limits(img: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """Percentile window for automatic gain control of high-bit-depth infrared."""
    sample = img[::4, ::4] if img.size > 65536 else img
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def to_float01(img: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Map an image to float32 in [0,1].

    uint8 is divided by 255; uint16 (radiometric IR, 14/16-bit) goes through automatic gain
    control with the given ``limits`` or per-frame percentiles; float input is clipped.
    """
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        lo, hi = limits if limits is not None else agc_limits(img)
        return np.clip((img.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img.astype(np.float32), 0.0, 1.0)
    raise RtfuseError(f"unsupported image dtype {img.dtype}")


class TemporalAGC:
    """Automatic gain control for a 16-bit IR stream, smoothed over time so it does not pump."""

    def __init__(self, alpha: float = 0.1, low_pct: float = 0.5, high_pct: float = 99.5):
        self.alpha = alpha
        self.low_pct, self.high_pct = low_pct, high_pct
        self.limits: tuple[float, float] | None = None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint16:
            return to_float01(img)
        lo, hi = agc_limits(img, self.low_pct, self.high_pct)
        if self.limits is None:
            self.limits = (lo, hi)
        else:
            a = self.alpha
            self.limits = ((1 - a) * self.limits[0] + a * lo, (1 - a) * self.limits[1] + a * hi)
        return to_float01(img, self.limits)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise RtfuseError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class FolderPairs:
    """Visible/infrared files matched by name (stem), plus what had no partner."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    missing_ir: list[Path] = field(default_factory=list)
    missing_vis: list[Path] = field(default_factory=list)


def pair_folders(vis_dir: str | Path, ir_dir: str | Path) -> FolderPairs:
    """Match files of two folders by stem (LLVIP/TNO/MSRS layout: same names in vi/ and ir/)."""
    vis = {p.stem: p for p in list_images(vis_dir)}
    ir = {p.stem: p for p in list_images(ir_dir)}
    result = FolderPairs()
    for stem in sorted(vis.keys() | ir.keys()):
        if stem in vis and stem in ir:
            result.pairs.append((vis[stem], ir[stem]))
        elif stem in vis:
            result.missing_ir.append(vis[stem])
        else:
            result.missing_vis.append(ir[stem])
    return result


def check_same_size(vis: np.ndarray, ir: np.ndarray, what: str = "") -> None:
    """Refuse unregistered pairs of different sizes with the flag that resolves it."""
    check_same_hw(vis.shape[:2], ir.shape[:2], what)


def check_same_hw(vis_hw: Sequence[int], ir_hw: Sequence[int], what: str = "") -> None:
    """check_same_size on (height, width) pairs, for images that are already tensors."""
    if tuple(vis_hw) != tuple(ir_hw):
        prefix = f"{what}: " if what else ""
        raise ParameterError(
            f"{prefix}visible is {vis_hw[1]}x{vis_hw[0]} but infrared is "
            f"{ir_hw[1]}x{ir_hw[0]} (WxH); `resize` scales infrared to the visible "
            f"size, a rig calibration (`calib`) registers it"
        )
