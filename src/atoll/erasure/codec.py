"""Reed-Solomon `k+m` over GF(2^8) through ISA-L, and the stripe codec built on it.

Owns the native-library wrapper (shared/DESIGN.md §4; docs/formats/shard_file.md §2
defines the code). No file or network I/O; it loads a shared library once and calls
it through ctypes, which releases the GIL for the length of each call, so coding can
run in a thread pool beside the event loop.

Why ISA-L through ctypes and not pyeclib's `ECDriver`: pyeclib (liberasurecode) puts
an 80-byte header of its own in front of every fragment and returns every fragment,
and every decoded stripe, as a freshly allocated `bytes`. At 1 MiB stripes those
allocations are above glibc's mmap threshold, and depending on the heap's state each
call maps and faults in fresh pages: a loop encoding one 4+2 stripe buffer ran at
0.4 GB/s with glibc's defaults and 5 GB/s with its thresholds raised, against
10-12 GB/s for ISA-L called on reused buffers (bench/results/erasure.md). The pyeclib
wheel bundles ISA-L itself (`pyeclib.libs/libisal*.so*`); calling its
`ec_encode_data` on buffers this module owns codes into reused memory, with no
header and no allocation per stripe.
The generator matrix is ISA-L's `gf_gen_cauchy1_matrix`, the one pyeclib's
`isa_l_rs_cauchy` backend uses, so parity bytes equal that backend's fragment
payloads (tests/unit/erasure/test_codec.py checks it).

- `Codec(k, m)`: encode `k` equal-length data shards into `m` parity buffers;
  reconstruct any shards from any `k` others. Thread-safe.
- `StripeCodec(layout)`: one stripe at a time, with the cutting and padding of
  `stripe.StripeLayout` and buffers reused from call to call. One per thread.

`k = 1` is replication: the parity rows of the generator are all ones, so every
parity shard is a copy of the data. `m = 0` has no parity; decoding then needs every
data shard.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from atoll.base.errors import invariant
from atoll.base.memory import unfilled_bytearray
from atoll.erasure.errors import (
    CodecUnavailable,
    InvalidRange,
    NotEnoughShards,
    ShardLengthError,
)
from atoll.erasure.stripe import ReadableBuffer, StripeLayout, WritableBuffer, check_profile

GF_POLYNOMIAL = 0x11D
"""The field of ISA-L's RS code: GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1."""

GF_TABLE_BYTES_PER_COEFFICIENT = 32
"""`ec_init_tables` expands each matrix coefficient into 32 bytes of lookup tables."""

DECODE_TABLES_CACHED_MAX = 256
"""Decode tables kept per codec, one per (surviving shards, wanted shards) pattern."""

_REQUIRED_SYMBOLS = (
    "gf_gen_cauchy1_matrix",
    "gf_invert_matrix",
    "ec_init_tables",
    "ec_encode_data",
)


# -- the library ---------------------------------------------------------------------------


def _candidate_paths() -> list[str]:
    """Where ISA-L may be: inside the pyeclib wheel (auditwheel renames it
    `libisal-<hash or name>.so.N`), then wherever the system keeps `libisal`."""
    paths: list[str] = []
    spec = importlib.util.find_spec("pyeclib")
    if spec is not None and spec.origin is not None:
        site = os.path.dirname(os.path.dirname(spec.origin))
        paths += sorted(glob.glob(os.path.join(site, "pyeclib.libs", "libisal*.so*")))
    system = ctypes.util.find_library("isal")
    if system is not None:
        paths.append(system)
    return paths


@functools.cache
def load_isal(path: str | None = None) -> ctypes.CDLL:
    """ISA-L, loaded once per path, with the signatures of the functions used here.

    `path` None searches the pyeclib wheel and then the system. Raises
    `CodecUnavailable` if no candidate loads and has every required symbol.
    """
    candidates = [path] if path is not None else _candidate_paths()
    failures = []
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            _declare(lib)
        except (OSError, AttributeError) as err:
            failures.append(f"{candidate}: {err}")
            continue
        return lib
    raise CodecUnavailable(
        "no usable ISA-L library (install the pyeclib wheel, which bundles it): "
        + ("; ".join(failures) or "no candidate found")
    )


