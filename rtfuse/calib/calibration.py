"""A rig calibration: the IR-to-visible homography, the sizes it is valid for, how well it is
supported, and its small TOML file (format documented in calib/README.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import tomllib

from rtfuse.errors import RtfuseError

FORMAT_VERSION = 1
Size = tuple[int, int]  # (width, height), as OpenCV and the file format write it


@dataclass(frozen=True)
class RegistrationStats:
    """How well the estimate is supported; written to the file so a drifting rig can be spotted."""

    edge_correlation: tuple[float, ...]  # per used pair: ZNCC of the edge maps at the estimate
    peak_contrast: tuple[float, ...]  # per used pair: correlation minus the best 1-coarse-pixel shift
    # mean corner distance of the per-pair estimates from their consensus (one pair: of its smoothing fits)
    corner_spread_px: float
    pairs_used: int
    pairs_total: int
    method: str = "scene"  # "scene" (structure registration) or "target KIND:COLSxROWS"
    reprojection_px: float | None = None  # target: RMS distance of the corners from the fit
    blocks: int | None = None  # scene: structured blocks the fine fit rests on
    corner_sd_px: float | None = None  # scene: the fit's predicted standard deviation of the frame corners

    @property
    def residual(self) -> float:
        """1 - mean edge correlation: 0 is a perfect structural match, 1 no match at all."""
        return 1.0 - float(np.mean(self.edge_correlation)) if self.edge_correlation else 0.0

    def summary(self) -> str:
        if self.reprojection_px is not None:
            return (
                f"{self.method}: frames used {self.pairs_used}/{self.pairs_total}, "
                f"reprojection error {self.reprojection_px:.3f} px RMS"
            )
        cc = self.edge_correlation
        fit = (f", {self.blocks} blocks, corner uncertainty {self.corner_sd_px:.2f} px"
               if self.blocks is not None and self.corner_sd_px is not None else "")
        return (
            f"pairs used {self.pairs_used}/{self.pairs_total}, edge correlation mean "
            f"{np.mean(cc):.3f} (min {min(cc):.3f}), residual {self.residual:.3f}, peak contrast "
            f"min {min(self.peak_contrast):.3f}, corner spread {self.corner_spread_px:.2f} px{fit}"
        )


@dataclass(frozen=True)
class Calibration:
    """An IR-to-visible homography and the image sizes it is valid for."""

    homography: np.ndarray  # 3x3, maps IR pixel coordinates to visible pixel coordinates
    ir_size: Size
    vis_size: Size
    stats: RegistrationStats
    date: str  # ISO 8601, UTC

    def check_sizes(self, vis_size: Size, ir_size: Size) -> None:
        """Refuse streams of other sizes: the homography is in pixels of the calibrated sizes."""
        if tuple(vis_size) != tuple(self.vis_size) or tuple(ir_size) != tuple(self.ir_size):
            raise RtfuseError(
                f"calibration is for visible {_wh(self.vis_size)} and infrared {_wh(self.ir_size)} "
                f"but the streams are visible {_wh(vis_size)} and infrared {_wh(ir_size)} (WxH); "
                f"recalibrate with rtfuse calib"
            )

    def warper(self) -> Callable[[np.ndarray], np.ndarray]:
        """A function that warps one IR frame into the visible frame; maps are built once here."""
        w, h = self.vis_size
        inverse = np.linalg.inv(self.homography)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ inverse.T
        map_x = (pts[..., 0] / pts[..., 2]).astype(np.float32)
        map_y = (pts[..., 1] / pts[..., 2]).astype(np.float32)
        fixed_xy, fixed_frac = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        ir_w, ir_h = self.ir_size

        def warp(ir: np.ndarray) -> np.ndarray:
            if (ir.shape[1], ir.shape[0]) != (ir_w, ir_h):
                raise RtfuseError(
                    f"infrared frame is {ir.shape[1]}x{ir.shape[0]} but the calibration is for "
                    f"{_wh(self.ir_size)} (WxH)"
                )
            return cv2.remap(ir, fixed_xy, fixed_frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

        return warp

    def save(self, path: str | Path) -> None:
        """Write the small TOML documented in calib/README.md (no TOML writer dependency)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = ",\n".join("  [" + ", ".join(_f(v) for v in row) + "]" for row in self.homography)
        s = self.stats
        text = (
            "# rtfuse rig calibration: infrared -> visible homography (see calib/README.md)\n"
            f"version = {FORMAT_VERSION}\n"
            f"date = {self.date}\n"
            f"ir_size = [{self.ir_size[0]}, {self.ir_size[1]}]\n"
            f"vis_size = [{self.vis_size[0]}, {self.vis_size[1]}]\n"
            f"homography = [\n{rows},\n]\n"
            "\n[residual]\n"
            f"residual = {_f(s.residual)}\n"
            f"edge_correlation = [{', '.join(_f(v) for v in s.edge_correlation)}]\n"
            f"peak_contrast = [{', '.join(_f(v) for v in s.peak_contrast)}]\n"
            f"corner_spread_px = {_f(s.corner_spread_px)}\n"
            f"pairs_used = {s.pairs_used}\n"
            f"pairs_total = {s.pairs_total}\n"
            f"method = \"{s.method}\"\n"
            + (f"reprojection_px = {_f(s.reprojection_px)}\n" if s.reprojection_px is not None else "")
            + (f"blocks = {s.blocks}\n" if s.blocks is not None else "")
            + (f"corner_sd_px = {_f(s.corner_sd_px)}\n" if s.corner_sd_px is not None else "")
        )
        path.write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if not path.is_file():
            raise RtfuseError(f"{path}: no such calibration file")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") != FORMAT_VERSION:
                raise RtfuseError(f"{path}: calibration format version {doc.get('version')!r}, expected {FORMAT_VERSION}")
            hom = np.array(doc["homography"], dtype=np.float64)
            if hom.shape != (3, 3) or not np.isfinite(hom).all():
                raise RtfuseError(f"{path}: homography must be a finite 3x3 matrix")
            r = doc["residual"]
            date = doc["date"]
            return cls(
                homography=hom,
                ir_size=_size(doc["ir_size"]),
                vis_size=_size(doc["vis_size"]),
                stats=RegistrationStats(
                    edge_correlation=tuple(float(v) for v in r["edge_correlation"]),
                    peak_contrast=tuple(float(v) for v in r["peak_contrast"]),
                    corner_spread_px=float(r["corner_spread_px"]),
                    pairs_used=int(r["pairs_used"]),
                    pairs_total=int(r["pairs_total"]),
                    method=str(r.get("method", "scene")),
                    reprojection_px=float(r["reprojection_px"]) if "reprojection_px" in r else None,
                    blocks=int(r["blocks"]) if "blocks" in r else None,
                    corner_sd_px=float(r["corner_sd_px"]) if "corner_sd_px" in r else None,
                ),
                date=date.isoformat() if isinstance(date, datetime) else str(date),
            )
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RtfuseError(f"{path}: not a valid calibration file ({exc})") from exc


def _wh(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def _size(v: object) -> Size:
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, int) and x > 0 for x in v):
        raise ValueError(f"size must be [width, height], got {v!r}")
    return (v[0], v[1])


def _f(v: float) -> str:
    """A float as TOML writes it (repr round-trips exactly; TOML spells nan/inf the same way)."""
    return repr(float(v))
