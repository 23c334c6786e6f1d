"""Training data: registered IR/visible pairs from folders and video clips, crops, degradations.

Sources are decoded once and cached in memory as small uint8 arrays (training crops are small, so
full-resolution copies would only cost memory). Every random choice of a sample (crop, flip,
degradation kind, severity, noise) derives from ``(seed, epoch, index)``, so a sample does not
depend on the batch it lands in, the number of DataLoader workers or the number of processes:
a run with 2 processes sees exactly the samples of a run with one.

The train/test split is by *source group* (an image, or a whole video clip), decided by a hash of
the group name: deterministic, stable when other sources are added, and never puts one source
pair in both splits. Stage 1 and stage 2 share these utilities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from rtfuse.color import as_rgb, luminance, rgb_to_gray
from rtfuse.datasplit import split_fraction
from rtfuse.degrade import CLASSES, COMPOSITES, DEGRADATIONS, class_targets, degrade_batch, normalise_spec
from rtfuse.errors import RtfuseError
from rtfuse.imageio import check_same_size, pair_folders, read_image
from rtfuse.model.pkdm import stage_gates
from rtfuse.video import read_video

log = logging.getLogger(__name__)

_COMPOSITE_NAMES = tuple(sorted(COMPOSITES))
NIGHT_SEVERITY = (0.3, 0.8)  # low_light severities that render a clean daylight crop as a night scene
NIGHT_LABELS = ("low_light", "clean")  # what a night scene left clean may be labelled
DARK_INFRARED_GAIN = (0.15, 0.6)  # infrared gains of a thermal camera set to a low output level


@dataclass(frozen=True)
class SourcePair:
    """One registered pair in memory: vis (H,W,3) RGB uint8, ir (H,W) uint8."""

    name: str  # unique, e.g. "roadscene/FLIR_00006" or "m2vd/0111_1716#0030"
    group: str  # split unit: pairs of one group always land in the same split
    vis: np.ndarray
    ir: np.ndarray


def _shrink(img: np.ndarray, short_side: int | None) -> np.ndarray:
    """Downscale (area) so the short side is ``short_side``; never upscale."""
    if short_side is None or min(img.shape[:2]) <= short_side:
        return img
    f = short_side / min(img.shape[:2])
    size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _as_uint8(img: np.ndarray, what: str) -> np.ndarray:
    if img.dtype != np.uint8:
        raise RtfuseError(f"{what}: training reads 8-bit images, got {img.dtype}")
    return img


def load_pair_folder(folder: str | Path, short_side: int | None = 256) -> list[SourcePair]:
    """Pairs of ``folder/vi`` and ``folder/ir`` matched by name; each image is its own group."""
    folder = Path(folder)
    found = pair_folders(folder / "vi", folder / "ir")
    if not found.pairs:
        raise RtfuseError(f"{folder}: no image pairs in vi/ and ir/ (same file names expected)")
    if found.missing_ir or found.missing_vis:
        log.warning("%s: %d visible and %d infrared images have no partner; skipped", folder,
                    len(found.missing_ir), len(found.missing_vis))
    out = []
    for vis_path, ir_path in found.pairs:
        vis = _as_uint8(read_image(vis_path), str(vis_path))
        vis = vis if vis.ndim == 3 else np.repeat(vis[..., None], 3, axis=2)
        ir = _as_uint8(read_image(ir_path, gray=True), str(ir_path))
        check_same_size(vis, ir, str(vis_path))
        name = f"{folder.name}/{vis_path.stem}"
        out.append(SourcePair(name, name, _shrink(vis, short_side), _shrink(ir, short_side)))
    return out


@lru_cache(maxsize=16)
def _decode_frames(path: str, every: int, short_side: int | None, gray: bool) -> tuple[np.ndarray, ...]:
    """Every ``every``-th frame of a video as RGB (or gray) uint8, cached per process."""
    frames = tuple(_shrink(rgb_to_gray(rgb) if gray else rgb, short_side) for rgb in read_video(path, every=every))
    if not frames:
        raise RtfuseError(f"{path}: no decodable frames")
    return frames


def load_video_pair(vis_path: str | Path, ir_path: str | Path, every: int = 10,
                    short_side: int | None = 256) -> list[SourcePair]:
    """Frames of a registered visible/infrared clip pair; the whole clip is one split group
    (neighbouring frames are near duplicates, so frames of one clip must not straddle the split)."""
    vis_path, ir_path = Path(vis_path), Path(ir_path)
    for p in (vis_path, ir_path):
        if not p.is_file():
            raise RtfuseError(f"{p}: no such video file")
    if every < 1:
        raise RtfuseError(f"frame step must be >= 1, got {every}")
    vis = _decode_frames(str(vis_path), every, short_side, False)
    ir = _decode_frames(str(ir_path), every, short_side, True)
    if len(vis) != len(ir):
        log.warning("%s: %d visible vs %d infrared sampled frames; using the first %d", vis_path.stem,
                    len(vis), len(ir), min(len(vis), len(ir)))
    clip = f"{vis_path.parent.parent.name}/{vis_path.stem}"
    out = []
    for k, (v, i) in enumerate(zip(vis, ir)):
        check_same_size(v, i, f"{clip} frame {k * every}")
        out.append(SourcePair(f"{clip}#{k * every:04d}", clip, v, i))
    return out


# ----------------------------------------------------------------------------- split


def split_sources(sources: Sequence[SourcePair], test_fraction: float = 0.2) -> tuple[list[SourcePair], list[SourcePair]]:
    """(train, test) by group: a group goes to test when its hash position is below the fraction."""
    if not 0.0 <= test_fraction < 1.0:
        raise RtfuseError(f"test fraction must be in [0, 1), got {test_fraction}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise RtfuseError("duplicate source names: was one folder or clip given twice?")
    train = [s for s in sources if split_fraction(s.group) >= test_fraction]
    test = [s for s in sources if split_fraction(s.group) < test_fraction]
    return train, test


# ----------------------------------------------------------------------------- samples


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The one random stream of a sample: independent of batch, worker and process."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]))


def _flip_to_chw01(v: np.ndarray, i: np.ndarray, rng: np.random.Generator,
                   flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal flip, then uint8 (h,w,3)/(h,w) -> float32 (3,h,w)/(1,h,w) in [0,1]."""
    if flip and rng.uniform() < 0.5:
        v, i = v[:, ::-1], i[:, ::-1]
    return (np.ascontiguousarray(v.transpose(2, 0, 1), dtype=np.float32) / 255.0,
            np.ascontiguousarray(i[None], dtype=np.float32) / 255.0)


