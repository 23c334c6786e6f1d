"""The train/test split by source group, shared by training (which holds the test groups out) and
the evaluation suite (which scores exactly those groups as the training camera's held-out images)."""

from __future__ import annotations

import hashlib

SPLIT_SALT = "rtfuse-split-v1"  # changing it reshuffles every split; keep it fixed
TEST_FRACTION = 0.2  # the default share of groups held out


def split_fraction(group: str) -> float:
    """Position of a group in [0,1), from a hash of its name (stable across runs and machines)."""
    digest = hashlib.sha1(f"{SPLIT_SALT}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_test_split(group: str, test_fraction: float = TEST_FRACTION) -> bool:
    """Whether training with ``test_fraction`` holds ``group`` out (e.g. ``"roadscene/FLIR_00006"``)."""
    return split_fraction(group) < test_fraction
