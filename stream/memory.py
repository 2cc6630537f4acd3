"""The worker process's memory: Python's cycle collector and the C allocator, tuned once.

Both were measured in the benchmark's runs (`benchmarks/`): the collector's defaults cost a
fifth of a worker's CPU, and memory freed after a batch stayed with the process, so its RSS
crept up through a long burst although everything it keeps is bounded.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

#: Young objects between two collections of the youngest generation (Python's default is 700).
GC_YOUNG_THRESHOLD = 100_000


def settle_garbage_collector() -> None:
    """Keep Python's cycle collector from spending a fifth of the worker's CPU.

    Measured in the benchmark's end-to-end run: with Python's defaults the collector took
    22% of the worker's batch time, mostly full collections walking the ~half a million
    objects Faust, aiokafka and friends build at start-up. Those live as long as the
    process, so they are frozen out of every later collection once the app is up, and the
    youngest generation is collected every 100,000 objects instead of 700: 6% was left at
    20,000, and 100,000 took a further 1.2 µs an event off (of ~1.9 µs spent collecting,
    measured over the batch's pure work). A batch makes few reference cycles (decoded events
    are untracked msgspec structs), so memory does not grow for it.
    """
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim` among the symbols the interpreter has loaded; None without glibc."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no C library to open this way (Windows)
        return None


_TRIM = _find_malloc_trim()


def return_free_memory() -> None:
    """Give the memory a finished batch freed back to the system (glibc's `malloc_trim`).

    A batch allocates and frees tens of megabytes (decoded events, histories read back,
    rows for COPY); glibc keeps freed memory for reuse, and with objects of the
    bounded customer cache scattered among it, RSS rose ~10% between the middle and the
    end of a 300,000-event burst. Trimming after each batch costs ~0.5 ms and kept the peak
    ~10 MB lower and flat (measured). A no-op where the C library is not glibc.
    """
    if _TRIM is not None:
        _TRIM(0)
