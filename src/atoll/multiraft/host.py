"""The multi-raft host: many Raft groups in one process, over one engine and one
transport (shared/DESIGN.md §6). Does I/O: the engine (on one worker thread), the
network (through `transport`), and the monotonic clock for ticks.

The ready loop is the only code that calls into the cores. Each cycle:

1. **inputs**: elapsed ticks (counted from the monotonic clock, so a process that
   was stopped catches up on every tick it missed before it handles anything else),
   then received messages, then queued local calls (proposals, reads, transfers);
2. **send** the messages that do not depend on this cycle's writes (a leader's
   appends and heartbeats: it replicates while it persists);
3. **persist**: every group's Ready is staged into one WriteBatch and written with
   one fsync if any Ready needs one (group commit, `LogStore`); then **apply**
   snapshots and committed entries to the state machines, staged into one more batch
   with their applied indexes, written without fsync (the log is durable; after a
   crash, entries past the stored applied index are applied again). Both in one hop
   to the engine thread, skipped when there is nothing to write. A snapshot received
   from the leader is restored into its state machine (durably) *before* the log
   base moves past the entries it replaces, so a crash in between leaves a state
   machine ahead of its log (replayed entries are skipped), never behind it;
4. **send** the rest (votes, append acknowledgements: they promise durable state);
5. **advance** every core, settle waiting proposals and reads, start the snapshots
   the cores asked to send, compact logs.

Snapshots are made on demand, never stored: the state machines live in the same
engine as the logs, so compacting a log needs no copy of the state, only a synced
write (the engine's one write-ahead log makes every earlier apply durable with it)
that moves the log base. A follower too far behind gets a snapshot streamed from an
engine snapshot taken between two cycles, when the state machine is exactly at the
core's applied index; the message carries that index, at or past the log base the
core asked for.

A proposal's caller waits until its entry is applied here; it learns the result, or
that another entry took its index (`ProposalDropped`), or times out (outcome
unknown). A read waits for a ReadIndex confirmation and for the state machine to
apply up to that index.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from atoll.base.errors import invariant
from atoll.base.workers import Workers
from atoll.engine.api import Engine, ReadView, WriteBatch
from atoll.multiraft.log_store import LogStore
from atoll.multiraft.transport import (
    METHOD_BATCH,
    METHOD_SNAPSHOT,
    OutgoingSnapshot,
    PeerSender,
    TransportConfig,
    receive_batch,
    receive_snapshot,
)
from atoll.raft import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    NotLeader,
    PersistedState,
    ProposalDropped,
    Raft,
    RaftConfig,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from atoll.raft.errors import RaftError
from atoll.raft.types import SEND_BEFORE_PERSIST
from atoll.rpc import ClientStreamHandler, Handler

log = logging.getLogger(__name__)


class RaftTimeout(RaftError, TimeoutError):
    """A proposal or read did not complete in time; a proposal's outcome is unknown."""


class StateMachine(Protocol):
    def applied_index(self) -> int: ...

    def apply(self, index: int, data: bytes, batch: WriteBatch) -> object: ...

    def batch_written(self) -> None: ...

    def snapshot_chunks(self, view: ReadView, chunk_bytes: int) -> Iterator[bytes]:
        """The state as of `view` (taken between two ready cycles), in pieces of about
        `chunk_bytes`; their concatenation is what `restore` takes."""

    def restore(self, data: bytes) -> None:
        """Replace the state by a snapshot's; durable when this returns."""

    def compact_history(self, revision: int) -> None:
        """The log before `revision` is gone: history kept for readers may go too."""


@dataclass(frozen=True)
class HostConfig:
    node_id: int
    tick_interval_s: float = 0.1
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 1
    ticks_per_cycle_max: int = 1000
    inbox_messages_max: int = 10_000
    calls_max: int = 10_000
    compact_after_entries: int = 10_000
    snapshot_bytes_max: int = 256 << 20  # received snapshots are held in memory
    lease_reads: bool = False
    inflight_batches_max: int = 64
    transport: TransportConfig = field(default_factory=TransportConfig)


