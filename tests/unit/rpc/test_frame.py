"""The rpc wire format (src/atoll/rpc/frame.py, docs/rpc.md): pure, no sockets."""

from __future__ import annotations

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atoll.rpc import FrameError
from atoll.rpc.frame import (
    FLAG_CLIENT_STREAM,
    FLAG_ONE_WAY,
    FLAG_PAYLOAD_CRC,
    FLAG_SERVER_STREAM,
    HEADER_BYTES,
    KIND_CANCEL,
    KIND_ERROR,
    KIND_REQUEST,
    KIND_RESPONSE,
    KIND_STREAM_ACK,
    KIND_STREAM_CHUNK,
    KINDS,
    LARGE_BODY_BYTES,
    MESSAGE_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    STREAM_WINDOW_CHUNKS,
    Frame,
    FrameDecoder,
    decode_ack,
    encode_ack,
    encode_frame,
    encode_header,
)


def wire(*args: object, **kwargs: object) -> bytes:
    return b"".join(bytes(p) for p in encode_frame(*args, **kwargs))  # type: ignore[arg-type]


def test_header_layout_matches_docs_example() -> None:
    # docs/rpc.md §4: request 7 to "echo", message "hi", payload "abc".
    header = encode_header(KIND_REQUEST, 7, name_len=4, message_len=2, payload_len=3)
    assert len(header) == HEADER_BYTES
    assert header[:28].hex(" ") == (
        "a7 01 01 00 04 00 00 00 07 00 00 00 00 00 00 00 02 00 00 00 03 00 00 00 00 00 00 00"
    )
    assert int.from_bytes(header[28:], "little") == crc32c(header[:28])
    assert header.hex(" ")[-11:] == "bd 6e 56 1f"


def test_round_trip_every_kind() -> None:
    decoder = FrameDecoder()
    data = b"".join(
        wire(kind, 100 + kind, b"m" if kind == KIND_REQUEST else b"", b"msg", b"pay")
        for kind in sorted(KINDS)
    )
    frames = decoder.feed(data)
    assert [(f.kind, f.request_id, f.message, bytes(f.payload)) for f in frames] == [
        (kind, 100 + kind, b"msg", b"pay") for kind in sorted(KINDS)
    ]
    assert frames[0].name == "m"
    assert decoder.buffered_bytes == 0


def test_empty_frame_and_no_payload() -> None:
    (frame,) = FrameDecoder().feed(wire(KIND_CANCEL, 3))
    assert frame == Frame(KIND_CANCEL, 0, 3, "", b"", b"")


def test_byte_by_byte_feeding_small_and_large() -> None:
    big = bytes(range(256)) * ((LARGE_BODY_BYTES * 2) // 256)
    data = wire(KIND_REQUEST, 1, b"put", b"k", b"v") + wire(KIND_RESPONSE, 2, b"", b"m", big)
    decoder = FrameDecoder()
    frames: list[Frame] = []
    # One byte at a time through the header and the start, then bigger steps.
    for i in range(200):
        frames += decoder.feed(data[i : i + 1])
    frames += decoder.feed(data[200:])
    assert [(f.name, f.message, bytes(f.payload)) for f in frames] == [
        ("put", b"k", b"v"),
        ("", b"m", big),
    ]


def test_large_payload_is_a_view_of_its_own_buffer() -> None:
    payload = b"x" * (LARGE_BODY_BYTES + 1)
    (frame,) = FrameDecoder().feed(wire(KIND_RESPONSE, 1, b"", b"", payload))
    assert isinstance(frame.payload, memoryview)
    assert frame.payload.readonly
    assert frame.payload == payload


def test_buffered_protocol_style_reads_into_the_payload_buffer() -> None:
    payload = bytes(3 * LARGE_BODY_BYTES)
    data = memoryview(wire(KIND_RESPONSE, 9, b"", b"hdr", payload))
    decoder = FrameDecoder()
    frames: list[Frame] = []
    while data:
        target = decoder.get_buffer()
        n = min(len(target), len(data), 10_000)
        target[:n] = data[:n]
        data = data[n:]
        frames += decoder.buffer_updated(n)
    assert len(frames) == 1
    assert frames[0].message == b"hdr"
    assert frames[0].payload == payload


def test_many_small_frames_cross_buffer_compaction() -> None:
    frames_in = [
        wire(KIND_REQUEST, i, b"m", bytes([i % 256]) * (i % 500), b"p" * (i % 7000))
        for i in range(400)
    ]
    data = b"".join(frames_in)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(data), 4093):
        out += decoder.feed(data[i : i + 4093])
    assert [f.request_id for f in out] == list(range(400))
    assert all(bytes(f.payload) == b"p" * (f.request_id % 7000) for f in out)


