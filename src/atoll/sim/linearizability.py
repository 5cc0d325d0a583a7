"""Linearizability checking of key-value histories. Pure: no I/O, no clock, no randomness.

Owns the operation record a test harness writes down for every client request
(`Operation`), the sequential model those requests are judged against (a register per
key, `register_step`), and the checker (`check_history`) the simulator runs over a
whole history (shared/STYLE.md §9: "histories are linearizable").

The algorithm is Wing & Gong's search with Lowe's memoisation, as Porcupine does it
(Wing & Gong, "Testing and verifying concurrent objects", JPDC 1993; Lowe, "Testing for
linearizability", CCPE 2017; Athalye, github.com/anishathalye/porcupine):

* The history is partitioned by key and each key is checked alone. A history is
  linearizable iff every per-object sub-history is (Herlihy & Wing's locality; Lowe's
  "P-compositionality"), and the search is exponential in the concurrency of the part
  it looks at, so this is the single largest saving.
* A key's call and return events are sorted by time into a doubly linked list. A
  depth-first search walks it from the front: at a call event it tries to linearize
  that operation now (the model must accept it in the current state), and if so lifts
  the call and its return out of the list and starts again from the front; reaching a
  return event means the operation that returns there was not linearized before it
  returned, so the search backtracks to the latest choice and tries the next call.
* Lowe's cache holds every (set of linearized operations, model state) pair already
  reached; reaching one again cannot lead anywhere new, so that branch is cut.

Time convention: an operation returning at `t` happens before one called at `t'` only
if `t < t'`. At equal times calls sort before returns, so touching windows overlap and
the two operations are concurrent (as in Porcupine).

Unknown outcomes: an operation whose `return_time` is None (the client timed out, or
the connection dropped) may have taken effect at any moment after its call, or never.
Its return event sorts at +infinity, it has no output to match, and the search may
leave it out: a key is linearizable as soon as every *completed* operation is
linearized. (An operation the server definitely rejected had no effect and should not
be recorded at all.)

Effort is bounded by a step budget per key, not by a clock, so a result is the same on
every machine; a key that exhausts it is reported as unknown (`ok is None`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from atoll.base.errors import AtollError, invariant

OpKind: TypeAlias = Literal["put", "get", "delete", "cas"]
KINDS: tuple[OpKind, ...] = ("put", "get", "delete", "cas")

RegisterState: TypeAlias = bytes | None
"""A key's value, or None when the key is absent."""

Output: TypeAlias = bytes | bool | None

DEFAULT_MAX_STEPS_PER_KEY = 1_000_000


class MalformedHistoryError(AtollError, ValueError):
    """An operation record that cannot describe any real request (a harness bug)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client request as the client saw it.

    `value` is what a put writes, or what a successful cas installs (None: the cas
    deletes). `expected` is what a cas requires the current value to be (None: absent).
    `output` is what the client observed: for a get the value read (None: absent), for a
    cas whether it succeeded, for put and delete None. When `return_time` is None the
    outcome is unknown and `output` must be None.
    """

    client_id: int
    kind: OpKind
    key: bytes
    call_time: float
    return_time: float | None
    output: Output = None
    value: bytes | None = None
    expected: bytes | None = None

    def __post_init__(self) -> None:
        problem = _malformation(self)
        if problem is not None:
            raise MalformedHistoryError(f"{problem}: {describe(self)}")

    @property
    def completed(self) -> bool:
        return self.return_time is not None


def _malformation(op: Operation) -> str | None:
    if op.kind not in KINDS:
        return f"unknown kind {op.kind!r}"
    if op.return_time is not None and op.return_time < op.call_time:
        return "returns before it is called"
    if op.kind != "cas" and op.expected is not None:
        return "only a cas has an expected value"
    if op.kind in ("get", "delete") and op.value is not None:
        return f"a {op.kind} writes no value"
    if op.kind == "put" and op.value is None:
        return "a put needs a value (use delete to remove a key)"
    if op.return_time is None:
        return None if op.output is None else "an unknown-outcome operation has no output"
    if op.kind == "get" and not (op.output is None or isinstance(op.output, bytes)):
        return "a get outputs bytes or None"
    if op.kind == "cas" and not isinstance(op.output, bool):
        return "a completed cas outputs True or False"
    if op.kind in ("put", "delete") and op.output is not None:
        return f"a {op.kind} has no output"
    return None