def _declare(lib: ctypes.CDLL) -> None:
    for name in _REQUIRED_SYMBOLS:
        getattr(lib, name)  # AttributeError if missing
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.gf_gen_cauchy1_matrix.argtypes = [p, i, i]
    lib.gf_gen_cauchy1_matrix.restype = None
    lib.gf_invert_matrix.argtypes = [p, p, i]
    lib.gf_invert_matrix.restype = i
    lib.ec_init_tables.argtypes = [i, i, p, p]
    lib.ec_init_tables.restype = None
    lib.ec_encode_data.argtypes = [i, i, i, p, p, p]
    lib.ec_encode_data.restype = None


# -- GF(2^8) arithmetic for the small matrices (never for data) ------------------------------


def _gf_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for power in range(255):
        exp[power] = x
        log[x] = power
        x <<= 1
        if x & 0x100:
            x ^= GF_POLYNOMIAL
    for power in range(255, 512):
        exp[power] = exp[power - 255]
    return exp, log


_EXP, _LOG = _gf_tables()


def gf_mul(a: int, b: int) -> int:
    """Product in GF(2^8) modulo `GF_POLYNOMIAL`."""
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _row_times_matrix(row: bytes, matrix: bytes, k: int) -> bytes:
    """`row` (1 x k) times `matrix` (k x k, row-major) in GF(2^8)."""
    out = [0] * k
    for t, coefficient in enumerate(row):
        if coefficient:
            for j in range(k):
                out[j] ^= gf_mul(coefficient, matrix[t * k + j])
    return bytes(out)


# -- buffers -------------------------------------------------------------------------------


def _byte_view(buffer: ReadableBuffer, what: str) -> memoryview:
    view = memoryview(buffer)
    if not view.c_contiguous:
        raise ShardLengthError(f"{what} is not a contiguous buffer")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _address(view: memoryview) -> int:
    """The address of the first byte of a non-empty contiguous byte view."""
    if not view.readonly:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    obj = view.obj
    if type(obj) is bytes and len(view) == len(obj):
        return int(ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value or 0)
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


