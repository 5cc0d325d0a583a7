"""Which implementation of the engine's hot loops is in use. No I/O.

`atoll.engine._native` (C, built at install when a compiler is present) provides
`table_get`, `bloom_may_contain` and `block_find` (point reads), and
`decode_batch`, `key_hashes`,
`block_columns` and `entry_sizes` (flushes and compactions); without it, or with ATOLL_NO_NATIVE=1 in the
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
table_get: Callable[..., Any] | None = _module.table_get if _module else None
block_find: Callable[[bytes | memoryview, bytes, int], Any] | None = (
    _module.block_find if _module else None
)
bloom_may_contain: Callable[[bytes, int, int, bytes], bool] | None = (
    _module.bloom_may_contain if _module else None
)
decode_batch: Callable[[bytes, list[bytes], list[bytes]], tuple[int, bytes]] | None = (
    _module.decode_batch if _module else None
)
key_hashes: Callable[[list[bytes]], tuple[bytes, bytes]] | None = (
    _module.key_hashes if _module else None
)
block_columns: (
    Callable[[bytes | memoryview], tuple[list[bytes], list[int], bytes, list[bytes]]] | None
) = _module.block_columns if _module else None
entry_sizes: Callable[[list[bytes], list[bytes], int], bytes] | None = (
    _module.entry_sizes if _module else None
)
