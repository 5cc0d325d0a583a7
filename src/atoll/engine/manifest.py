"""The MANIFEST (a log of version edits) and the CURRENT pointer (docs/formats.md §4).

Does I/O. The engine's state is: CURRENT names the live MANIFEST; replaying its edits
gives the live tables, the WAL number below which segments are obsolete, the next file
number and the last sequence number. A new MANIFEST (at open, or when the old one grows
past a limit) starts with a full snapshot of the version; CURRENT is switched to it by
write-temp, fsync, rename, fsync-directory, so a crash leaves either the old or the new
MANIFEST in force, both complete.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from atoll.base.errors import CorruptionError, InvariantError
from atoll.engine.log_format import FILE_KIND_MANIFEST, MANIFEST_MAGIC, parse_log
from atoll.engine.log_writer import LogWriter, fsync_dir
from atoll.engine.version import Version, VersionEdit

CURRENT = "CURRENT"
_CURRENT_RE = re.compile(r"^MANIFEST-(\d{6,})\n$")


def manifest_name(number: int) -> str:
    return f"MANIFEST-{number:06d}"


@dataclass
class ManifestState:
    version: Version
    log_number: int
    next_file: int
    last_seq: int
    manifest_number: int


def read_current(dirpath: str) -> int | None:
    """The live MANIFEST's number, or None for a directory with no engine yet."""
    path = os.path.join(dirpath, CURRENT)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    match = _CURRENT_RE.match(raw.decode("ascii", errors="replace"))
    if not match:
        raise CorruptionError(f"CURRENT holds {raw[:40]!r}", file=path, offset=0)
    return int(match.group(1))


def load_manifest(dirpath: str, number: int) -> ManifestState:
    path = os.path.join(dirpath, manifest_name(number))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as err:
        raise CorruptionError("CURRENT names a missing MANIFEST", file=path) from err
    # An incomplete last edit was never acknowledged (its fsync did not finish):
    # dropping it is safe; the tables it named are orphans, removed at open. A
    # complete edit with a bad checksum is corruption (see parse_log).
    contents = parse_log(
        data,
        MANIFEST_MAGIC,
        FILE_KIND_MANIFEST,
        path,
        tail_may_tear=True,
        only_incomplete_tail=True,
    )
    if not contents.records:
        raise CorruptionError("MANIFEST holds no complete edit", file=path, offset=0)
    version = Version.empty()
    log_number = next_file = last_seq = 0
    for i, record in enumerate(contents.records):
        try:
            edit = VersionEdit.decode(record)
            version = version.apply(edit)
        except (ValueError, KeyError, TypeError, IndexError, InvariantError) as err:
            raise CorruptionError(f"malformed MANIFEST edit #{i}: {err}", file=path) from err
        log_number = edit.log_number if edit.log_number is not None else log_number
        next_file = edit.next_file if edit.next_file is not None else next_file
        last_seq = edit.last_seq if edit.last_seq is not None else last_seq
    return ManifestState(version, log_number, next_file, last_seq, number)


class ManifestWriter:
    """Appends edits to the live MANIFEST, fsyncing each before it takes effect."""

    def __init__(self, dirpath: str, number: int, state: ManifestState) -> None:
        self.dirpath = dirpath
        self.number = number
        path = os.path.join(dirpath, manifest_name(number))
        self._log = LogWriter(path, MANIFEST_MAGIC, FILE_KIND_MANIFEST)
        first = state.version.snapshot_edit()
        first.log_number = state.log_number
        first.next_file = state.next_file
        first.last_seq = state.last_seq
        self._log.append(first.encode())
        self._log.sync()
        fsync_dir(dirpath)
        _set_current(dirpath, number)

    @property
    def size(self) -> int:
        return self._log.end

    def append(self, edit: VersionEdit) -> None:
        self._log.append(edit.encode())
        self._log.sync()

    def close(self) -> None:
        self._log.close()


def _set_current(dirpath: str, number: int) -> None:
    tmp = os.path.join(dirpath, CURRENT + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{manifest_name(number)}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(dirpath, CURRENT))
    fsync_dir(dirpath)
