"""KV commands: the records a client's write becomes, and their binary encoding.

Pure: no I/O. Owns the command records (`Put`, `Delete`, `DeleteRange`, `Txn` with
its `Compare`s and branch operations, `Get` inside a branch, `Noop`), their limits,
and `encode`/`decode`, the format of the bytes proposed to Raft as a log entry's data.
The format is specified in docs/formats/kv.md §1, kept in step with the constants here:

    magic u8 | version u8 | crc32c u32 LE | body (kind u8, then the kind's fields)

The CRC-32C covers the body (every byte after the CRC). A command is built from
validated records, so a committed entry that fails to decode is never the client's
fault: it is a damaged log or a command from a newer format version, and the
replica must stop applying rather than diverge (`atoll.kv.state_machine`).

Semantics of a compare on a missing key (docs/formats/kv.md §1.4): its version,
mod revision and existence are 0, 0 and false; its value equals no byte string, so
`VALUE EQUAL` is false and `VALUE NOT_EQUAL` is true. (etcd makes every value compare
on a missing key false; with an explicit EXISTS target there is no need to.)
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeAlias

from crc32c import crc32c

from atoll.kv.errors import (
    CommandChecksumError,
    CommandError,
    CommandLimitError,
    UnsupportedCommandVersion,
)

COMMAND_MAGIC = 0xA8
COMMAND_VERSION = 1
HEADER_BYTES = 6  # magic u8, version u8, crc32c u32 LE

# Limits. A key's length is stored as a u16, a value's as a u32.
KEY_BYTES_MAX = 4 * 1024
VALUE_BYTES_MAX = 1024 * 1024
TXN_COMPARES_MAX = 128  # per transaction (etcd's --max-txn-ops default)
TXN_OPS_MAX = 128  # per branch (success, failure)
COMMAND_BYTES_MAX = 4 * 1024 * 1024  # a whole encoded command, header included

UINT64_MAX = 2**64 - 1

# Body kinds. Numbers are permanent (shared/STYLE.md §8); retire, never reuse.
KIND_NOOP = 0
KIND_PUT = 1
KIND_DELETE = 2
KIND_DELETE_RANGE = 3
KIND_TXN = 4
KIND_GET = 5  # only as an operation inside a transaction branch

# DeleteRange flag bits. A reader rejects a bit it does not know.
FLAG_HAS_END = 0x01
_FLAGS_KNOWN = FLAG_HAS_END

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<BBI")
_TXN_COUNTS = struct.Struct("<HHH")


class CompareTarget(enum.IntEnum):
    """What a compare reads from its key. Numbers are permanent."""

    VALUE = 0
    VERSION = 1
    EXISTS = 2
    MOD_REVISION = 3


class CompareOp(enum.IntEnum):
    """How a compare tests it. Numbers are permanent. GREATER and LESS apply only to
    the number targets (VERSION, MOD_REVISION)."""

    EQUAL = 0
    NOT_EQUAL = 1
    GREATER = 2
    LESS = 3


_NUMBER_TARGETS = frozenset({CompareTarget.VERSION, CompareTarget.MOD_REVISION})
_EQUALITY_OPS = frozenset({CompareOp.EQUAL, CompareOp.NOT_EQUAL})
_TARGET_NUMBERS = frozenset(int(t) for t in CompareTarget)
_OP_NUMBERS = frozenset(int(o) for o in CompareOp)


# ---------------------------------------------------------------------- validation


def _check_key(name: str, key: object) -> None:
    if type(key) is not bytes:
        raise CommandError(f"{name} must be bytes, not {type(key).__name__}")
    if len(key) > KEY_BYTES_MAX:
        raise CommandLimitError(f"{name} length in bytes", len(key), KEY_BYTES_MAX)


def _check_value(value: object) -> None:
    if type(value) is not bytes:
        raise CommandError(f"value must be bytes, not {type(value).__name__}")
    if len(value) > VALUE_BYTES_MAX:
        raise CommandLimitError("value length in bytes", len(value), VALUE_BYTES_MAX)


def _check_compare(target: object, op: object, operand: object) -> None:
    if not isinstance(target, CompareTarget):
        raise CommandError(f"compare target must be a CompareTarget, not {target!r}")
    if not isinstance(op, CompareOp):
        raise CommandError(f"compare op must be a CompareOp, not {op!r}")
    if target not in _NUMBER_TARGETS and op not in _EQUALITY_OPS:
        raise CommandError(f"compare op {op.name} does not apply to target {target.name}")
    if target is CompareTarget.VALUE:
        _check_value(operand)
    elif target is CompareTarget.EXISTS:
        if type(operand) is not bool:
            raise CommandError(f"an EXISTS compare takes a bool, not {operand!r}")
    elif type(operand) is not int or not 0 <= operand <= UINT64_MAX:
        raise CommandError(f"a {target.name} compare takes an int in [0, 2**64), not {operand!r}")


# ------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Put:
    """Set `key` to `value` (an empty value is a value, not a delete)."""

    key: bytes
    value: bytes

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        _check_value(self.value)

    def encode(self) -> bytes:
        return encode(self)


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove `key`; deleting a missing key changes nothing."""

    key: bytes

    def __post_init__(self) -> None:
        _check_key("key", self.key)

    def encode(self) -> bytes:
        return encode(self)


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Remove every key in `[start, end)`; `end=None` means to the end of the key
    space. An empty or inverted range changes nothing."""

    start: bytes
    end: bytes | None

    def __post_init__(self) -> None:
        _check_key("start", self.start)
        if self.end is not None:
            _check_key("end", self.end)

    def encode(self) -> bytes:
        return encode(self)


@dataclass(frozen=True, slots=True)
class Get:
    """Read `key` inside a transaction branch (for example, to return the current
    value when a compare-and-set fails). Not a command on its own: reads go through
    the read path, not the log."""

    key: bytes

    def __post_init__(self) -> None:
        _check_key("key", self.key)


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction: `target(key) op operand`.

    The operand is `bytes` for VALUE, an `int` in `[0, 2**64)` for VERSION and
    MOD_REVISION, and a `bool` for EXISTS. Build one with the class methods.
    """

    key: bytes
    target: CompareTarget
    op: CompareOp
    operand: bytes | int | bool

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        _check_compare(self.target, self.op, self.operand)

    @classmethod
    def value(cls, key: bytes, op: CompareOp, value: bytes) -> Compare:
        return cls(key, CompareTarget.VALUE, op, value)

    @classmethod
    def version(cls, key: bytes, op: CompareOp, version: int) -> Compare:
        return cls(key, CompareTarget.VERSION, op, version)

    @classmethod
    def mod_revision(cls, key: bytes, op: CompareOp, revision: int) -> Compare:
        return cls(key, CompareTarget.MOD_REVISION, op, revision)

    @classmethod
    def exists(cls, key: bytes, exists: bool = True) -> Compare:
        return cls(key, CompareTarget.EXISTS, CompareOp.EQUAL, exists)