def test_payload_crc_flag_checked() -> None:
    good = bytearray(wire(KIND_REQUEST, 1, b"m", b"", b"payload", payload_crc=True))
    (frame,) = FrameDecoder().feed(bytes(good))
    assert frame.flags == FLAG_PAYLOAD_CRC
    good[-1] ^= 0x01
    with pytest.raises(FrameError, match="payload crc32c"):
        FrameDecoder().feed(bytes(good))


@pytest.mark.parametrize(
    ("index", "match"),
    [(0, "magic"), (1, "header crc32c"), (9, "header crc32c"), (30, "header crc32c")],
)
def test_garbled_header_raises_with_offset(index: int, match: str) -> None:
    first = wire(KIND_RESPONSE, 1, b"", b"ok")
    second = bytearray(wire(KIND_RESPONSE, 2, b"", b"ok"))
    second[index] ^= 0x40
    decoder = FrameDecoder()
    assert len(decoder.feed(first)) == 1
    with pytest.raises(FrameError, match=match) as info:
        decoder.feed(bytes(second))
    assert info.value.offset == len(first)
    with pytest.raises(FrameError):  # the stream is out of step for good
        decoder.feed(first)


def _resealed(header: bytearray) -> bytes:
    header[28:32] = crc32c(bytes(header[:28])).to_bytes(4, "little")
    return bytes(header)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [(1, 2, "unsupported version 2"), (2, 99, "unknown frame kind"), (3, 0x80, "unknown flags")],
)
def test_valid_crc_but_unknown_fields(offset: int, value: int, match: str) -> None:
    header = bytearray(encode_header(KIND_RESPONSE, 1))
    header[offset] = value
    with pytest.raises(FrameError, match=match):
        FrameDecoder().feed(_resealed(header))


def test_oversize_lengths_rejected_before_the_body_arrives() -> None:
    header = bytearray(encode_header(KIND_RESPONSE, 1))
    header[20:24] = (PAYLOAD_BYTES_MAX + 1).to_bytes(4, "little")
    with pytest.raises(FrameError, match="payload of"):
        FrameDecoder().feed(_resealed(header))
    header = bytearray(encode_header(KIND_RESPONSE, 1))
    header[16:20] = (1025).to_bytes(4, "little")
    with pytest.raises(FrameError, match="message of 1025"):
        FrameDecoder(message_bytes_max=1024).feed(_resealed(header))


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(FrameError, match="message of"):
        encode_header(KIND_REQUEST, 1, message_len=MESSAGE_BYTES_MAX + 1)
    with pytest.raises(FrameError, match="name of"):
        encode_frame(KIND_REQUEST, 1, b"n" * 256)
    with pytest.raises(FrameError, match="u64"):
        encode_header(KIND_REQUEST, 1 << 64)
    with pytest.raises(FrameError, match="kind"):
        encode_header(0, 1)


def test_bad_utf8_name_rejected() -> None:
    with pytest.raises(FrameError, match="UTF-8"):
        FrameDecoder().feed(wire(KIND_ERROR, 1, b"\xff\xfe"))


def test_payload_view_of_other_format_is_sent_as_bytes() -> None:
    import array

    values = array.array("I", [1, 2, 3])
    (frame,) = FrameDecoder().feed(wire(KIND_STREAM_CHUNK, 1, b"", b"", memoryview(values)))
    assert bytes(frame.payload) == values.tobytes()


