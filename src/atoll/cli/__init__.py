"""Atoll's command line (`atoll`, installed by pyproject's console script).

`atoll.cli.main.main` is the click group; `atoll engine bench` runs the engine
benchmark of `atoll.cli.engine_bench`. The top layer: it may import every other.
"""

from __future__ import annotations

from atoll.cli.main import main

__all__ = ["main"]