TxnOp: TypeAlias = Put | Delete | DeleteRange | Get
_TXN_OP_TYPES = (Put, Delete, DeleteRange, Get)


@dataclass(frozen=True, slots=True, init=False)
class Txn:
    """If every compare holds, apply `success` in order, else `failure` in order; the
    whole transaction is one log entry, so it is atomic within the region. Each
    operation sees the effects of the ones before it in its branch."""

    compares: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]

    def __init__(
        self,
        compares: Sequence[Compare] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
    ) -> None:
        object.__setattr__(self, "compares", tuple(compares))
        object.__setattr__(self, "success", tuple(success))
        object.__setattr__(self, "failure", tuple(failure))
        self._validate()

    def _validate(self) -> None:
        if len(self.compares) > TXN_COMPARES_MAX:
            raise CommandLimitError("compare count", len(self.compares), TXN_COMPARES_MAX)
        if any(not isinstance(c, Compare) for c in self.compares):
            raise CommandError("txn compares must be Compare records")
        for name, ops in (("success", self.success), ("failure", self.failure)):
            if len(ops) > TXN_OPS_MAX:
                raise CommandLimitError(f"{name} operation count", len(ops), TXN_OPS_MAX)
            if any(not isinstance(op, _TXN_OP_TYPES) for op in ops):
                raise CommandError(f"txn {name} operations must be Put, Delete, DeleteRange or Get")

    def encode(self) -> bytes:
        return encode(self)


@dataclass(frozen=True, slots=True)
class Noop:
    """Changes nothing; advances the applied index (as a leader's empty entry does)."""

    def encode(self) -> bytes:
        return encode(self)


Command: TypeAlias = Put | Delete | DeleteRange | Txn | Noop
_COMMAND_TYPES = (Put, Delete, DeleteRange, Txn, Noop)