class Codec:
    """Reed-Solomon `k+m` over GF(2^8): the systematic generator matrix is the `k x k`
    identity over `m` Cauchy rows (all-ones rows when `k = 1`). Thread-safe."""

    def __init__(self, k: int, m: int, *, library_path: str | None = None) -> None:
        check_profile(k, m)
        self.k = k
        self.m = m
        self.n = k + m
        self._lib = load_isal(library_path)
        self._ec_encode_data = self._lib.ec_encode_data
        self._matrix = self._generator()
        self._encode_tables = self._tables(self._matrix[k * k :], m) if m else None
        self._decode_tables: dict[
            tuple[tuple[int, ...], tuple[int, ...]], ctypes.Array[ctypes.c_ubyte]
        ] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Codec(k={self.k}, m={self.m})"

    @property
    def generator_matrix(self) -> bytes:
        """The `(k + m) x k` generator, row-major: shard `i` is row `i` times the data."""
        return self._matrix

    def _generator(self) -> bytes:
        k, n = self.k, self.n
        if k == 1:
            return bytes([1] * n)
        matrix = (ctypes.c_ubyte * (n * k))()
        self._lib.gf_gen_cauchy1_matrix(matrix, n, k)
        return bytes(matrix)

    def _tables(self, rows: bytes, count: int) -> ctypes.Array[ctypes.c_ubyte]:
        tables = (ctypes.c_ubyte * (GF_TABLE_BYTES_PER_COEFFICIENT * self.k * count))()
        source = (ctypes.c_ubyte * len(rows)).from_buffer_copy(rows)
        self._lib.ec_init_tables(self.k, count, source, tables)
        return tables

    @property
    def encode_tables(self) -> ctypes.Array[ctypes.c_ubyte] | None:
        """ISA-L tables of the parity rows (None when `m = 0`)."""
        return self._encode_tables

    def decode_tables(
        self, survivors: tuple[int, ...], wanted: tuple[int, ...]
    ) -> ctypes.Array[ctypes.c_ubyte]:
        """ISA-L tables that compute shards `wanted` from the `k` shards `survivors`
        (ascending). Cached per pattern, so a run of stripes missing the same shards
        pays for the matrix inversion once."""
        key = (survivors, wanted)
        cached = self._decode_tables.get(key)  # one dict lookup: atomic under the GIL
        if cached is not None:
            return cached
        tables = self._tables(self.decode_rows(survivors, wanted), len(wanted))
        with self._lock:
            if len(self._decode_tables) >= DECODE_TABLES_CACHED_MAX:
                del self._decode_tables[next(iter(self._decode_tables))]
            self._decode_tables[key] = tables
        return tables

    def decode_rows(self, survivors: tuple[int, ...], wanted: tuple[int, ...]) -> bytes:
        """The decode matrix, row-major: for each shard of `wanted`, the `k`
        coefficients that express it in the `k` shards `survivors` (ascending): shard
        `wanted[r]` is the sum over j of `rows[r * k + j]` times shard `survivors[j]`,
        byte by byte in GF(2^8) (`combine`). A repair can so sum partial products
        computed where the survivors are."""
        k = self.k
        if len(survivors) != k or len(set(survivors)) != k or list(survivors) != sorted(survivors):
            raise InvalidRange(f"{self}: survivors {list(survivors)} are not k ascending indexes")
        if not all(0 <= i < self.n for i in survivors):
            raise InvalidRange(f"{self}: survivors {list(survivors)} outside 0..{self.n - 1}")
        self.check_wanted(wanted)
        rows = b"".join(self._matrix[i * k : (i + 1) * k] for i in survivors)
        square = (ctypes.c_ubyte * (k * k)).from_buffer_copy(rows)
        inverse = (ctypes.c_ubyte * (k * k))()
        # gf_invert_matrix destroys its input; `square` is a copy.
        status = self._lib.gf_invert_matrix(square, inverse, k)
        invariant(status == 0, f"{self}: rows {survivors} of the generator are singular")
        inverse_bytes = bytes(inverse)
        # Row w of the generator expresses shard w in the data; the inverse expresses the
        # data in the survivors, so row w times the inverse expresses shard w in them.
        return b"".join(
            _row_times_matrix(self._matrix[w * k : (w + 1) * k], inverse_bytes, k) for w in wanted
        )

    def run(
        self,
        length: int,
        tables: ctypes.Array[ctypes.c_ubyte],
        sources: ctypes.Array[Any],
        targets: ctypes.Array[Any],
        rows: int,
    ) -> None:
        """One `ec_encode_data` call: `rows` target buffers of `length` bytes from the
        `k` source buffers, by `tables`. The addresses must stay valid for the call."""
        self._ec_encode_data(length, self.k, rows, tables, sources, targets)

    # -- buffer-level API ----------------------------------------------------------------

    def encode(self, data: Sequence[ReadableBuffer], parity: Sequence[WritableBuffer]) -> None:
        """Compute the `m` parity shards of the `k` data shards (all of one length) into
        `parity` (`m` writable buffers of at least that length)."""
        if len(data) != self.k or len(parity) != self.m:
            raise ShardLengthError(
                f"{self} encodes {self.k} data shards into {self.m} parity buffers, "
                f"got {len(data)} and {len(parity)}"
            )
        views = [_byte_view(b, f"data shard {i}") for i, b in enumerate(data)]
        length = _common_length(views)
        if self._encode_tables is None or length == 0:
            return
        outputs = [_writable(p, f"parity buffer {i}", length) for i, p in enumerate(parity)]
        self.run(
            length,
            self._encode_tables,
            _pointers([_address(v) for v in views]),
            _pointers([_address(v) for v in outputs]),
            self.m,
        )

    def reconstruct(
        self,
        shards: Mapping[int, ReadableBuffer],
        wanted: Sequence[int],
        out: Sequence[WritableBuffer],
    ) -> None:
        """Compute shards `wanted` (data or parity indexes) into `out` from any `k` of
        `shards` (index to bytes, all of one length). Uses the lowest `k` indexes given,
        which prefers data shards."""
        survivors = self.survivors(shards)
        if len(out) != len(wanted):
            raise ShardLengthError(f"{len(wanted)} shards wanted but {len(out)} buffers")
        wanted_key = self.check_wanted(wanted)
        views = [_byte_view(shards[i], f"shard {i}") for i in survivors]
        length = _common_length(views)
        if not wanted_key or length == 0:
            return
        outputs = [
            _writable(b, f"output for shard {w}", length) for w, b in zip(wanted, out, strict=True)
        ]
        self.run(
            length,
            self.decode_tables(survivors, wanted_key),
            _pointers([_address(v) for v in views]),
            _pointers([_address(v) for v in outputs]),
            len(wanted_key),
        )

    def survivors(self, shards: Mapping[int, object]) -> tuple[int, ...]:
        """The `k` lowest shard indexes of `shards`; `NotEnoughShards` if fewer."""
        present = sorted(shards)
        if present and (present[0] < 0 or present[-1] >= self.n):
            raise InvalidRange(f"{self}: shard indexes {present} outside 0..{self.n - 1}")
        if len(present) < self.k:
            raise NotEnoughShards(present, self.k, self.m)
        return tuple(present[: self.k])

    def check_wanted(self, wanted: Sequence[int]) -> tuple[int, ...]:
        key = tuple(wanted)
        if len(set(key)) != len(key) or not all(0 <= w < self.n for w in key):
            raise InvalidRange(f"{self}: wanted shards {list(key)} not distinct in 0..{self.n - 1}")
        return key