@dataclass
class _Waiter:
    term: int
    future: asyncio.Future[object]


class Group:
    def __init__(self, group_id: int, core: Raft, sm: StateMachine) -> None:
        self.id = group_id
        self.core = core
        self.sm = sm
        self.inbox: deque[Message] = deque()
        self.queued: list[tuple[bytes, asyncio.Future[object]]] = []  # not yet proposed
        self.proposals: dict[int, _Waiter] = {}
        self.queued_reads: list[asyncio.Future[None]] = []  # not yet asked of the core
        # One ReadIndex request per cycle answers every read queued before it.
        self.reads: dict[bytes, list[asyncio.Future[None]]] = {}
        self.confirmed_reads: list[tuple[int, asyncio.Future[None]]] = []
        self.applied_changed = asyncio.Event()
        self.compacting = False  # a compaction is queued on the engine thread


def _has_disk_work(rd: Ready) -> bool:
    return bool(
        rd.entries or rd.hard_state is not None or rd.snapshot is not None or rd.committed_entries
    )


class RaftHost:
    def __init__(
        self,
        config: HostConfig,
        engine: Engine,
        peers: dict[int, str],
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.id = config.node_id
        self.engine = engine
        self.log_store = LogStore(engine)
        self.rng = rng
        self.clock = clock
        self.groups: dict[int, Group] = {}
        self.peers = {
            peer: PeerSender(peer, address, config.transport, self._report)
            for peer, address in sorted(peers.items())
            if peer != self.id
        }
        self._calls: deque[Callable[[], None]] = deque()
        self._wake = asyncio.Event()
        self._io = Workers(1, f"raft-io-{self.id}")  # persists, applies, compacts in order
        self._tasks: list[asyncio.Task[None]] = []
        self._peer_tasks: dict[int, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()  # closing senders, compactions
        self._ticks_done = 0
        self._started_at = 0.0
        self._read_ids = itertools.count(1)
        # Read contexts must not repeat across restarts: a reply to a read of an
        # earlier incarnation could otherwise settle a new read at an old index.
        self._read_prefix = f"{self.id}:{rng.getrandbits(64):016x}"
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None
        self.cycles = 0

    # -- set-up -----------------------------------------------------------------------

    def add_group(self, group_id: int, sm: StateMachine, initial: ConfState) -> Group:
        """Open group `group_id` from its stored state. `initial` is the group's first
        configuration (the base of a log that was never compacted)."""
        state = self.log_store.load(group_id)
        if state.snapshot.index == 0 and not state.snapshot.conf.voters:
            # The log still starts at the bootstrap: its base is the first configuration.
            state = PersistedState(state.hard_state, SnapshotMeta(0, 0, initial), state.entries)
        raft_config = RaftConfig(
            id=self.id,
            election_timeout_ticks=self.config.election_timeout_ticks,
            heartbeat_ticks=self.config.heartbeat_ticks,
            lease_reads=self.config.lease_reads,
            inflight_batches_max=self.config.inflight_batches_max,
        )
        core = Raft(raft_config, random.Random(self.rng.getrandbits(64)), state, sm.applied_index())
        group = Group(group_id, core, sm)
        self.groups[group_id] = group
        return group

    def set_peers(self, addresses: Mapping[int, str]) -> None:
        """Reach the nodes in `addresses` at those atoll.rpc addresses from now on (a
        node that joined, or moved); peers not named are kept."""
        for peer, address in sorted(addresses.items()):
            sender = self.peers.get(peer)
            if peer == self.id or not address or (sender is not None and sender.address == address):
                continue
            if sender is not None:
                task = self._peer_tasks.pop(peer, None)
                if task is not None:
                    task.cancel()
                closing = asyncio.get_running_loop().create_task(sender.close())
                self._background.add(closing)
                closing.add_done_callback(self._background.discard)
            sender = self.peers[peer] = PeerSender(
                peer, address, self.config.transport, self._report
            )
            if self._tasks:
                self._start_sender(sender)

    def peers_addresses(self) -> dict[int, str]:
        return {peer: sender.address for peer, sender in self.peers.items()}

    def _start_sender(self, sender: PeerSender) -> None:
        task = asyncio.get_running_loop().create_task(
            sender.run(), name=f"raft-send-{sender.peer_id}"
        )
        task.add_done_callback(self._task_done)
        self._peer_tasks[sender.peer_id] = task

    def rpc_handlers(self) -> dict[str, Handler]:
        return {METHOD_BATCH: functools.partial(receive_batch, self._deliver)}

    def rpc_stream_handlers(self) -> dict[str, ClientStreamHandler]:
        limit = self.config.snapshot_bytes_max
        return {METHOD_SNAPSHOT: lambda chunks: receive_snapshot(self._deliver, chunks, limit)}

    async def start(self) -> None:
        self._started_at = self.clock()
        loop = asyncio.get_running_loop()
        coroutines = [(self._ready_loop(), f"raft-ready-{self.id}"), (self._ticker(), "raft-tick")]
        for coroutine, name in coroutines:
            task = loop.create_task(coroutine, name=name)
            task.add_done_callback(self._task_done)
            self._tasks.append(task)
        for sender in self.peers.values():
            self._start_sender(sender)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A host task must never end by itself: if one fails (a disk error, a broken
        invariant), the node is no longer serving, and says so."""
        if task.cancelled():
            return
        error = task.exception()
        self._fail(error or RuntimeError(f"task {task.get_name()} returned"), task.get_name())

    def _fail(self, error: BaseException, what: str) -> None:
        log.critical("raft: node %d: %s ended: %r", self.id, what, error)
        if self.failure is None:
            self.failure = error
        self.failed.set()

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._peer_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)
        self._tasks = []
        self._peer_tasks = {}
        for sender in self.peers.values():
            await sender.close()
        await self._io.stop()

    # -- the API for services ---------------------------------------------------------

    def leader_of(self, group_id: int) -> int:
        return self.groups[group_id].core.lead

    def is_leader(self, group_id: int) -> bool:
        return self.groups[group_id].core.role is Role.LEADER

    async def propose(self, group_id: int, data: bytes, timeout_s: float) -> object:
        """Replicate `data`; returns what the state machine's `apply` returned."""
        group = self.groups[group_id]
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if len(group.queued) >= self.config.calls_max:
            raise ProposalDropped(f"node {self.id}: too many proposals queued")
        group.queued.append((data, future))
        self._wake.set()
        return await self._wait(future, timeout_s, f"proposal to group {group_id}")

    async def read_index(self, group_id: int, timeout_s: float) -> None:
        """Return once a linearizable read of `group_id`'s state machine may be served
        here (this node has applied everything committed when the read began)."""
        group = self.groups[group_id]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(group.queued_reads) >= self.config.calls_max:
            raise ProposalDropped(f"node {self.id}: too many reads queued")
        group.queued_reads.append(future)
        self._wake.set()
        await self._wait(future, timeout_s, f"read of group {group_id}")

    async def wait_applied(self, group_id: int, index: int) -> None:
        """Return once the group's state machine has applied past `index`."""
        group = self.groups[group_id]
        while group.sm.applied_index() <= index:
            await group.applied_changed.wait()

    def conf(self, group_id: int) -> ConfState:
        """The group's voters and learners in the configuration in effect here."""
        return self.groups[group_id].core.conf

    def conf_index(self, group_id: int) -> int:
        """The log index of that configuration (`Raft.conf_index`)."""
        return self.groups[group_id].core.conf_index

    async def change_conf(self, group_id: int, change: ConfChange, timeout_s: float) -> None:
        """Propose a membership change of `group_id` (on its leader) and return once it
        is committed and applied here. Raises `NotLeader`, or `ProposalDropped` with
        the core's reason (another change pending, a learner not caught up)."""
        group = self.groups[group_id]
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if len(self._calls) >= self.config.calls_max:
            raise ProposalDropped(f"node {self.id}: too many requests queued")

        def call() -> None:
            if future.done():
                return
            try:
                index = group.core.propose_conf_change(change)
            except ProposalDropped as err:
                future.set_exception(err)
                return
            group.proposals[index] = _Waiter(group.core.term, future)

        self._calls.append(call)
        self._wake.set()
        await self._wait(future, timeout_s, f"{change} of group {group_id}")

    async def transfer_leader(self, group_id: int, target: int) -> None:
        group = self.groups[group_id]
        if len(self._calls) >= self.config.calls_max:
            raise ProposalDropped(f"node {self.id}: too many requests queued")
        self._calls.append(lambda: group.core.transfer_leader(target))
        self._wake.set()

    async def _wait(self, future: asyncio.Future[Any], timeout_s: float, what: str) -> Any:
        try:
            # On timeout the future is cancelled: whoever would settle it skips it.
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError as err:
            raise RaftTimeout(f"node {self.id}: {what} timed out after {timeout_s}s") from err

    # -- inputs -----------------------------------------------------------------------

    def _deliver(self, group_id: int, m: Message) -> None:
        group = self.groups.get(group_id)
        if group is None or len(group.inbox) >= self.config.inbox_messages_max:
            return  # unknown group, or overloaded: Raft retries
        group.inbox.append(m)
        self._wake.set()

    def _report(self, group_id: int, m: Message, failed: bool) -> None:
        group = self.groups.get(group_id)
        if group is None:
            return
        if len(self._calls) >= self.config.calls_max:
            return  # Raft copes with an unreported failure: it probes again
        if m.type is MessageType.SNAP:
            self._calls.append(lambda: group.core.report_snapshot(m.to, failed))
        elif failed:
            self._calls.append(lambda: group.core.report_unreachable(m.to))
        self._wake.set()

    async def _ticker(self) -> None:
        interval = self.config.tick_interval_s
        while True:
            await asyncio.sleep(interval)
            self._wake.set()

    def _due_ticks(self) -> int:
        elapsed = int((self.clock() - self._started_at) / self.config.tick_interval_s)
        due = elapsed - self._ticks_done
        self._ticks_done = elapsed
        return min(due, self.config.ticks_per_cycle_max)

    def _take_inputs(self) -> None:
        ticks = self._due_ticks()
        for group in self.groups.values():
            for _ in range(ticks):
                group.core.tick()
            inbox, group.inbox = group.inbox, deque()
            for m in inbox:
                group.core.step(m)
        for group in self.groups.values():
            if group.queued:
                self._propose_queued(group)
            if group.queued_reads:
                self._read_queued(group)
        calls, self._calls = self._calls, deque()
        for call in calls:
            try:
                call()
            except ProposalDropped as err:
                log.debug("raft: request dropped: %s", err)

    def _propose_queued(self, group: Group) -> None:
        """Every proposal queued since the last cycle, as one batch of entries: one
        round of appends to the followers for all of them."""
        queued, group.queued = group.queued, []
        live = [(data, future) for data, future in queued if not future.done()]
        if not live:
            return
        try:
            first = group.core.propose_many([data for data, _ in live])
        except ProposalDropped as err:
            for _, future in live:
                future.set_exception(err)
            return
        term = group.core.term
        for offset, (_, future) in enumerate(live):
            group.proposals[first + offset] = _Waiter(term, future)

    def _read_queued(self, group: Group) -> None:
        queued, group.queued_reads = group.queued_reads, []
        live = [future for future in queued if not future.done()]
        # Requests whose every reader gave up (timed out) are forgotten.
        for context in [c for c, fs in group.reads.items() if all(f.done() for f in fs)]:
            del group.reads[context]
        if not live:
            return
        context = f"{self._read_prefix}:{next(self._read_ids)}".encode()
        try:
            group.core.read_index(context)
        except ProposalDropped as err:
            for future in live:
                future.set_exception(err)
            return
        group.reads[context] = live

    # -- the ready loop ---------------------------------------------------------------

    async def _ready_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._take_inputs()
            readies = [(g, g.core.ready()) for g in self.groups.values() if g.core.has_ready()]
            if not readies:
                continue
            self.cycles += 1
            snaps: list[tuple[Group, Message]] = []
            self._send(readies, snaps, early=True)
            if any(_has_disk_work(rd) for _, rd in readies):
                results = await self._io.run(self._persist_and_apply, readies)
            else:
                results = [[] for _ in readies]
            self._send(readies, snaps, early=False)
            for (group, rd), applied in zip(readies, results, strict=True):
                group.core.advance(rd)
                self._settle(group, rd, applied)
                if applied or rd.snapshot is not None:
                    group.applied_changed.set()
                    group.applied_changed = asyncio.Event()
            for group, m in snaps:
                self._send_snapshot(group, m)
            self._maybe_compact()
            if self._calls or any(
                g.core.has_ready() or g.queued or g.queued_reads for g in self.groups.values()
            ):
                self._wake.set()

    def _send(
        self, readies: list[tuple[Group, Ready]], snaps: list[tuple[Group, Message]], early: bool
    ) -> None:
        """Messages that do not depend on this cycle's writes go before them (a leader
        replicates while it persists, Raft thesis §10.2.1); the rest after. Snapshots
        wait in `snaps` for the end of the cycle."""
        for group, rd in readies:
            for m in rd.messages:
                if (m.type in SEND_BEFORE_PERSIST) is not early:
                    continue
                if m.type is MessageType.SNAP:
                    snaps.append((group, m))
                    continue
                sender = self.peers.get(m.to)
                if sender is not None:
                    sender.enqueue(group.id, m)

    def _send_snapshot(self, group: Group, m: Message) -> None:
        """Stream the state machine as it is now (between cycles: exactly at the core's
        applied index, which is at or past the base the core asked for)."""
        sender = self.peers.get(m.to)
        if sender is None:
            group.core.report_snapshot(m.to, True)
            return
        index = group.core.log.applied
        invariant(
            group.sm.applied_index() == index,
            f"group {group.id}: state machine at {group.sm.applied_index()} between "
            f"cycles, core applied {index}",
        )
        meta = group.core.snapshot_meta(index)
        view = self.engine.snapshot()
        chunks = group.sm.snapshot_chunks(view, self.config.transport.snapshot_chunk_bytes)
        outgoing = OutgoingSnapshot(chunks, view.close)
        sender.send_snapshot(group.id, replace(m, snapshot=Snapshot(meta)), outgoing)

    def _persist_and_apply(
        self, readies: list[tuple[Group, Ready]]
    ) -> list[list[tuple[Entry, object]]]:
        """Persist (one write and at most one fsync for all groups), then apply:
        committed entries are durable, so applying them before the late messages go
        out changes nothing for other nodes. One thread hop per cycle."""
        for group, rd in readies:
            if rd.snapshot is not None:
                group.sm.restore(rd.snapshot.data)
                log.info(
                    "raft: group %d installed a snapshot at index %d (term %d)",
                    group.id,
                    rd.snapshot.meta.index,
                    rd.snapshot.meta.term,
                )
        batch = WriteBatch()
        sync = False
        for group, rd in readies:
            self.log_store.stage(batch, group.id, rd)
            sync = sync or rd.must_sync
        if len(batch):
            self.log_store.write(batch, sync=sync)
        else:
            self.log_store.discard(batch)
        return self._apply(readies)

    def _apply(self, readies: list[tuple[Group, Ready]]) -> list[list[tuple[Entry, object]]]:
        batch = WriteBatch()
        out: list[list[tuple[Entry, object]]] = []
        for group, rd in readies:
            applied: list[tuple[Entry, object]] = []
            for entry in rd.committed_entries:
                data = entry.data if entry.type is EntryType.NORMAL else b""
                applied.append((entry, group.sm.apply(entry.index, data, batch)))
            out.append(applied)
        if len(batch):
            self.engine.write(batch, sync=False)
        for group, _ in readies:
            group.sm.batch_written()
        return out

    def _settle(self, group: Group, rd: Ready, applied: list[tuple[Entry, object]]) -> None:
        if rd.snapshot is not None:
            # Proposals of an earlier leadership whose indexes the snapshot covers: this
            # node will never apply them one by one, so their outcome stays unknown.
            for index in [i for i in group.proposals if i <= rd.snapshot.meta.index]:
                stale = group.proposals.pop(index)
                if not stale.future.done():
                    stale.future.set_exception(
                        RaftTimeout(f"group {group.id}: index {index} went into a snapshot")
                    )
        for entry, result in applied:
            waiter = group.proposals.pop(entry.index, None)
            if waiter is None or waiter.future.done():
                continue
            if waiter.term == entry.term:
                waiter.future.set_result(result)
            else:
                waiter.future.set_exception(
                    ProposalDropped(f"group {group.id}: index {entry.index} went to another entry")
                )
        for rs in rd.read_states:
            for future in group.reads.pop(rs.context, []):
                if not future.done():
                    group.confirmed_reads.append((rs.index, future))
        if group.confirmed_reads:
            applied_index = group.sm.applied_index()
            waiting = []
            for index, future in group.confirmed_reads:
                if future.done():
                    continue
                if index <= applied_index:
                    future.set_result(None)
                else:
                    waiting.append((index, future))
            group.confirmed_reads = waiting
        if rd.soft_state is not None and rd.soft_state.role is not Role.LEADER:
            # Reads wait on a ReadIndex round that a deposed leader will never finish.
            for futures in group.reads.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(NotLeader(self.id, group.core.term, group.core.lead))
            group.reads.clear()

    def _maybe_compact(self) -> None:
        """Queue a compaction on the engine thread for every group whose log grew past
        `compact_after_entries`; the ready loop goes on (ticks, heartbeats), and the
        core drops its entries once the write is done."""
        for group in self.groups.values():
            core = group.core
            applied = core.log.applied
            if (
                group.compacting
                or applied - core.log.base.index < self.config.compact_after_entries
            ):
                continue
            meta = core.snapshot_meta(applied)
            group.compacting = True
            done = asyncio.ensure_future(self._io.run(self._compact, group, meta))
            self._background.add(done)  # referenced until it ends; stop() awaits it
            done.add_done_callback(self._background.discard)
            done.add_done_callback(functools.partial(self._compacted, group, meta))

    def _compacted(self, group: Group, meta: SnapshotMeta, done: asyncio.Future[None]) -> None:
        group.compacting = False
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:  # the engine failed: as a failed persist, the node stops
            self._fail(error, f"compaction of group {group.id}")
            return
        # A snapshot from the leader may have moved the base past `meta` meanwhile.
        if meta.index > group.core.log.base.index:
            group.core.compact(meta)

    def _compact(self, group: Group, meta: SnapshotMeta) -> None:
        """Move the log base to `meta` with a synced write: it makes the state machine's
        earlier (unsynced) applies durable too, so no entry the state lacks is dropped."""
        batch = WriteBatch()
        self.log_store.compact(batch, group.id, meta)
        self.log_store.write(batch, sync=True)
        group.sm.compact_history(meta.index + 1)
