"""Which implementation of the point-read hot loops is in use. No I/O.

`atoll.engine._native` (C, built at install when a compiler is present) provides
`bloom_may_contain` and `block_find`; without it, or with ATOLL_NO_NATIVE=1 in the
environment, the pure-Python versions in `bloom` and `sstable_format` run. The Python
versions define the behaviour; tests compare the two on random inputs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any


def _load() -> Any:
    if os.environ.get("ATOLL_NO_NATIVE"):
        return None
    try:
        return importlib.import_module("atoll.engine._native")
    except ImportError:  # no compiler at install time: the Python paths serve
        return None


_module = _load()
AVAILABLE = _module is not None
block_find: Callable[[bytes, bytes, int], Any] | None = _module.block_find if _module else None
bloom_may_contain: Callable[[bytes, int, int, bytes], bool] | None = (
    _module.bloom_may_contain if _module else None
)
