"""KV command records and their v1 encoding (docs/formats/kv.md §1): round trips,
limits, and the rejection of damaged, truncated, oversized and malformed bytes."""

from __future__ import annotations

import struct

import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from atoll.kv import (
    COMMAND_BYTES_MAX,
    KEY_BYTES_MAX,
    TXN_COMPARES_MAX,
    TXN_OPS_MAX,
    VALUE_BYTES_MAX,
    CommandChecksumError,
    CommandError,
    CommandLimitError,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteRange,
    Get,
    Noop,
    Put,
    Txn,
    UnsupportedCommandVersion,
    compare_and_set,
    decode,
    encode,
)
from atoll.kv.command import COMMAND_MAGIC, COMMAND_VERSION

KEYS = st.binary(max_size=40)
VALUES = st.binary(max_size=200)
EQUALITY = st.sampled_from([CompareOp.EQUAL, CompareOp.NOT_EQUAL])
U64 = st.integers(0, 2**64 - 1)

COMPARES = st.one_of(
    st.builds(Compare.value, KEYS, EQUALITY, VALUES),
    st.builds(Compare.version, KEYS, st.sampled_from(CompareOp), U64),
    st.builds(Compare.mod_revision, KEYS, st.sampled_from(CompareOp), U64),
    st.builds(
        lambda key, op, flag: Compare(key, CompareTarget.EXISTS, op, flag),
        KEYS,
        EQUALITY,
        st.booleans(),
    ),
)
WRITES = st.one_of(
    st.builds(Put, KEYS, VALUES),
    st.builds(Delete, KEYS),
    st.builds(DeleteRange, KEYS, st.none() | KEYS),
)
TXN_OPS = st.one_of(WRITES, st.builds(Get, KEYS))
COMMANDS = st.one_of(
    WRITES,
    st.just(Noop()),
    st.builds(
        Txn,
        st.lists(COMPARES, max_size=4),
        st.lists(TXN_OPS, max_size=4),
        st.lists(TXN_OPS, max_size=4),
    ),
)


def frame(body: bytes, magic: int = COMMAND_MAGIC, version: int = COMMAND_VERSION) -> bytes:
    """A command with a correct CRC around `body`, to reach the structural checks."""
    return struct.pack("<BBI", magic, version, crc32c(body)) + body


def key_field(key: bytes) -> bytes:
    return struct.pack("<H", len(key)) + key


# ------------------------------------------------------------------- round trips


@given(COMMANDS)
def test_round_trip(command: Put | Delete | DeleteRange | Txn | Noop) -> None:
    data = encode(command)
    assert data == command.encode()
    assert decode(data) == command
    assert decode(bytearray(data)) == command
    assert encode(decode(data)) == data


def test_empty_key_and_empty_value_round_trip_and_differ_from_a_delete() -> None:
    assert decode(encode(Put(b"", b""))) == Put(b"", b"")
    assert encode(Put(b"k", b"")) != encode(Delete(b"k"))
    assert decode(encode(DeleteRange(b"", b""))) == DeleteRange(b"", b"")
    assert decode(encode(DeleteRange(b"", None))) == DeleteRange(b"", None)


def test_limits_are_inclusive() -> None:
    big = Put(b"k" * KEY_BYTES_MAX, b"v" * VALUE_BYTES_MAX)
    assert decode(encode(big)) == big
    many = Txn(
        [Compare.exists(b"k")] * TXN_COMPARES_MAX,
        [Delete(b"k")] * TXN_OPS_MAX,
        [Get(b"k")] * TXN_OPS_MAX,
    )
    assert decode(encode(many)) == many


def test_compare_and_set_is_a_txn() -> None:
    assert compare_and_set(b"k", b"old", b"new") == Txn(
        [Compare.value(b"k", CompareOp.EQUAL, b"old")], [Put(b"k", b"new")], [Get(b"k")]
    )
    assert compare_and_set(b"k", None, None) == Txn(
        [Compare(b"k", CompareTarget.EXISTS, CompareOp.EQUAL, False)], [Delete(b"k")], [Get(b"k")]
    )


# ------------------------------------------------------------ building: bad input


@pytest.mark.parametrize(
    "build",
    [
        lambda: Put(b"k" * (KEY_BYTES_MAX + 1), b""),
        lambda: Put(b"k", b"v" * (VALUE_BYTES_MAX + 1)),
        lambda: Delete(b"k" * (KEY_BYTES_MAX + 1)),
        lambda: DeleteRange(b"", b"k" * (KEY_BYTES_MAX + 1)),
        lambda: Txn([Compare.exists(b"k")] * (TXN_COMPARES_MAX + 1)),
        lambda: Txn([], [Get(b"k")] * (TXN_OPS_MAX + 1)),
        lambda: Txn([], [], [Delete(b"k")] * (TXN_OPS_MAX + 1)),
        lambda: Compare.value(b"k", CompareOp.EQUAL, b"v" * (VALUE_BYTES_MAX + 1)),
    ],
)
def test_over_a_limit_is_refused_when_built(build: object) -> None:
    with pytest.raises(CommandLimitError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Put("k", b"v"),  # type: ignore[arg-type]
        lambda: Put(b"k", bytearray(b"v")),  # type: ignore[arg-type]
        lambda: Delete(memoryview(b"k")),  # type: ignore[arg-type]
        lambda: DeleteRange(b"a", "b"),  # type: ignore[arg-type]
        lambda: Compare.value(b"k", CompareOp.GREATER, b"v"),
        lambda: Compare.value(b"k", CompareOp.EQUAL, 3),  # type: ignore[arg-type]
        lambda: Compare(b"k", CompareTarget.EXISTS, CompareOp.LESS, True),
        lambda: Compare(b"k", CompareTarget.EXISTS, CompareOp.EQUAL, 1),
        lambda: Compare.version(b"k", CompareOp.EQUAL, -1),
        lambda: Compare.version(b"k", CompareOp.EQUAL, 2**64),
        lambda: Compare.mod_revision(b"k", CompareOp.EQUAL, True),
        lambda: Compare(b"k", 1, CompareOp.EQUAL, 1),  # type: ignore[arg-type]
        lambda: Txn([Put(b"k", b"v")]),  # type: ignore[list-item]
        lambda: Txn([], [Noop()]),  # type: ignore[list-item]
        lambda: Txn([], [Txn()]),  # type: ignore[list-item]
    ],
)
def test_bad_arguments_are_refused_when_built(build: object) -> None:
    with pytest.raises(CommandError):
        build()  # type: ignore[operator]


