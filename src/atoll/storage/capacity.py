"""Capacity accounting of one device: bytes used by shard files, bytes reserved by
writes in flight, and the rule that their sum never exceeds the capacity. Pure: no
I/O, no clock; the device shell (`devices.py`) feeds it sizes.

Implements docs/formats/storage.md §3. A write reserves what its file will take before
it writes a byte: the exact file size when the part's length is known up front, else
the header first and each block (with its CRC) before it is written. A reservation
that does not fit is refused (`DeviceFull`), so concurrent writers can never together
overfill the device, whatever their interleaving. On commit the reservation becomes
used bytes (less the size of the file it replaced); on abort it is released.

Accounting is in apparent bytes (file sizes), not in file system blocks: the
capacity should leave room for the file system's own overhead (docs §3).
"""

from __future__ import annotations

from atoll.base.errors import invariant
from atoll.storage.errors import DeviceFull


class CapacityLedger:
    """`used_bytes + reserved_bytes <= capacity_bytes` after every call, except that
    `used_bytes` found at start-up (`add_existing`) may already exceed it; then every
    reservation is refused until files are deleted."""

    def __init__(self, device_id: int, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"device {device_id}: capacity {capacity_bytes} is negative")
        self.device_id = device_id
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self.reserved_bytes = 0
        self.shard_files = 0
        self.peak_bytes = 0
        """Highest `used_bytes + reserved_bytes` reached through reservations."""

    @property
    def free_bytes(self) -> int:
        return max(0, self.capacity_bytes - self.used_bytes - self.reserved_bytes)

    def add_existing(self, file_bytes: int) -> None:
        """A shard file found on the device at start-up."""
        invariant(file_bytes >= 0, f"negative file size {file_bytes}")
        self.used_bytes += file_bytes
        self.shard_files += 1

    def reserve(self, nbytes: int, what: str) -> Reservation:
        reservation = Reservation(self, what)
        reservation.grow(nbytes)
        return reservation

    def _take(self, nbytes: int, what: str) -> None:
        invariant(nbytes >= 0, f"negative reservation {nbytes} for {what}")
        free = self.free_bytes
        if nbytes > free:
            raise DeviceFull(
                f"{what} needs {nbytes} bytes, {free} of {self.capacity_bytes} free "
                f"({self.used_bytes} used, {self.reserved_bytes} reserved by writes in flight)",
                needed_bytes=nbytes,
                free_bytes=free,
                device_id=self.device_id,
            )
        self.reserved_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.used_bytes + self.reserved_bytes)

    def _give_back(self, nbytes: int) -> None:
        invariant(0 <= nbytes <= self.reserved_bytes, f"releasing {nbytes} bytes not reserved")
        self.reserved_bytes -= nbytes

    def commit(self, reservation: Reservation, file_bytes: int, replaced_bytes: int | None) -> None:
        """The reserved write is durable as a `file_bytes` file; it replaced a file of
        `replaced_bytes` (None: there was none). Excess reservation is released."""
        invariant(reservation.ledger is self, "a reservation of another device")
        invariant(
            file_bytes <= reservation.bytes,
            f"{reservation.what}: wrote {file_bytes} bytes, reserved only {reservation.bytes}",
        )
        reservation.release()
        self.used_bytes += file_bytes
        if replaced_bytes is None:
            self.shard_files += 1
        else:
            self.used_bytes = max(0, self.used_bytes - replaced_bytes)

    def remove(self, file_bytes: int) -> None:
        """A shard file of `file_bytes` was deleted."""
        self.used_bytes = max(0, self.used_bytes - file_bytes)
        self.shard_files = max(0, self.shard_files - 1)


class Reservation:
    """Bytes held for one write in flight; `grow` before each write that may extend
    the file, then `ledger.commit(...)` or `release()` (idempotent)."""

    def __init__(self, ledger: CapacityLedger, what: str) -> None:
        self.ledger = ledger
        self.what = what
        self.bytes = 0
        self.released = False

    def grow(self, nbytes: int) -> None:
        invariant(not self.released, f"{self.what}: growing a released reservation")
        self.ledger._take(nbytes, self.what)
        self.bytes += nbytes

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.ledger._give_back(self.bytes)
