"""Shared fixtures: the real IR/visible data beside the checkout (../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RTFUSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the real data carry the ``data`` marker (``pytest -m "not data"`` skips them)."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; tests that need it skip on a user's clone where it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set RTFUSE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _small_torch_threads():
    """Keep each test to the machine's two cores without oversubscription."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)
