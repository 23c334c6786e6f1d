"""Cross-modality registration accuracy on MSRS ir_warp (issue 6 acceptance); prints JSON.

For each pair the reference is the same-modality ECC fit of ir_warp/NAME to ir/NAME (intensities
match there); the estimate is rtfuse.calib's fit of ir_warp/NAME to vi/NAME. Corner error is the
mean distance of the four image corners mapped by both homographies.

That reference assumes MSRS ir/NAME and vi/NAME are registered exactly. To see how far they are
not, each row also has ``ir_vi_offset_px``, the corner distance of rtfuse.calib's fit of the
*unwarped* ir/NAME to vi/NAME from the identity, and ``self_consistency_px``, the corner distance
of the estimate from that fit composed with the reference (what the estimate should be if the
estimator is consistent, whatever the dataset's own offset).

    .venv/bin/python bench/calib_accuracy.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rtfuse import calib
from rtfuse.errors import RtfuseError
from rtfuse.imageio import list_images, read_image

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def measure(data: Path) -> dict:
    root = data / "msrs"
    rows = []
    for path in list_images(root / "ir_warp"):
        name = path.name
        ir_warp = read_image(path, gray=True)
        ref = calib.intensity_homography(read_image(root / "ir" / name, gray=True), ir_warp)
        t0 = time.perf_counter()
        vis = read_image(root / "vi" / name)
        size = (ir_warp.shape[1], ir_warp.shape[0])
        try:
            res = calib.register_pair(vis, ir_warp)
            seconds = time.perf_counter() - t0
            ir_vi = calib.register_pair(vis, read_image(root / "ir" / name, gray=True)).homography
            row = {
                "name": name,
                "corner_error_px": round(calib.corner_error(res.homography, ref, size), 3),
                "ir_vi_offset_px": round(calib.corner_error(ir_vi, np.eye(3), size), 3),
                "self_consistency_px": round(calib.corner_error(res.homography, ir_vi @ ref, size), 3),
                "edge_correlation": round(res.correlation, 4),
                "peak_contrast": round(res.contrast, 4),
                "accepted": res.correlation >= calib.MIN_EDGE_CORRELATION and res.contrast >= calib.MIN_PEAK_CONTRAST,
            }
        except RtfuseError as exc:
            seconds = time.perf_counter() - t0
            row = {"name": name, "corner_error_px": None, "error": str(exc), "accepted": False}
        row["seconds"] = round(seconds, 3)
        rows.append(row)
    errs = [r["corner_error_px"] for r in rows if r["corner_error_px"] is not None]
    accepted = [r["corner_error_px"] for r in rows if r["accepted"]]

    def stat(key: str, fn) -> float:
        return round(float(fn([r[key] for r in rows if r.get(key) is not None])), 3)

    return {
        "pairs": rows,
        "median_corner_error_px": round(float(np.median(errs)), 3),
        "mean_corner_error_px": round(float(np.mean(errs)), 3),
        "median_ir_vi_offset_px": stat("ir_vi_offset_px", np.median),
        "median_self_consistency_px": stat("self_consistency_px", np.median),
        "mean_self_consistency_px": stat("self_consistency_px", np.mean),
        "median_seconds_per_pair": stat("seconds", np.median),
        "accepted": len(accepted),
        "median_corner_error_accepted_px": round(float(np.median(accepted)), 3) if accepted else None,
        "acceptance": {"median_max_px": 1.5, "mean_max_px": 3.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    print(json.dumps(measure(args.data), indent=1))


if __name__ == "__main__":
    main()
