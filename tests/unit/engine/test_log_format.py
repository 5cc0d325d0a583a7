"""Record framing of WAL segments and the MANIFEST (`log_format`), and the WAL batch
payload (`batch_codec`): torn tails are dropped, damage before good records is
`CorruptionError` with the file and offset, payloads round-trip. Pure, in memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.base.errors import CorruptionError
from atoll.engine.batch_codec import decode_batch, encode_batch
from atoll.engine.log_format import (
    FILE_HEADER_SIZE,
    FILE_KIND_MANIFEST,
    FILE_KIND_WAL,
    MANIFEST_MAGIC,
    MAX_RECORD_BYTES,
    RECORD_HEADER_SIZE,
    WAL_MAGIC,
    file_header,
    frame,
    parse_log,
)

PATH = "/db/000007.log"
PAYLOADS = [b"first record", b"x", b"third" * 20, b"\x00" * 9, b"last one"]
HEADER = file_header(WAL_MAGIC, FILE_KIND_WAL)


def log_of(payloads: list[bytes]) -> bytes:
    return HEADER + b"".join(frame(p) for p in payloads)


def offsets_of(payloads: list[bytes]) -> list[int]:
    """Offset of each record, then the end of the last."""
    out = [FILE_HEADER_SIZE]
    for p in payloads:
        out.append(out[-1] + RECORD_HEADER_SIZE + len(p))
    return out


def parse(data: bytes) -> tuple[list[bytes], int, bool]:
    c = parse_log(data, WAL_MAGIC, FILE_KIND_WAL, PATH)
    return c.records, c.valid_end, c.torn_tail


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


# ------------------------------------------------------------------ framing


def test_frame_is_length_crc_payload() -> None:
    record = frame(b"abc")
    assert record[:4] == (3).to_bytes(4, "little")
    assert record[RECORD_HEADER_SIZE:] == b"abc"
    assert len(record) == RECORD_HEADER_SIZE + 3


def test_whole_log_parses_to_its_records() -> None:
    data = log_of(PAYLOADS)
    assert parse(data) == (PAYLOADS, len(data), False)


def test_header_only_is_an_empty_log() -> None:
    assert parse(HEADER) == ([], FILE_HEADER_SIZE, False)


def test_file_cut_inside_its_header_is_an_empty_torn_log() -> None:
    assert parse(b"") == ([], 0, False)
    for cut in range(1, FILE_HEADER_SIZE):
        assert parse(HEADER[:cut]) == ([], 0, True)


@pytest.mark.parametrize(
    ("header", "offset"),
    [
        (file_header(MANIFEST_MAGIC, FILE_KIND_WAL), 0),  # wrong magic
        (file_header(WAL_MAGIC, FILE_KIND_MANIFEST), 0),  # wrong kind
        (HEADER[:8] + b"\x02" + HEADER[9:], 8),  # unknown version
    ],
    ids=["magic", "kind", "version"],
)
def test_wrong_file_header_is_corruption(header: bytes, offset: int) -> None:
    with pytest.raises(CorruptionError) as info:
        parse(header + frame(b"payload"))
    assert info.value.file == PATH
    assert info.value.offset == offset


# ------------------------------------------------------------------ torn tails


def test_every_truncation_keeps_the_complete_records_before_the_cut() -> None:
    data = log_of(PAYLOADS)
    ends = offsets_of(PAYLOADS)
    for cut in range(FILE_HEADER_SIZE, len(data) + 1):
        complete = sum(1 for end in ends[1:] if end <= cut)
        valid_end = ends[complete]
        assert parse(data[:cut]) == (PAYLOADS[:complete], valid_end, cut != valid_end), cut


def test_short_record_header_at_the_end_is_a_torn_tail() -> None:
    data = log_of(PAYLOADS) + frame(b"next")[:5]
    assert parse(data) == (PAYLOADS, offsets_of(PAYLOADS)[-1], True)


def test_length_past_the_end_of_file_is_a_torn_tail() -> None:
    data = log_of(PAYLOADS) + frame(b"a longer record")[:-3]
    assert parse(data) == (PAYLOADS, offsets_of(PAYLOADS)[-1], True)


def test_length_above_the_limit_is_a_torn_tail() -> None:
    huge = (MAX_RECORD_BYTES + 1).to_bytes(4, "little") + bytes(4) + b"xyz"
    assert parse(log_of(PAYLOADS) + huge) == (PAYLOADS, offsets_of(PAYLOADS)[-1], True)


@pytest.mark.parametrize("size", [1, RECORD_HEADER_SIZE, 100, 4096])
def test_zero_filled_tail_is_a_torn_tail(size: int) -> None:
    data = log_of(PAYLOADS) + bytes(size)
    assert parse(data) == (PAYLOADS, offsets_of(PAYLOADS)[-1], True)


def test_bad_checksum_on_the_last_record_is_a_torn_tail() -> None:
    data = log_of(PAYLOADS)
    last = offsets_of(PAYLOADS)[-2]
    for offset in range(last + 4, len(data)):  # its checksum and payload bytes
        assert parse(flipped(data, offset)) == (PAYLOADS[:-1], last, True), offset


def test_zeroed_last_payload_is_a_torn_tail() -> None:
    data = log_of(PAYLOADS)
    last = offsets_of(PAYLOADS)[-2]
    zeroed = data[: last + RECORD_HEADER_SIZE] + bytes(len(PAYLOADS[-1]))
    assert parse(zeroed) == (PAYLOADS[:-1], last, True)


# ------------------------------------------------------------------ corruption


@pytest.mark.parametrize("record", range(len(PAYLOADS) - 1))
def test_bad_checksum_before_a_valid_record_is_corruption_at_its_offset(record: int) -> None:
    data = log_of(PAYLOADS)
    start, end = offsets_of(PAYLOADS)[record : record + 2]
    for offset in range(start + 4, end):  # every checksum and payload byte
        with pytest.raises(CorruptionError) as info:
            parse(flipped(data, offset))
        err = info.value
        assert (err.file, err.offset) == (PATH, start), offset
        assert err.expected is not None and err.actual is not None
        assert err.expected != err.actual
        assert PATH in str(err) and f"offset {start}" in str(err)


def test_zero_length_record_before_a_valid_record_is_corruption() -> None:
    data = log_of(PAYLOADS[:1]) + bytes(RECORD_HEADER_SIZE) + frame(b"after")
    with pytest.raises(CorruptionError) as info:
        parse(data)
    assert info.value.offset == offsets_of(PAYLOADS[:1])[-1]


def test_damaged_length_before_valid_records_is_corruption() -> None:
    data = log_of(PAYLOADS)
    start = offsets_of(PAYLOADS)[1]
    silent = []
    for offset in range(start, start + 4):
        for mask in (0x01, 0x40):
            try:
                records, _, _ = parse(flipped(data, offset, mask))
            except CorruptionError:
                continue
            silent.append((offset, mask, len(records)))
    assert not silent, f"(offset, mask, records kept) read without error: {silent}"


def test_damage_far_before_a_valid_record_is_corruption() -> None:
    # A garbled stretch (here: an unreadable record, then a hole of zeros) followed by a
    # valid record anywhere later is not a torn tail.
    good = log_of(PAYLOADS[:2])
    for junk in (b"\xff" * 50, bytes(5000), frame(b"lost")[:6] + bytes(100)):
        with pytest.raises(CorruptionError) as info:
            parse(good + junk + frame(b"after the damage"))
        assert info.value.offset == len(good)


def test_random_garbage_tail_is_a_torn_tail() -> None:
    rng = random.Random(11)
    data = log_of(PAYLOADS)
    for size in (1, 7, 8, 9, 100, 1000):
        assert parse(data + rng.randbytes(size)) == (PAYLOADS, len(data), True), size


def parse_sealed(data: bytes) -> tuple[list[bytes], int, bool]:
    c = parse_log(data, WAL_MAGIC, FILE_KIND_WAL, PATH, tail_may_tear=False)
    return c.records, c.valid_end, c.torn_tail


def test_sealed_file_parses_whole() -> None:
    data = log_of(PAYLOADS)
    assert parse_sealed(data) == (PAYLOADS, len(data), False)
    assert parse_sealed(HEADER) == ([], FILE_HEADER_SIZE, False)


def test_any_damage_to_a_sealed_file_is_corruption() -> None:
    # A sealed file was fsynced before its successor took writes: it cannot be torn.
    data = log_of(PAYLOADS)
    last = offsets_of(PAYLOADS)[-2]
    damaged = {  # name: (bytes, offset the error reports)
        "truncated": (data[:-1], last),
        "bad checksum at the end": (flipped(data, len(data) - 1), last),
        "zero-filled tail": (data + bytes(100), len(data)),
        "cut inside the file header": (HEADER[:5], 0),
    }
    for name, (bad, offset) in damaged.items():
        with pytest.raises(CorruptionError) as info:
            parse_sealed(bad)
        assert (info.value.file, info.value.offset) == (PATH, offset), name


# ------------------------------------------------------------------ batch payloads

OPS = st.lists(
    st.tuples(st.sampled_from([0, 1]), st.binary(max_size=12), st.binary(max_size=40)),
    max_size=20,
)


@given(first_seq=st.integers(0, (1 << 64) - 1), ops=OPS)
def test_batch_round_trip(first_seq: int, ops: list[tuple[int, bytes, bytes]]) -> None:
    codes = bytes(op for op, _, _ in ops)
    keys = [k for _, k, _ in ops]
    values = [v for _, _, v in ops]
    payload = encode_batch(first_seq, codes, keys, values)
    assert decode_batch(payload, PATH) == (first_seq, codes, keys, values)


def test_batch_of_empty_keys_and_values_round_trips() -> None:
    keys = [b"", b"k", b"", b""]
    values = [b"", b"", b"v", b""]
    payload = encode_batch(5, b"\x01\x00\x01\x01", keys, values)
    assert decode_batch(payload, PATH) == (5, b"\x01\x00\x01\x01", keys, values)


def test_empty_batch_round_trips() -> None:
    assert decode_batch(encode_batch(1, b"", [], []), PATH) == (1, b"", [], [])


def test_every_truncated_batch_payload_is_corruption() -> None:
    payload = encode_batch(42, b"\x01\x01\x00", [b"alpha", b"", b"gamma"], [b"one", b"two", b""])
    for cut in range(len(payload)):
        with pytest.raises(CorruptionError) as info:
            decode_batch(payload[:cut], PATH)
        assert info.value.file == PATH, cut


def test_batch_payload_with_trailing_bytes_is_corruption() -> None:
    payload = encode_batch(42, b"\x01", [b"k"], [b"v"])
    with pytest.raises(CorruptionError):
        decode_batch(payload + b"\x00", PATH)
