"""Process-wide settings for a live fusion loop: engine threads and how freed memory is kept.

They change the whole process (the thread pool of torch, glibc's allocator), so the pipeline never
applies them itself: the command line (or a program that owns its process) calls
``prepare_process`` once before the loop starts.
"""

from __future__ import annotations

import ctypes
import os


def engine_threads(cores: int | None = None) -> int:
    """Torch threads for the engine while two capture threads decode: all cores but one.

    On a 2-core machine an engine with two OpenMP threads waits at every parallel region for the
    thread that a decoder pre-empted; one thread fuses faster there (aoti: 15.6-16.1 vs 13.3 FPS when measured).
    """
    return max(1, (cores or os.cpu_count() or 1) - 1)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process instead of unmapping it; False if not glibc.

    Every frame allocates and frees tensors of megabytes. By default glibc maps each such block
    separately and unmaps it on free; an unmap interrupts the cores that run the capture threads
    (TLB shootdown), and the next allocation page-faults its memory in again. Measured in the
    `Fuser` call on 2 cores: 2 ms per frame outside the model, 0.07 ms with this (docs/pipeline.md).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def prepare_process(threads: int | None = None) -> bool:
    """Process settings for a live fusion loop: engine threads (default ``engine_threads()``) and
    freed memory kept mapped. Returns whether the latter took effect (glibc only)."""
    import torch

    torch.set_num_threads(threads or engine_threads())
    return keep_freed_memory()
