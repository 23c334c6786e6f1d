"""Fixed fusions between the built-in baselines: how far do rules without learning go on a dataset?

The Laplacian pyramid with a ``max`` low-pass (the brighter coarse scene, the stronger detail) and
pixel-wise blends ``w max + (1 - w) laplacian``. Read beside `rtfuse eval`'s table: a learned
fusion should beat every rule here on the scores it claims, and where one does not, the model card (docs/model-card.md) says so.

    python experiments/fixed_fusions.py --data ../shared/data/tno [--limit N] [--blend 0.25 0.5 0.75]

Prints JSON (per method: means over pairs, matlab convention) and a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable

import numpy as np
import torch

from rtfuse.baselines import BASELINES, fuse_laplacian, gray_tensors, to_uint8
from rtfuse.evaluate import evaluate_folder, markdown_table, summarise
from rtfuse.model.pyramid import laplacian_fusion

METRICS = ["EN", "SD", "SF", "AG", "VIF", "Qabf"]


def blend(weight: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``weight`` of the pixel-wise maximum, the rest the Laplacian fusion."""
    def fuse(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
        v, i = gray_tensors(vis, ir)
        return to_uint8((weight * torch.maximum(v, i) + (1 - weight) * laplacian_fusion(v, i))[0, 0].numpy())
    return fuse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with vi/ and ir/")
    p.add_argument("--limit", type=int, help="pairs (default: all)")
    p.add_argument("--blend", type=float, nargs="+", default=[0.25, 0.5, 0.75], help="weights of max in the blends")
    args = p.parse_args(argv)
    fusers = {**BASELINES, "laplacian-max": functools.partial(fuse_laplacian, low_pass="max"),
              **{f"blend {w:g}": blend(w) for w in args.blend}}
    result = evaluate_folder(args.data, fusers=fusers, names=METRICS, limit=args.limit, workers=2)
    print(json.dumps({s.method: {**s.means, "n": s.images} for s in summarise(result)}, indent=1))
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