COMBINE_SOURCES_MAX = 255
"""Most buffers one `combine` call sums (a bound of ours: a repair sums at most k + m)."""


def combine(
    coefficients: bytes,
    sources: Sequence[ReadableBuffer],
    out: WritableBuffer | None = None,
    *,
    library_path: str | None = None,
) -> WritableBuffer:
    """The linear combination `sum(coefficients[i] * sources[i])` over GF(2^8), byte by
    byte, into `out` (at least as long as the sources) or a new buffer, which is
    returned. The sources are of one length. With `Codec.decode_rows`, a shard is the
    combination of the survivors; since addition is XOR, it is also the plain sum
    (coefficients all 1) of combinations of any partition of them."""
    lib = load_isal(library_path)
    count = len(sources)
    if count != len(coefficients) or not 1 <= count <= COMBINE_SOURCES_MAX:
        raise InvalidRange(
            f"combine: {len(coefficients)} coefficients for {count} sources "
            f"(1..{COMBINE_SOURCES_MAX})"
        )
    views = [_byte_view(b, f"source {i}") for i, b in enumerate(sources)]
    length = _common_length(views)
    if out is None:
        out = unfilled_bytearray(length)
    target = _writable(out, "combine output", length)
    if length == 0:
        return out
    tables = (ctypes.c_ubyte * (GF_TABLE_BYTES_PER_COEFFICIENT * count))()
    lib.ec_init_tables(count, 1, (ctypes.c_ubyte * count).from_buffer_copy(coefficients), tables)
    lib.ec_encode_data(
        length,
        count,
        1,
        tables,
        _pointers([_address(v) for v in views]),
        _pointers([_address(target)]),
    )
    return out


