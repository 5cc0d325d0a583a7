"""The root of Atoll's error tree and the invariant helper (shared/STYLE.md §7).

Pure: no I/O. Every package defines its expected failures under `AtollError`;
broken invariants (bugs) raise `InvariantError`, which nobody catches.
"""

from __future__ import annotations


class AtollError(Exception):
    """Root of every expected failure raised by Atoll."""


class InvariantError(AssertionError):
    """A broken internal invariant: a bug. Not an `AtollError`; never caught."""


def invariant(condition: bool, message: str) -> None:
    """Raise `InvariantError(message)` unless `condition` holds (survives `python -O`)."""
    if not condition:
        raise InvariantError(message)


class CorruptionError(AtollError):
    """Stored bytes fail their checksum or structure check: never normal.

    Carries the file, the offset and, where a checksum failed, the expected and the
    actual value, so that the caller can decide to repair, quarantine or fail.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        offset: int | None = None,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        parts = [f"{message}: file {file}"]
        if offset is not None:
            parts.append(f"offset {offset}")
        if expected is not None or actual is not None:
            parts.append(f"expected checksum {expected:#010x}" if expected is not None else "")
            parts.append(f"actual {actual:#010x}" if actual is not None else "")
        super().__init__(", ".join(p for p in parts if p))
        self.file = file
        self.offset = offset
        self.expected = expected
        self.actual = actual
