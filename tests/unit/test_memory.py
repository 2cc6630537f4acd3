"""The worker's memory settings take effect (their effect on speed and RSS is in `benchmarks/`)."""

from __future__ import annotations

import gc
import platform

import pytest

from stream import memory


def test_settling_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        memory.settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (memory.GC_YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_memory_is_returned_with_glibc() -> None:
    assert memory._TRIM is not None
    memory.return_free_memory()