# -- constructors, for readable histories ----------------------------------------------


def put(
    client_id: int, key: bytes, value: bytes, call_time: float, return_time: float | None
) -> Operation:
    return Operation(client_id, "put", key, call_time, return_time, value=value)


def delete(client_id: int, key: bytes, call_time: float, return_time: float | None) -> Operation:
    return Operation(client_id, "delete", key, call_time, return_time)


def get(
    client_id: int,
    key: bytes,
    output: bytes | None,
    call_time: float,
    return_time: float | None,
) -> Operation:
    return Operation(client_id, "get", key, call_time, return_time, output=output)


def cas(
    client_id: int,
    key: bytes,
    expected: bytes | None,
    new: bytes | None,
    output: bool | None,
    call_time: float,
    return_time: float | None,
) -> Operation:
    return Operation(
        client_id, "cas", key, call_time, return_time, output=output, value=new, expected=expected
    )


def describe(op: Operation) -> str:
    """`c3 cas k=b'a' b'1'->b'2' = True @[4, 9]`: one line, for failure reports."""
    if op.kind == "put":
        what = f"put {op.value!r}"
    elif op.kind == "cas":
        what = f"cas {op.expected!r}->{op.value!r}"
    else:
        what = op.kind
    result = "?" if op.return_time is None else repr(op.output)
    end = "?" if op.return_time is None else f"{op.return_time:g}"
    return f"c{op.client_id} {what} k={op.key!r} = {result} @[{op.call_time:g}, {end}]"


# -- the sequential model --------------------------------------------------------------