def test_command_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        Put(b"k" * (KEY_BYTES_MAX + 1), b"")


def test_encoded_size_is_limited() -> None:
    value = b"v" * VALUE_BYTES_MAX
    txn = Txn([], [Put(b"k%d" % i, value) for i in range(COMMAND_BYTES_MAX // VALUE_BYTES_MAX)])
    with pytest.raises(CommandLimitError) as caught:
        encode(txn)
    assert caught.value.limit == COMMAND_BYTES_MAX


def test_get_and_txn_parts_are_not_commands() -> None:
    with pytest.raises(CommandError):
        encode(Get(b"k"))  # type: ignore[arg-type]


# ------------------------------------------------------------ decoding: damage


@given(COMMANDS, st.data())
def test_any_flipped_bit_is_refused(command: Put | Txn, data: st.DataObject) -> None:
    encoded = bytearray(encode(command))
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1))
    encoded[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CommandError):
        decode(bytes(encoded))


@given(COMMANDS, st.data())
def test_truncated_or_extended_input_is_refused(command: Put | Txn, data: st.DataObject) -> None:
    encoded = encode(command)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(CommandError):
        decode(encoded[:cut])
    with pytest.raises(CommandError):
        decode(encoded + data.draw(st.binary(min_size=1, max_size=8)))


def test_checksum_mismatch_names_both_values() -> None:
    encoded = bytearray(encode(Put(b"k", b"v")))
    encoded[-1] ^= 0xFF
    with pytest.raises(CommandChecksumError) as caught:
        decode(bytes(encoded))
    assert caught.value.expected != caught.value.actual
    assert caught.value.actual == crc32c(bytes(encoded[6:]))


def test_header_checks() -> None:
    body = b"\x00"
    with pytest.raises(CommandError, match="magic"):
        decode(frame(body, magic=0x00))
    with pytest.raises(UnsupportedCommandVersion) as caught:
        decode(frame(body, version=2))
    assert caught.value.version == 2
    with pytest.raises(CommandError, match="shorter"):
        decode(frame(b""))
    with pytest.raises(CommandLimitError):
        decode(b"\x00" * (COMMAND_BYTES_MAX + 1))
    assert decode(frame(body)) == Noop()


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (b"\x09", CommandError, "unknown command kind 9"),
        (b"\x05" + key_field(b"k"), CommandError, "only valid inside a transaction"),
        (b"\x01" + struct.pack("<H", KEY_BYTES_MAX + 1), CommandLimitError, "key length"),
        (
            b"\x01" + key_field(b"k") + struct.pack("<I", VALUE_BYTES_MAX + 1),
            CommandLimitError,
            "value length",
        ),
        (
            b"\x01" + key_field(b"k") + struct.pack("<I", 5) + b"abc",
            CommandError,
            "truncated value",
        ),
        (b"\x02" + key_field(b"k") + b"\x00", CommandError, "1 trailing bytes"),
        (b"\x03" + key_field(b"a") + b"\x02", CommandError, "unknown range flags"),
        (b"\x03" + key_field(b"a"), CommandError, "truncated range flags"),
        (
            b"\x04" + struct.pack("<HHH", TXN_COMPARES_MAX + 1, 0, 0),
            CommandLimitError,
            "compare count",
        ),
        (b"\x04" + struct.pack("<HHH", 0, TXN_OPS_MAX + 1, 0), CommandLimitError, "success"),
        (b"\x04" + struct.pack("<HHH", 0, 0, TXN_OPS_MAX + 1), CommandLimitError, "failure"),
        (b"\x04" + struct.pack("<HHH", 0, 1, 0) + b"\x00", CommandError, "not valid inside"),
        (b"\x04" + struct.pack("<HHH", 0, 1, 0) + b"\x04", CommandError, "not valid inside"),
        (b"\x04" + struct.pack("<HHH", 0, 0, 1), CommandError, "truncated operation kind"),
        (b"\x04" + struct.pack("<HHH", 1, 0, 0) + b"\x07\x00", CommandError, "compare target 7"),
        (b"\x04" + struct.pack("<HHH", 1, 0, 0) + b"\x00\x07", CommandError, "compare op 7"),
        (
            b"\x04"
            + struct.pack("<HHH", 1, 0, 0)
            + b"\x00\x02"
            + key_field(b"k")
            + struct.pack("<I", 0),
            CommandError,
            "GREATER does not apply",
        ),
        (
            b"\x04" + struct.pack("<HHH", 1, 0, 0) + b"\x02\x00" + key_field(b"k") + b"\x02",
            CommandError,
            "exists flag 2",
        ),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, error: type[CommandError], match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        decode(frame(body))
    assert caught.value.offset is not None