def _common_length(views: Sequence[memoryview]) -> int:
    lengths = {len(v) for v in views}
    if len(lengths) > 1:
        raise ShardLengthError(f"shards of different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _writable(buffer: WritableBuffer, what: str, length: int) -> memoryview:
    view = _byte_view(buffer, what)
    if view.readonly:
        raise ShardLengthError(f"{what} is read-only")
    if len(view) < length:
        raise ShardLengthError(f"{what} has {len(view)} bytes, needs {length}")
    return view


def _pointers(addresses: Sequence[int]) -> ctypes.Array[ctypes.c_void_p]:
    return (ctypes.c_void_p * len(addresses))(*addresses)


class StripeCodec:
    """Encodes and decodes whole stripes of one layout, reusing its buffers.

    Returned views point into the caller's stripe or shards (no copy) or into this
    object's buffers, and stay valid until the next call on this object. Not
    thread-safe: a worker thread keeps one of its own.

    The per-stripe Python work is kept to a few microseconds (a 1 MiB stripe codes in
    about 100 us): `bytes` shards go into the ctypes pointer arrays as they are, and
    other buffers by one address lookup each.
    """

    def __init__(self, layout: StripeLayout, codec: Codec | None = None) -> None:
        if codec is None:
            codec = Codec(layout.k, layout.m)
        if (codec.k, codec.m) != (layout.k, layout.m):
            raise ShardLengthError(f"{codec} does not code layout {layout.k}+{layout.m}")
        self.layout = layout
        self.codec = codec
        self._k, self._n, self._block_size = layout.k, layout.n, layout.block_size
        size = layout.full_shard_bytes
        slots = max(layout.m, 1)
        # Parity on encode, rebuilt shards on decode: `max(m, 1)` shard-sized slots.
        self._slots = bytearray(slots * size)
        self._slot_views = [
            memoryview(self._slots)[i * size : (i + 1) * size] for i in range(slots)
        ]
        # The data shard that straddles the end of a short stripe, zero-padded.
        self._pad = bytearray(size)
        self._pad_view = memoryview(self._pad)
        # Data shards wholly past the end of a short stripe (only when L <= (k - 1) * S).
        self._zeros = memoryview(bytes(size))
        # A c_char_p slot takes a `bytes` (stored as a pointer to its buffer) or an int.
        self._sources = _pointer_array(layout.k)
        self._source_addresses = ctypes.cast(self._sources, ctypes.POINTER(ctypes.c_void_p))
        self._targets = _pointer_array(slots)
        self._targets[:] = [_address(v) for v in self._slot_views]

    def encode(self, stripe: ReadableBuffer) -> list[memoryview]:
        """The `k + m` shards of `stripe` (1..block_size bytes), each
        `layout.shard_bytes(len(stripe))` long, in shard index order."""
        k, sources = self._k, self._sources
        if type(stripe) is bytes and stripe:
            # Storing a `bytes` in a char* slot stores its buffer's address; reading the
            # slot back as an integer is cheaper than any other way to learn it.
            view = memoryview(stripe)
            sources[0] = stripe
            base = self._source_addresses[0] or 0
        else:
            view, base = _view_and_address(stripe, "stripe")
        length = len(view)
        if not 0 < length <= self._block_size:
            raise ShardLengthError(f"stripe of {length} bytes outside 1..{self._block_size}")
        size = -(-length // k)
        whole = length // size  # data shards wholly inside the stripe: views, no copy
        starts = range(0, whole * size, size)
        shards = [view[start : start + size] for start in starts]
        sources[:whole] = [base + start for start in starts]
        for i in range(whole, k):
            shards.append(self._short_shard(view, i * size, size))
            sources[i] = _address(shards[-1])
        tables = self.codec.encode_tables
        if tables is not None:
            m = self.layout.m
            self.codec.run(size, tables, sources, self._targets, m)
            parity = self._slot_views[:m]
            shards += parity if size == len(self._pad) else [v[:size] for v in parity]
        return shards

    def _short_shard(self, view: memoryview, start: int, size: int) -> memoryview:
        """Data shard that runs past the end of the stripe, as padded shard bytes (only
        the first such shard has stripe bytes; the pad buffer is used once)."""
        length = len(view)
        if start >= length:
            return self._zeros[:size]
        pad = self._pad_view
        pad[: length - start] = view[start:length]
        pad[length - start : size] = self._zeros[: start + size - length]
        return pad[:size]

    def decode(
        self, shards: Mapping[int, ReadableBuffer], stripe_length: int
    ) -> list[ReadableBuffer]:
        """The stripe's bytes from any `k` of its shards, as `k` pieces in order (data
        shard `i` without its padding): their concatenation is the stripe.

        Missing data shards are rebuilt into this object's buffers. A present data
        shard is returned as the very object given when it holds no padding (the usual
        case), else as a view of it: never copied."""
        k = self._k
        size = self._shard_size(stripe_length)
        data = [shards.get(i) for i in range(k)]
        if None in data:
            missing = tuple(i for i, shard in enumerate(data) if shard is None)
            self._rebuild(shards, missing, size)  # checks the size of every shard used
            slots = (
                self._slot_views if size == len(self._pad) else [v[:size] for v in self._slot_views]
            )
            for j, i in enumerate(missing):
                data[i] = slots[j]
        else:
            for i, shard in enumerate(data):
                if _byte_length(shard) != size:
                    raise _wrong_size(i, _byte_length(shard), size)
        pieces = cast(list[ReadableBuffer], data)
        whole, rest = divmod(stripe_length, size)
        if whole < k:  # a short stripe: trim the straddling shard, empty the ones after
            pieces[whole] = _byte_view(pieces[whole], f"shard {whole}")[:rest]
            for i in range(whole + 1, k):
                pieces[i] = b""
        return pieces

    def reconstruct(
        self, shards: Mapping[int, ReadableBuffer], stripe_length: int, wanted: Sequence[int]
    ) -> list[memoryview]:
        """Shards `wanted` (at most `m`, data or parity) of the stripe, rebuilt from any
        `k` of `shards`: the repair path."""
        wanted_key = self.codec.check_wanted(wanted)
        if len(wanted_key) > len(self._slot_views):
            raise InvalidRange(f"at most {self.layout.m} shards can be rebuilt, asked {wanted}")
        size = self._shard_size(stripe_length)
        self._rebuild(shards, wanted_key, size)
        return [self._slot_views[j][:size] for j in range(len(wanted_key))]

    def _shard_size(self, stripe_length: int) -> int:
        if not 0 < stripe_length <= self._block_size:
            raise ShardLengthError(f"stripe of {stripe_length} bytes outside 1..{self._block_size}")
        return -(-stripe_length // self._k)

    def _rebuild(
        self, shards: Mapping[int, ReadableBuffer], wanted: tuple[int, ...], size: int
    ) -> None:
        survivors = self.codec.survivors(shards)
        sources = self._sources
        for j, index in enumerate(survivors):
            shard = shards[index]
            if type(shard) is bytes:
                if len(shard) != size:
                    raise _wrong_size(index, len(shard), size)
                sources[j] = shard
            else:
                view, address = _view_and_address(shard, f"shard {index}")
                if len(view) != size:
                    raise _wrong_size(index, len(view), size)
                sources[j] = address
        tables = self.codec.decode_tables(survivors, wanted)
        self.codec.run(size, tables, sources, self._targets, len(wanted))


def _pointer_array(count: int) -> ctypes.Array[Any]:
    """An array of `char *` for ec_encode_data. Typed loosely: typeshed lists only
    `bytes` for its items, but ctypes also takes an int address."""
    return (ctypes.c_char_p * count)()


def _view_and_address(buffer: ReadableBuffer, what: str) -> tuple[memoryview, int]:
    view = _byte_view(buffer, what)
    if not len(view):
        return view, 0
    if type(buffer) is bytes:
        return view, int(ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0)
    return view, _address(view)


def _byte_length(buffer: ReadableBuffer | None) -> int:
    if isinstance(buffer, memoryview):
        return buffer.nbytes
    return -1 if buffer is None else len(buffer)


def _wrong_size(index: int, got: int, size: int) -> ShardLengthError:
    return ShardLengthError(f"shard {index} has {got} bytes; this stripe has {size}-byte shards")
