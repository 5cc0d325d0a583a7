"""Encoding of one write batch as a WAL record payload (docs/formats.md §2). Pure.

    first_seq u64 | count u32 | op codes (count x u8) | key lengths (count x u32)
    | value lengths (count x u32) | keys (concatenated) | values (concatenated)

All integers little-endian. Operation `i` gets sequence number `first_seq + i`. Only
OP_PUT (1) and OP_DELETE (0) appear: a range delete is expanded into point deletes
before it is logged (see `LsmEngine.write`). The column layout lets both directions
run in C (`bytes.join`, `array`) rather than a Python loop per field.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import accumulate, pairwise

from atoll.base.errors import CorruptionError, invariant
from atoll.engine.api import OP_DELETE, OP_PUT

_HEAD = struct.Struct("<QI")
_LITTLE = sys.byteorder == "little"


def _u32_array(values: object) -> array[int]:
    out: array[int] = array("I", values)  # type: ignore[call-overload]
    invariant(out.itemsize == 4, "array('I') must be 32-bit")
    return out


def encode_batch(first_seq: int, ops: bytes, keys: list[bytes], values: list[bytes]) -> bytes:
    klens = _u32_array(map(len, keys))
    vlens = _u32_array(map(len, values))
    if not _LITTLE:
        klens.byteswap()
        vlens.byteswap()
    return b"".join(
        (
            _HEAD.pack(first_seq, len(ops)),
            ops,
            klens.tobytes(),
            vlens.tobytes(),
            b"".join(keys),
            b"".join(values),
        )
    )


def decode_batch(payload: bytes, path: str) -> tuple[int, bytes, list[bytes], list[bytes]]:
    """(first_seq, op codes, keys, values); a malformed payload is corruption."""
    try:
        first_seq, count = _HEAD.unpack_from(payload, 0)
        pos = _HEAD.size
        ops = payload[pos : pos + count]
        pos += count
        klens = array("I")
        klens.frombytes(payload[pos : pos + 4 * count])
        pos += 4 * count
        vlens = array("I")
        vlens.frombytes(payload[pos : pos + 4 * count])
        pos += 4 * count
    except (struct.error, ValueError) as err:
        raise CorruptionError("malformed WAL batch header", file=path) from err
    if not _LITTLE:
        klens.byteswap()
        vlens.byteswap()
    if len(ops) != count or len(klens) != count or len(vlens) != count:
        raise CorruptionError("truncated WAL batch", file=path)
    if ops.count(OP_PUT) + ops.count(OP_DELETE) != count:
        raise CorruptionError("unknown operation code in WAL batch", file=path)
    kends = list(accumulate(klens, initial=pos))
    vstart = kends[-1]
    vends = list(accumulate(vlens, initial=vstart))
    if vends[-1] != len(payload):
        raise CorruptionError("WAL batch lengths do not match its size", file=path)
    keys = [payload[a:b] for a, b in pairwise(kends)]
    values = [payload[a:b] for a, b in pairwise(vends)]
    return first_seq, ops, keys, values