def native_crop(vis: np.ndarray, ir: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (0.35, 1.0),
                flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A random crop (side ``scale`` x the short side, aspect 3:4..4:3) of a pair at the source
    resolution, as float32 in [0,1]: vis (3,h,w), ir (1,h,w)."""
    h, w = ir.shape
    side = rng.uniform(*scale) * min(h, w)
    aspect = float(np.exp(rng.uniform(np.log(0.75), np.log(4 / 3))))
    ch = int(min(h, max(8, round(side / np.sqrt(aspect)))))
    cw = int(min(w, max(8, round(side * np.sqrt(aspect)))))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    v, i = vis[y : y + ch, x : x + cw], ir[y : y + ch, x : x + cw]
    return _flip_to_chw01(v, i, rng, flip)


def fixed_crop(vis: np.ndarray, ir: np.ndarray, size: int, rng: np.random.Generator,
               flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop at the source's pixel scale (no resampling), float32 in [0,1]."""
    h, w = ir.shape
    if min(h, w) < size:  # a small source is enlarged just enough
        f = size / min(h, w)
        w2, h2 = max(size, round(w * f)), max(size, round(h * f))
        vis = cv2.resize(vis, (w2, h2), interpolation=cv2.INTER_LINEAR)
        ir = cv2.resize(ir, (w2, h2), interpolation=cv2.INTER_LINEAR)
        h, w = h2, w2
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    v, i = vis[y : y + size, x : x + size], ir[y : y + size, x : x + size]
    return _flip_to_chw01(v, i, rng, flip)


def resize_chw(img: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """(C,h,w) float -> (C,size,size) with area averaging (what shrinking a frame does)."""
    arr = img.numpy() if isinstance(img, torch.Tensor) else img
    out = cv2.resize(np.ascontiguousarray(arr.transpose(1, 2, 0)), (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out.reshape(size, size, -1).transpose(2, 0, 1))


def random_crop(vis: np.ndarray, ir: np.ndarray, size: int, rng: np.random.Generator,
                scale: tuple[float, float] = (0.35, 1.0), flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A random crop of a pair, resized to size x size float32 in [0,1]: vis (3,S,S), ir (1,S,S)."""
    v, i = native_crop(vis, ir, rng, scale, flip)
    return resize_chw(v, size), resize_chw(i, size)


class PairCrops(Dataset):
    """Random crops of the sources: ``length`` samples per epoch, source = index mod count.

    Items are dicts of float32 tensors ``vis`` (3,S,S) and ``ir`` (1,S,S) in [0,1] plus ``source``
    (index into ``sources``). Call :meth:`set_epoch` before each epoch for fresh crops.
    """

    def __init__(self, sources: Sequence[SourcePair], size: int = 128, length: int | None = None, seed: int = 0,
                 scale: tuple[float, float] = (0.35, 1.0), flip: bool = True):
        if not sources:
            raise RtfuseError("no source pairs for this split")
        self.sources = list(sources)
        self.size, self.length, self.seed = size, length or len(self.sources), seed
        self.scale, self.flip = scale, flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _crop(self, index: int, rng: np.random.Generator) -> dict:
        src = self.sources[index % len(self.sources)]
        vis, ir = random_crop(src.vis, src.ir, self.size, rng, self.scale, self.flip)
        return {"vis": torch.from_numpy(vis), "ir": torch.from_numpy(ir), "source": index % len(self.sources)}

    def __getitem__(self, index: int) -> dict:
        return self._crop(index, sample_rng(self.seed, self.epoch, index))


def kinds_by_class() -> dict[str, tuple[str, ...]]:
    """Degradation kinds sampled for each class. ``blur`` is not one of the six recognised classes
    (a mild defocus is often invisible at the encoder's scale, which would only add label noise)."""
    out: dict[str, tuple[str, ...]] = {c: () for c in CLASSES}
    out["clean"] = ("clean",)
    for name, d in DEGRADATIONS.items():
        if name != "blur":
            out[d.label] = (*out[d.label], name)
    return out


@dataclass(frozen=True)
class SceneMix:
    """Scenes and cameras mixed into training beyond the recorded sources, each as a share of samples.

    ``composites``: a composite scene (night fog, rainy night, hazy glare) instead of one
    degradation. ``gray_visible``: a monochrome visible camera (clean and degraded visible replaced
    by their luma). ``night``: the clean scene is a night scene (the visible crop darkened as by
    ``low_light`` at a severity in ``NIGHT_SEVERITY``, the infrared untouched) before its
    degradation: evaluation sets such as MSRS and LLVIP are mostly night scenes, scored against their
    own dark clean frames, while RoadScene is mostly daylight. ``dark_infrared``: a thermal camera
    at a low output level (clean and degraded infrared scaled by a gain in ``DARK_INFRARED_GAIN``):
    thermal gain control differs between cameras, and MSRS's infrared averages 19/255 (LLVIP 50,
    RoadScene 128), so that a per-pixel maximum there is the visible image almost everywhere.
    None of them draws random numbers when 0, so runs without them keep their exact sample streams.
    """

    composites: float = 0.0
    gray_visible: float = 0.0
    night: float = 0.0
    dark_infrared: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            share = getattr(self, f.name)
            if not 0.0 <= share <= 1.0:
                raise RtfuseError(f"{f.name} share must be in [0, 1], got {share}")


def _drawn(rng: np.random.Generator, share: float) -> bool:
    """Whether this sample takes an option given to ``share`` of samples; a share of 0 draws nothing,
    so runs without the option keep their exact sample streams."""
    return share > 0.0 and rng.uniform() < share


class DegradedPairs(PairCrops):
    """Crops with one synthetic degradation each, its class label and severity, and the clean
    references: keys ``vis``, ``ir`` (degraded), ``clean_vis``, ``clean_ir``, ``label`` (index into
    CLASSES), ``severity`` (0 for clean), ``kind``, ``stage_gates`` (which PKDM stages the
    degradation calls for: a night scene is not one, its reference is dark), ``source``.

    ``balanced=True`` (evaluation) cycles the classes so that every source is seen with every
    class equally often: item i uses source i mod n and class (i div n) mod len(CLASSES).
    ``whole=True`` (evaluation of recognition) degrades and shrinks the whole frame, unflipped:
    what the runtime's DAGM sees when it plans a clip.
    ``scenes`` mixes in composite, night and monochrome scenes and dark thermal cameras
    (``SceneMix``). A night scene's label is its degradation (haze over a night scene is haze); left
    clean, it is ``night_label``: ``low_light`` at the rendering's severity, since that is how it was
    made, or ``clean``, since a dark scene is what a night camera normally sees.
    """

    def __init__(self, sources: Sequence[SourcePair], size: int = 128, length: int | None = None, seed: int = 0,
                 severity: tuple[float, float] = (0.2, 1.0), balanced: bool = False,
                 scale: tuple[float, float] = (0.35, 1.0), flip: bool = True, native: bool = False,
                 whole: bool = False, scenes: SceneMix = SceneMix(), night_label: str = "low_light"):
        super().__init__(sources, size, length, seed, scale, flip and not whole)
        self.native = native  # size x size crops at the source's pixel scale (fusion: detail statistics)
        self.whole = whole
        if not 0.0 < severity[0] <= severity[1] <= 1.0:
            raise RtfuseError(f"severity range must satisfy 0 < low <= high <= 1, got {severity}")
        self.scenes = scenes
        if night_label not in NIGHT_LABELS:
            raise RtfuseError(f"night_label must be one of {NIGHT_LABELS}, got {night_label!r}")
        self.night_label = night_label
        self.severity, self.balanced = severity, balanced
        self.kinds = kinds_by_class()

    def __getitem__(self, index: int) -> dict:
        """The crop is degraded at its own resolution, then shrunk: fine-scale degradations (noise,
        rain) keep the appearance they have in full frames that the runtime shrinks."""
        rng = sample_rng(self.seed, self.epoch, index)
        src = self.sources[index % len(self.sources)]
        if self.whole:
            native_vis, native_ir = _flip_to_chw01(src.vis, src.ir, rng, False)
        elif self.native:
            native_vis, native_ir = fixed_crop(src.vis, src.ir, self.size, rng, self.flip)
        else:
            native_vis, native_ir = native_crop(src.vis, src.ir, rng, self.scale, self.flip)
        item = {"vis": torch.from_numpy(resize_chw(native_vis, self.size)),
                "ir": torch.from_numpy(resize_chw(native_ir, self.size)), "source": index % len(self.sources)}
        if self.balanced:
            cls = CLASSES[(index // len(self.sources)) % len(CLASSES)]
        else:
            cls = CLASSES[int(rng.integers(len(CLASSES)))]
        options = self.kinds[cls]
        kind = options[int(rng.integers(len(options)))]
        if _drawn(rng, self.scenes.composites):
            kind = _COMPOSITE_NAMES[int(rng.integers(len(_COMPOSITE_NAMES)))]
        sev = 0.0 if kind == "clean" else float(rng.uniform(*self.severity))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        gray = _drawn(rng, self.scenes.gray_visible)
        clean_vis, native_vis = item["vis"], torch.from_numpy(native_vis)[None]
        clean_ir, native_ir = item["ir"], torch.from_numpy(native_ir)[None]
        night_sev = 0.0
        if _drawn(rng, self.scenes.night):
            night_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            night_sev = float(rng.uniform(*NIGHT_SEVERITY))
            native_vis = degrade_batch(native_vis, native_ir, ["low_light"], [night_sev], night_gen)[0]
            clean_vis = torch.from_numpy(resize_chw(native_vis[0], self.size))
        if _drawn(rng, self.scenes.dark_infrared):
            gain = float(rng.uniform(*DARK_INFRARED_GAIN))
            clean_ir, native_ir = clean_ir * gain, native_ir * gain
        vis, ir = degrade_batch(native_vis, native_ir, [kind], [sev], gen)
        vis, ir = torch.from_numpy(resize_chw(vis[0], self.size)), torch.from_numpy(resize_chw(ir[0], self.size))
        if gray:
            clean_vis, vis = (as_rgb(luminance(v[None]))[0].contiguous() for v in (clean_vis, vis))
        applied = [] if kind == "clean" else [(kind, sev)]
        if not applied and night_sev and self.night_label == "low_light":  # made by low_light
            applied = [("low_light", night_sev)]
        target = class_targets(applied)
        label = int(np.argmax(target))
        present = [] if kind == "clean" else [part for part, _ in normalise_spec([(kind, sev)])]
        item.update(clean_vis=clean_vis, clean_ir=clean_ir, vis=vis, ir=ir, kind=kind,
                    stage_gates=torch.tensor(stage_gates(present)),
                    label=label, severity=torch.tensor(0.0 if label == 0 else float(target[label])))
        return item


def load_sources(pair_dirs: Sequence[str | Path] = (), videos: Sequence[tuple[str | Path, str | Path]] = (),
                 every: int = 10, short_side: int | None = 256) -> list[SourcePair]:
    """All sources of a run: pair folders (DIR/vi, DIR/ir) and (visible, infrared) video files."""
    sources: list[SourcePair] = []
    for folder in pair_dirs:
        sources += load_pair_folder(folder, short_side)
    for vis_path, ir_path in videos:
        sources += load_video_pair(vis_path, ir_path, every, short_side)
    if not sources:
        raise RtfuseError("no training data: give at least one pair folder or video pair")
    return sources