def register_step(state: RegisterState, op: Operation) -> tuple[bool, RegisterState]:
    """Apply `op` to one key's `state`: (whether its output is possible, the new state).

    An unknown-outcome operation matches any output; its effect still follows from the
    state (a cas succeeds exactly when the current value is the expected one).
    """
    known = op.return_time is not None
    if op.kind == "put":
        return True, op.value
    if op.kind == "delete":
        return True, None
    if op.kind == "get":
        return (not known or op.output == state), state
    succeeds = state == op.expected
    if known and op.output is not succeeds:
        return False, state
    return True, (op.value if succeeds else state)


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a history.

    `ok` is True (linearizable), False (not), or None (some key exhausted its step
    budget and no key was found bad). `key` names the failing (or undecided) key. For a
    failure, `longest_prefix` is the longest sequence of that key's operations the
    search could linearize, and `explanation` says so in words.
    """

    ok: bool | None
    key: bytes | None = None
    explanation: str = ""
    longest_prefix: tuple[Operation, ...] = ()
    steps: int = 0


@dataclass(slots=True)
class _KeyResult:
    ok: bool | None
    steps: int
    longest_prefix: tuple[Operation, ...] = ()
    stuck_at: Operation | None = None
    state_after_prefix: RegisterState = None
    ops_total: int = 0


def check_history(
    history: Iterable[Operation], max_steps_per_key: int = DEFAULT_MAX_STEPS_PER_KEY
) -> CheckResult:
    """Whether `history` is linearizable against a register per key, all keys starting
    absent. Keys are checked in byte order; the first bad key is reported. A key that
    exhausts `max_steps_per_key` makes the answer None unless another key is bad."""
    if max_steps_per_key < 1:
        raise ValueError(f"max_steps_per_key must be positive, not {max_steps_per_key}")
    by_key: dict[bytes, list[Operation]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    steps_total = 0
    undecided: bytes | None = None
    for key in sorted(by_key):
        result = _check_key(by_key[key], max_steps_per_key)
        steps_total += result.steps
        if result.ok is False:
            return CheckResult(
                False, key, _explain(key, result), result.longest_prefix, steps_total
            )
        if result.ok is None and undecided is None:
            undecided = key
    if undecided is not None:
        why = f"key {undecided!r}: search exceeded {max_steps_per_key} steps"
        return CheckResult(None, undecided, why, (), steps_total)
    return CheckResult(True, steps=steps_total)


def _explain(key: bytes, result: _KeyResult) -> str:
    prefix = "; ".join(describe(op) for op in result.longest_prefix) or "(none)"
    stuck = "" if result.stuck_at is None else f"; stuck before {describe(result.stuck_at)}"
    return (
        f"key {key!r}: no linearization of its {result.ops_total} operations; "
        f"longest linearizable prefix has {len(result.longest_prefix)} "
        f"[{prefix}], leaving value {result.state_after_prefix!r}{stuck}"
    )


# -- the search for one key ----------------------------------------------------------


@dataclass(slots=True)
class _Events:
    """The call/return events of one key's operations as a doubly linked list.

    Node 0 is the head sentinel; node `n` for n >= 1 is the (n-1)th event in time
    order. -1 ends the list. Lifting a linearized operation unlinks its call and return
    nodes; unlifting relinks them in reverse order (Knuth's dancing links).
    """

    op_of: list[int]
    is_call: list[bool]
    match: list[int]  # call node -> its return node
    prev: list[int]
    next: list[int]

    @classmethod
    def build(cls, ops: Sequence[Operation]) -> _Events:
        # (time, 0 for a call / 1 for a return, op): calls first at equal times.
        events = sorted(
            [(op.call_time, 0, i) for i, op in enumerate(ops)]
            + [
                (math.inf if op.return_time is None else op.return_time, 1, i)
                for i, op in enumerate(ops)
            ]
        )
        count = len(events) + 1
        op_of = [-1] + [i for _, _, i in events]
        is_call = [False] + [kind == 0 for _, kind, _ in events]
        return_node = {i: node for node, (_, kind, i) in enumerate(events, 1) if kind == 1}
        match = [return_node[op_of[n]] if is_call[n] else -1 for n in range(count)]
        prev = list(range(-1, count - 1))
        nxt = [*range(1, count), -1]
        return cls(op_of, is_call, match, prev, nxt)

    def lift(self, call: int) -> None:
        for node in (call, self.match[call]):
            self.next[self.prev[node]] = self.next[node]
            if self.next[node] != -1:
                self.prev[self.next[node]] = self.prev[node]

    def unlift(self, call: int) -> None:
        for node in (self.match[call], call):
            self.next[self.prev[node]] = node
            if self.next[node] != -1:
                self.prev[self.next[node]] = node

    def first_return(self) -> int:
        node = self.next[0]
        while node != -1 and self.is_call[node]:
            node = self.next[node]
        return node


def _check_key(all_ops: Sequence[Operation], max_steps: int) -> _KeyResult:
    # A get whose outcome is unknown neither changes nor reveals anything.
    ops = [op for op in all_ops if op.completed or op.kind != "get"]
    to_linearize = sum(op.completed for op in ops)
    if to_linearize == 0:
        return _KeyResult(True, 0, ops_total=len(all_ops))
    events = _Events.build(ops)
    state: RegisterState = None
    linearized = 0  # bitmask over `ops`
    done = 0  # completed operations among the linearized
    chosen: list[tuple[int, RegisterState]] = []  # (call node, state before it)
    cache: set[tuple[int, RegisterState]] = set()
    best = _longest(ops, events, chosen, state, len(all_ops))
    node = events.next[0]
    steps = 0
    while steps < max_steps:
        steps += 1
        invariant(node != -1, "linearizability search ran off the end of its events")
        i = events.op_of[node]
        if events.is_call[node]:
            possible, after = register_step(state, ops[i])
            if possible and (linearized | 1 << i, after) not in cache:
                cache.add((linearized | 1 << i, after))
                chosen.append((node, state))
                state, linearized = after, linearized | 1 << i
                done += ops[i].completed
                events.lift(node)
                if done == to_linearize:
                    return _KeyResult(True, steps, ops_total=len(all_ops))
                if len(chosen) > len(best.longest_prefix):
                    best = _longest(ops, events, chosen, state, len(all_ops))
                node = events.next[0]
            else:
                node = events.next[node]
        elif not chosen:
            best.steps = steps
            return best
        else:
            # ops[i] returns here unlinearized: undo the latest choice, try the next call.
            node, state = chosen.pop()
            undone = events.op_of[node]
            linearized &= ~(1 << undone)
            done -= ops[undone].completed
            events.unlift(node)
            node = events.next[node]
    return _KeyResult(None, steps, ops_total=len(all_ops))


def _longest(
    ops: Sequence[Operation],
    events: _Events,
    chosen: Sequence[tuple[int, RegisterState]],
    state: RegisterState,
    ops_total: int,
) -> _KeyResult:
    prefix = tuple(ops[events.op_of[node]] for node, _ in chosen)
    first_return = events.first_return()
    stuck = None if first_return == -1 else ops[events.op_of[first_return]]
    return _KeyResult(False, 0, prefix, stuck, state, ops_total)