def compare_and_set(key: bytes, expected: bytes | None, new: bytes | None) -> Txn:
    """CAS as a transaction: if `key` holds `expected` (None: if it is missing), set it
    to `new` (None: delete it). The failure branch is one `Get`, so a caller whose
    CAS lost learns the current value without a second round trip."""
    compare = (
        Compare.exists(key, False)
        if expected is None
        else Compare.value(key, CompareOp.EQUAL, expected)
    )
    write: TxnOp = Delete(key) if new is None else Put(key, new)
    return Txn([compare], [write], [Get(key)])


# ------------------------------------------------------------------------ encoding


def encode(command: Command) -> bytes:
    """The v1 bytes of `command` (docs/formats/kv.md §1). Raises `CommandLimitError`
    if they would exceed COMMAND_BYTES_MAX."""
    if not isinstance(command, _COMMAND_TYPES):
        raise CommandError(f"not a command: {type(command).__name__}")
    parts: list[bytes] = []
    _encode_body(command, parts)
    body = b"".join(parts)
    size = HEADER_BYTES + len(body)
    if size > COMMAND_BYTES_MAX:
        raise CommandLimitError("encoded command size in bytes", size, COMMAND_BYTES_MAX)
    return _HEADER.pack(COMMAND_MAGIC, COMMAND_VERSION, crc32c(body)) + body


def _encode_body(command: Command | Get, parts: list[bytes]) -> None:
    if isinstance(command, Put):
        parts += (b"\x01", _U16.pack(len(command.key)), command.key)
        parts += (_U32.pack(len(command.value)), command.value)
    elif isinstance(command, Delete):
        parts += (b"\x02", _U16.pack(len(command.key)), command.key)
    elif isinstance(command, DeleteRange):
        parts += (b"\x03", _U16.pack(len(command.start)), command.start)
        if command.end is None:
            parts.append(b"\x00")
        else:
            parts += (bytes([FLAG_HAS_END]), _U16.pack(len(command.end)), command.end)
    elif isinstance(command, Get):
        parts += (b"\x05", _U16.pack(len(command.key)), command.key)
    elif isinstance(command, Txn):
        parts += (
            b"\x04",
            _TXN_COUNTS.pack(*map(len, (command.compares, command.success, command.failure))),
        )
        for compare in command.compares:
            _encode_compare(compare, parts)
        for op in (*command.success, *command.failure):
            _encode_body(op, parts)
    else:
        parts.append(b"\x00")


def _encode_compare(compare: Compare, parts: list[bytes]) -> None:
    parts += (bytes([compare.target, compare.op]), _U16.pack(len(compare.key)), compare.key)
    operand = compare.operand  # its type matches the target (checked when built)
    if compare.target is CompareTarget.EXISTS:
        parts.append(b"\x01" if operand else b"\x00")
    elif isinstance(operand, bytes):
        parts += (_U32.pack(len(operand)), operand)
    else:
        parts.append(_U64.pack(operand))


# ------------------------------------------------------------------------ decoding


