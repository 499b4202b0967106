"""Giving freed memory back to the system between the steps of a long task."""

from __future__ import annotations


def release_memory() -> None:
    """Collect garbage and return the C heap's free pages to the system (glibc malloc_trim), so
    that a task's peak is not the sum of its steps' peaks; a no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
