"""Storage errors through their wire form (docs/formats/storage.md §5): each code the
service sends comes back as the same typed error with its fields. Pure; no mocks."""

from __future__ import annotations

import pytest

from atoll.proto import storage_pb2
from atoll.storage.errors import (
    ERROR_TYPES,
    DeviceFailed,
    DeviceFull,
    InvalidArgument,
    ShardCorrupt,
    ShardNotFound,
    StaleEpoch,
    StorageError,
    UnknownDevice,
    classify_os_error,
)
from atoll.storage.messages import error_from_wire, handler_error

EXAMPLES: list[StorageError] = [
    InvalidArgument("block 3 of 7 bytes", device_id=2),
    UnknownDevice("not here", device_id=9),
    StaleEpoch("epoch 4 refused: map is at 6", epoch=4, device_id=1),
    DeviceFailed("I/O failed", device_id=3),
    DeviceFull("no room", needed_bytes=4096, free_bytes=100, device_id=0),
    ShardNotFound("no such file", device_id=5),
    ShardCorrupt(
        "CRC-32C mismatch",
        file="/d/pgs/1.2/x",
        block=3,
        offset=999,
        expected=1,
        actual=2,
        device_id=4,
    ),
    ShardCorrupt("header names another shard", file="/d/f"),
]


def test_every_error_type_has_a_distinct_code() -> None:
    assert {type(e) for e in EXAMPLES} == set(ERROR_TYPES.values())
    assert set(ERROR_TYPES) == {
        "shard_not_found",
        "shard_corrupt",
        "device_full",
        "unknown_device",
        "device_failed",
        "stale_epoch",
        "invalid_argument",
    }


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_errors_round_trip_through_the_wire(error: StorageError) -> None:
    frame = handler_error(error)
    assert frame.code == error.code
    back = error_from_wire(frame.code, frame.detail)
    assert type(back) is type(error)
    assert back is not None
    assert back.device_id == error.device_id
    assert error.message in back.message
    for field in (
        "epoch",
        "needed_bytes",
        "free_bytes",
        "file",
        "block",
        "offset",
        "expected",
        "actual",
    ):
        assert getattr(back, field, None) == getattr(error, field, None), field


def test_a_transport_code_is_not_a_storage_error() -> None:
    assert error_from_wire("too_many_streams", b"64 streams") is None


def test_an_unparseable_detail_keeps_the_code_and_the_text() -> None:
    back = error_from_wire("shard_not_found", b"\xff\xff not protobuf")
    assert isinstance(back, ShardNotFound)
    assert isinstance(back, FileNotFoundError)


def test_detail_fits_an_rpc_error_frame_even_for_long_messages() -> None:
    error = ShardCorrupt("x" * 10_000, file="/" + "d" * 10_000, block=1)
    frame = handler_error(error)
    assert len(frame.detail) <= 4096
    assert storage_pb2.ErrorDetail.FromString(frame.detail).block == 1


def test_os_errors_are_classified_by_errno() -> None:
    import errno

    assert classify_os_error(OSError(errno.ENOSPC, "full")) == "full"
    assert classify_os_error(OSError(errno.EDQUOT, "quota")) == "full"
    for code in (errno.EIO, errno.EROFS, errno.ENOTDIR, errno.ENODEV, errno.EACCES):
        assert classify_os_error(OSError(code, "x")) == "device", code
    for code in (errno.ENOENT, errno.EMFILE, errno.EINTR):
        assert classify_os_error(OSError(code, "x")) == "none", code