class _Reader:
    """Bounds-checked little-endian reads from a command's bytes."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def fail(self, reason: str) -> NoReturn:
        raise CommandError(reason, offset=self.pos)

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            self.fail(f"truncated {what}: needs {size} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = _U16.unpack(self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = _U32.unpack(self.take(4, what))[0]
        return value

    def u64(self, what: str) -> int:
        value: int = _U64.unpack(self.take(8, what))[0]
        return value

    def key(self, what: str) -> bytes:
        at = self.pos
        size = self.u16(f"{what} length")
        if size > KEY_BYTES_MAX:
            raise CommandLimitError(f"{what} length in bytes", size, KEY_BYTES_MAX, offset=at)
        return self.take(size, what)

    def value(self, what: str) -> bytes:
        at = self.pos
        size = self.u32(f"{what} length")
        if size > VALUE_BYTES_MAX:
            raise CommandLimitError(f"{what} length in bytes", size, VALUE_BYTES_MAX, offset=at)
        return self.take(size, what)


def decode(data: bytes | bytearray | memoryview) -> Command:
    """The command encoded in `data`; raises a `CommandError` (a `ValueError`) for
    anything that is not exactly one valid v1 command (docs/formats/kv.md §1.5)."""
    data = bytes(data)
    if len(data) > COMMAND_BYTES_MAX:
        raise CommandLimitError("encoded command size in bytes", len(data), COMMAND_BYTES_MAX)
    if len(data) < HEADER_BYTES + 1:
        raise CommandError(f"{len(data)} bytes, shorter than a header and a kind", offset=0)
    magic, version, expected_crc = _HEADER.unpack_from(data)
    if magic != COMMAND_MAGIC:
        raise CommandError(f"magic {magic:#04x}, expected {COMMAND_MAGIC:#04x}", offset=0)
    if version != COMMAND_VERSION:
        raise UnsupportedCommandVersion(version)
    actual_crc = crc32c(memoryview(data)[HEADER_BYTES:])
    if actual_crc != expected_crc:
        raise CommandChecksumError(expected=expected_crc, actual=actual_crc)
    reader = _Reader(data, HEADER_BYTES)
    command = _decode_command(reader)
    if reader.pos != len(data):
        reader.fail(f"{len(data) - reader.pos} trailing bytes after the command")
    return command


def _decode_command(reader: _Reader) -> Command:
    at = reader.pos
    kind = reader.u8("kind")
    if kind == KIND_NOOP:
        return Noop()
    if kind == KIND_TXN:
        return _decode_txn(reader)
    if kind == KIND_GET:
        raise CommandError("a Get is only valid inside a transaction branch", offset=at)
    return _decode_write(kind, reader, at)


def _decode_write(kind: int, reader: _Reader, at: int) -> Put | Delete | DeleteRange:
    if kind == KIND_PUT:
        key = reader.key("key")
        return Put(key, reader.value("value"))
    if kind == KIND_DELETE:
        return Delete(reader.key("key"))
    if kind == KIND_DELETE_RANGE:
        start = reader.key("range start")
        flags_at = reader.pos
        flags = reader.u8("range flags")
        if flags & ~_FLAGS_KNOWN:
            raise CommandError(f"unknown range flags {flags:#04x}", offset=flags_at)
        end = reader.key("range end") if flags & FLAG_HAS_END else None
        return DeleteRange(start, end)
    raise CommandError(f"unknown command kind {kind}", offset=at)


def _decode_txn(reader: _Reader) -> Txn:
    at = reader.pos
    n_compares, n_success, n_failure = _TXN_COUNTS.unpack(reader.take(6, "txn counts"))
    if n_compares > TXN_COMPARES_MAX:
        raise CommandLimitError("compare count", n_compares, TXN_COMPARES_MAX, offset=at)
    for count, name in ((n_success, "success"), (n_failure, "failure")):
        if count > TXN_OPS_MAX:
            raise CommandLimitError(f"{name} operation count", count, TXN_OPS_MAX, offset=at)
    compares = [_decode_compare(reader) for _ in range(n_compares)]
    success = [_decode_txn_op(reader) for _ in range(n_success)]
    failure = [_decode_txn_op(reader) for _ in range(n_failure)]
    return Txn(compares, success, failure)


def _decode_txn_op(reader: _Reader) -> TxnOp:
    at = reader.pos
    kind = reader.u8("operation kind")
    if kind == KIND_GET:
        return Get(reader.key("key"))
    if kind in (KIND_NOOP, KIND_TXN):
        raise CommandError(f"command kind {kind} is not valid inside a transaction", offset=at)
    return _decode_write(kind, reader, at)


def _decode_compare(reader: _Reader) -> Compare:
    at = reader.pos
    raw_target = reader.u8("compare target")
    raw_op = reader.u8("compare op")
    if raw_target not in _TARGET_NUMBERS:
        raise CommandError(f"unknown compare target {raw_target}", offset=at)
    if raw_op not in _OP_NUMBERS:
        raise CommandError(f"unknown compare op {raw_op}", offset=at + 1)
    target, op = CompareTarget(raw_target), CompareOp(raw_op)
    key = reader.key("compare key")
    operand: bytes | int | bool
    if target is CompareTarget.VALUE:
        operand = reader.value("compare value")
    elif target is CompareTarget.EXISTS:
        flag_at = reader.pos
        flag = reader.u8("compare exists flag")
        if flag > 1:
            raise CommandError(f"exists flag {flag}, expected 0 or 1", offset=flag_at)
        operand = flag == 1
    else:
        operand = reader.u64("compare number")
    try:
        return Compare(key, target, op, operand)
    except CommandError as err:
        raise CommandError(err.reason, offset=at) from err


__all__ = [
    "COMMAND_BYTES_MAX",
    "COMMAND_MAGIC",
    "COMMAND_VERSION",
    "KEY_BYTES_MAX",
    "TXN_COMPARES_MAX",
    "TXN_OPS_MAX",
    "VALUE_BYTES_MAX",
    "Command",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteRange",
    "Get",
    "Noop",
    "Put",
    "Txn",
    "TxnOp",
    "compare_and_set",
    "decode",
    "encode",
]
