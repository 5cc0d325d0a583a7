"""Capacity accounting of one device (docs/formats/storage.md §3): reservations never
take the device past its capacity, whatever the interleaving of writers. Pure; no
I/O, no mocks."""

from __future__ import annotations

import contextlib
import random

import pytest

from atoll.base.errors import InvariantError
from atoll.storage.capacity import CapacityLedger, Reservation
from atoll.storage.errors import DeviceFull


def test_a_reservation_that_does_not_fit_is_refused_with_the_numbers() -> None:
    ledger = CapacityLedger(7, 1000)
    held = ledger.reserve(600, "put a")
    with pytest.raises(DeviceFull) as caught:
        ledger.reserve(401, "put b")
    assert (caught.value.needed_bytes, caught.value.free_bytes, caught.value.device_id) == (
        401,
        400,
        7,
    )
    assert isinstance(caught.value, OSError)
    ledger.reserve(400, "put c")
    assert ledger.free_bytes == 0
    held.release()
    assert ledger.free_bytes == 600


def test_commit_turns_the_reservation_into_used_bytes_and_frees_the_excess() -> None:
    ledger = CapacityLedger(1, 1000)
    held = ledger.reserve(500, "put")
    ledger.commit(held, 300, None)
    assert (ledger.used_bytes, ledger.reserved_bytes, ledger.shard_files) == (300, 0, 1)
    held.release()  # idempotent: already released by the commit
    assert ledger.reserved_bytes == 0


def test_replacing_a_file_counts_only_the_new_one() -> None:
    ledger = CapacityLedger(1, 1000)
    ledger.commit(ledger.reserve(300, "first"), 300, None)
    ledger.commit(ledger.reserve(200, "second"), 200, 300)
    assert (ledger.used_bytes, ledger.shard_files) == (200, 1)
    ledger.remove(200)
    assert (ledger.used_bytes, ledger.shard_files) == (0, 0)


def test_writing_more_than_reserved_is_a_bug() -> None:
    ledger = CapacityLedger(1, 1000)
    held = ledger.reserve(10, "put")
    with pytest.raises(InvariantError):
        ledger.commit(held, 11, None)


def test_files_found_at_start_up_may_exceed_the_capacity_and_then_nothing_fits() -> None:
    ledger = CapacityLedger(1, 100)
    ledger.add_existing(80)
    ledger.add_existing(80)
    assert ledger.free_bytes == 0
    with pytest.raises(DeviceFull):
        ledger.reserve(1, "put")
    ledger.reserve(0, "empty part")  # an empty reservation always fits


@pytest.mark.parametrize("seed", range(20))
def test_interleaved_writers_never_overfill(seed: int) -> None:
    """Writers growing their reservations block by block in a random interleaving,
    committing, aborting or deleting: used + reserved never passes the capacity, and
    the books balance at the end."""
    rng = random.Random(seed)
    capacity = rng.randrange(1, 5000)
    ledger = CapacityLedger(1, capacity)
    writers: list[Reservation] = []
    files: list[int] = []
    for _ in range(400):
        action = rng.random()
        if action < 0.3 or not writers:
            with contextlib.suppress(DeviceFull):
                writers.append(ledger.reserve(rng.randrange(0, 300), "put"))
        elif action < 0.7:
            writer = rng.choice(writers)
            try:
                writer.grow(rng.randrange(1, 200))
            except DeviceFull:
                writers.remove(writer)
                writer.release()
        elif action < 0.85:
            writer = writers.pop(rng.randrange(len(writers)))
            size = rng.randrange(0, writer.bytes + 1)
            ledger.commit(writer, size, None)
            files.append(size)
        elif files:
            ledger.remove(files.pop(rng.randrange(len(files))))
        assert ledger.used_bytes + ledger.reserved_bytes <= capacity
        assert ledger.reserved_bytes == sum(w.bytes for w in writers)
        assert ledger.used_bytes == sum(files)
    assert ledger.peak_bytes <= capacity
