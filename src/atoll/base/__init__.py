"""Bottom layer: errors, invariants, encodings. No I/O, imports nothing above it."""

from atoll.base.errors import AtollError, CorruptionError, InvariantError, invariant

__all__ = ["AtollError", "CorruptionError", "InvariantError", "invariant"]