frames_strategy = st.lists(
    st.tuples(
        st.sampled_from(sorted(KINDS)),
        st.integers(0, 2**64 - 1),
        st.text(max_size=20).map(lambda s: s.encode()[:255]),
        st.binary(max_size=300),
        st.one_of(st.binary(max_size=300), st.integers(0, 3 * LARGE_BODY_BYTES).map(bytes)),
        st.booleans(),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy, cuts=st.lists(st.integers(1, 70_000), max_size=20))
def test_round_trip_any_frames_any_chunking(
    frames: list[tuple[int, int, bytes, bytes, bytes, bool]], cuts: list[int]
) -> None:
    data = b"".join(
        wire(kind, rid, name, msg, pay, payload_crc=crc)
        for kind, rid, name, msg, pay, crc in frames
    )
    decoder = FrameDecoder()
    out: list[Frame] = []
    at = 0
    for cut in [*cuts, len(data)]:
        out += decoder.feed(data[at : at + cut])
        at += cut
    out += decoder.feed(data[at:])
    assert [
        (f.kind, f.request_id, f.name.encode(), f.message, bytes(f.payload), bool(f.flags))
        for f in out
    ] == frames
    assert decoder.buffered_bytes == 0


# -- streams (docs/rpc.md §5) ----------------------------------------------------------------


def test_payload_parts_are_sent_unjoined_and_read_as_one_payload() -> None:
    big = b"B" * (LARGE_BODY_BYTES + 10)
    parts: list[bytes | bytearray | memoryview] = [b"ab", b"", memoryview(big), bytearray(b"cd")]
    encoded = encode_frame(KIND_RESPONSE, 3, b"", b"m", parts, payload_crc=True)
    assert len(encoded) == 4  # head, then each non-empty part as it is
    assert encoded[2].obj is big  # type: ignore[union-attr]
    (frame,) = FrameDecoder().feed(b"".join(bytes(p) for p in encoded))
    assert bytes(frame.payload) == b"ab" + big + b"cd"
    assert frame.flags == FLAG_PAYLOAD_CRC
    assert encode_frame(KIND_RESPONSE, 3, b"", b"m", []) == encode_frame(
        KIND_RESPONSE, 3, b"", b"m"
    )


def test_stream_flags_round_trip() -> None:
    for flags in (FLAG_CLIENT_STREAM, FLAG_SERVER_STREAM):
        data = wire(KIND_REQUEST, 1, b"m", b"", b"p", flags=flags, payload_crc=True)
        (frame,) = FrameDecoder().feed(data)
        assert frame.flags == flags | FLAG_PAYLOAD_CRC


def test_one_way_request_round_trips_and_nothing_else_can_be_one_way() -> None:
    data = wire(KIND_REQUEST, 5, b"m", b"msg", b"p", flags=FLAG_ONE_WAY)
    (frame,) = FrameDecoder().feed(data)
    assert (frame.kind, frame.flags, frame.request_id) == (KIND_REQUEST, FLAG_ONE_WAY, 5)
    refused = [
        (KIND_REQUEST, FLAG_ONE_WAY | FLAG_CLIENT_STREAM),
        (KIND_REQUEST, FLAG_ONE_WAY | FLAG_SERVER_STREAM),
        (KIND_RESPONSE, FLAG_ONE_WAY),
        (KIND_STREAM_CHUNK, FLAG_ONE_WAY),
    ]
    for kind, flags in refused:
        with pytest.raises(FrameError, match="only a plain request can be one-way"):
            encode_header(kind, 1, flags=flags)
        header = bytearray(encode_header(kind, 1))
        header[3] = flags
        with pytest.raises(FrameError, match="only a plain request can be one-way"):
            FrameDecoder().feed(_resealed(header))


def test_ack_round_trip_and_limits() -> None:
    (frame,) = FrameDecoder().feed(b"".join(encode_ack(9, 8)))
    assert (frame.kind, frame.request_id, decode_ack(frame)) == (KIND_STREAM_ACK, 9, 8)
    for count in (0, STREAM_WINDOW_CHUNKS + 1):
        with pytest.raises(FrameError, match="stream ack of"):
            encode_ack(9, count)
    bad = Frame(KIND_STREAM_ACK, 0, 9, "", (STREAM_WINDOW_CHUNKS + 1).to_bytes(4, "little"), b"")
    with pytest.raises(FrameError, match="stream ack of"):
        decode_ack(bad)
    with pytest.raises(FrameError, match="3-byte message"):
        decode_ack(bad._replace(message=b"abc"))


def test_ack_matches_docs_example() -> None:
    # docs/rpc.md §5: the ack of 8 chunks of request 9.
    assert b"".join(encode_ack(9, 8)).hex(" ") == (
        "a7 01 07 00 00 00 00 00 09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00"
        " 00 00 00 00 1b 14 4d 60 08 00 00 00"
    )
