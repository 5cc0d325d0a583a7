"""The linearizability checker against known histories (hand-written, and generated from
real sequential executions), and against a brute-force reference on small histories."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from atoll.sim import (
    CheckResult,
    MalformedHistoryError,
    Operation,
    OpKind,
    cas,
    check_history,
    delete,
    get,
    put,
    register_step,
)

K = b"k"


def verdict(*ops: Operation) -> bool | None:
    return check_history(ops).ok


# -- hand-written histories ----------------------------------------------------------


def test_empty_and_single_operations_are_linearizable() -> None:
    assert verdict() is True
    assert verdict(get(1, K, None, 0, 1)) is True
    assert verdict(get(1, K, b"x", 0, 1)) is False  # nothing ever wrote x
    assert verdict(put(1, K, b"1", 0, 1)) is True


def test_stale_read_after_a_completed_write() -> None:
    write = put(1, K, b"1", 0, 1)
    assert verdict(write, get(2, K, b"1", 2, 3)) is True
    result = check_history([write, get(2, K, None, 2, 3)])
    assert result.ok is False
    assert result.key == K
    assert result.longest_prefix == (write,)
    assert "longest linearizable prefix has 1" in result.explanation
    assert "stuck before c2 get" in result.explanation


def test_a_read_concurrent_with_the_write_may_see_either_value() -> None:
    write = put(1, K, b"1", 0, 10)
    assert verdict(write, get(2, K, None, 2, 3)) is True
    assert verdict(write, get(2, K, b"1", 2, 3)) is True


def test_touching_windows_are_concurrent() -> None:
    # A return at t happens before a call at t' only if t < t'.
    assert verdict(put(1, K, b"1", 0, 5), get(2, K, None, 5, 6)) is True
    assert verdict(put(1, K, b"1", 0, 5), get(2, K, None, 6, 7)) is False


def test_sequential_reads_cannot_see_values_in_an_impossible_order() -> None:
    first = put(1, K, b"1", 0, 1)
    second = put(2, K, b"2", 2, 20)  # in flight while both reads happen
    assert verdict(first, second, get(3, K, b"1", 3, 4), get(3, K, b"2", 5, 6)) is True
    assert verdict(first, second, get(3, K, b"2", 3, 4), get(4, K, b"1", 5, 6)) is False


def test_a_lost_write() -> None:
    ops = [put(1, K, b"1", 0, 1), put(2, K, b"2", 2, 3)]
    assert verdict(*ops, get(3, K, b"2", 4, 5)) is True
    assert verdict(*ops, get(3, K, b"1", 4, 5)) is False


def test_cas_cannot_succeed_twice_from_the_same_value() -> None:
    setup = put(1, K, b"0", 0, 1)
    assert verdict(setup, cas(2, K, b"0", b"1", True, 2, 5), cas(3, K, b"0", b"2", True, 2, 5)) is (
        False
    )
    assert verdict(setup, cas(2, K, b"0", b"1", True, 2, 5), cas(3, K, b"0", b"2", False, 2, 5))
    # Chained, both may succeed: 0 -> 1 -> 2.
    assert verdict(setup, cas(2, K, b"0", b"1", True, 2, 5), cas(3, K, b"1", b"2", True, 2, 5))


def test_cas_on_an_absent_key_and_cas_that_deletes() -> None:
    assert verdict(cas(1, K, None, b"1", True, 0, 1), get(2, K, b"1", 2, 3)) is True
    assert verdict(cas(1, K, None, b"1", False, 0, 1)) is False  # the key was absent
    assert (
        verdict(put(1, K, b"1", 0, 1), cas(2, K, b"1", None, True, 2, 3), get(3, K, None, 4, 5))
        is True
    )


def test_concurrent_writes_linearizable_in_only_one_order() -> None:
    one, two = put(1, K, b"1", 0, 10), put(2, K, b"2", 0, 10)
    # Only "2 then 1" explains the final read; the search must find that order.
    assert verdict(one, two, get(3, K, b"1", 11, 12)) is True
    assert verdict(two, one, get(3, K, b"1", 11, 12)) is True
    # Reads during the writes see 1 then 2, so 1 came first; then a final 1 is impossible.
    assert (
        verdict(one, two, get(3, K, b"1", 2, 3), get(3, K, b"2", 4, 5), get(3, K, b"1", 11, 12))
        is False
    )


def test_deletes() -> None:
    ops = [put(1, K, b"1", 0, 1), delete(2, K, 2, 3)]
    assert verdict(*ops, get(3, K, None, 4, 5)) is True
    assert verdict(*ops, get(3, K, b"1", 4, 5)) is False
    assert verdict(*ops, cas(3, K, None, b"2", True, 4, 5), get(3, K, b"2", 6, 7)) is True
    assert verdict(*ops, cas(3, K, b"1", b"2", True, 4, 5)) is False


def test_unknown_outcome_put_may_explain_a_later_read() -> None:
    timed_out = put(1, K, b"1", 0, None)
    assert verdict(timed_out, get(2, K, b"1", 5, 6)) is True
    # ... or never have happened.
    assert verdict(timed_out, get(2, K, None, 5, 6)) is True
    # ... or have happened late: absent first, then visible.
    assert verdict(timed_out, get(2, K, None, 5, 6), get(2, K, b"1", 7, 8)) is True


def test_unknown_outcome_put_may_not_explain_what_it_cannot() -> None:
    # Once seen, it stays.
    assert verdict(put(1, K, b"1", 0, None), get(2, K, b"1", 5, 6), get(2, K, None, 7, 8)) is (
        False
    )
    # It cannot take effect before its call.
    assert verdict(get(2, K, b"1", 0, 1), put(1, K, b"1", 2, None)) is False
    # It cannot be undone by being linearized twice.
    assert (
        verdict(
            put(1, K, b"1", 0, None),
            get(2, K, b"1", 1, 2),
            put(2, K, b"2", 3, 4),
            get(2, K, b"2", 5, 6),
            get(2, K, b"1", 7, 8),
        )
        is False
    )


def test_unknown_outcome_cas_follows_the_state() -> None:
    assert verdict(cas(1, K, None, b"1", None, 0, None), get(2, K, b"1", 5, 6)) is True
    # The key was absent, so a cas expecting 0 could not have installed 1.
    assert verdict(cas(1, K, b"0", b"1", None, 0, None), get(2, K, b"1", 5, 6)) is False


def test_unknown_outcome_get_is_ignored() -> None:
    assert verdict(get(1, K, None, 0, None), put(2, K, b"1", 0, 1)) is True


def test_register_step_matches_known_outputs_and_any_unknown_one() -> None:
    assert register_step(b"1", get(1, K, b"1", 0, 1)) == (True, b"1")
    assert register_step(b"1", get(1, K, None, 0, 1)) == (False, b"1")
    assert register_step(b"1", get(1, K, None, 0, None)) == (True, b"1")
    assert register_step(b"1", cas(1, K, b"1", None, True, 0, 1)) == (True, None)
    assert register_step(b"2", cas(1, K, b"1", None, True, 0, 1))[0] is False
    assert register_step(b"2", cas(1, K, b"1", b"3", None, 0, None)) == (True, b"2")
    assert register_step(None, put(1, K, b"1", 0, None)) == (True, b"1")
    assert register_step(b"1", delete(1, K, 0, 1)) == (True, None)


def test_multi_key_history_reports_the_bad_key() -> None:
    good_a = [put(1, b"a", b"1", 0, 1), get(2, b"a", b"1", 2, 3)]
    bad_b = [put(1, b"b", b"1", 0, 1), get(2, b"b", None, 2, 3)]
    good_c = [put(3, b"c", b"9", 0, 10), get(4, b"c", None, 1, 2)]
    result = check_history([*good_a, *bad_b, *good_c])
    assert result.ok is False
    assert result.key == b"b"
    assert all(op.key == b"b" for op in result.longest_prefix)
    # Per key: the same interleaving across keys is fine when every key is.
    assert verdict(*good_a, *good_c, put(5, b"b", b"1", 0, 1)) is True


def test_keys_are_independent() -> None:
    # Reading b's old value after a's write returned is fine: different registers.
    assert verdict(put(1, b"a", b"1", 0, 1), get(2, b"b", None, 2, 3)) is True


def _many_concurrent_puts(count: int, final: bytes) -> list[Operation]:
    ops = [put(i, K, str(i).encode(), 0, 100) for i in range(count)]
    return [*ops, get(count, K, final, 101, 102)]


def test_step_budget_gives_an_unknown_result() -> None:
    history = _many_concurrent_puts(12, b"never written")
    result = check_history(history, max_steps_per_key=1000)
    assert result.ok is None
    assert result.key == K
    assert result.steps == 1000
    assert check_history(_many_concurrent_puts(12, b"5"), max_steps_per_key=1000).ok is True


def test_a_bad_key_outranks_an_undecided_one() -> None:
    undecided = _many_concurrent_puts(12, b"never written")  # key k
    bad = [put(1, b"z", b"1", 0, 1), get(2, b"z", None, 2, 3)]
    result = check_history([*undecided, *bad], max_steps_per_key=1000)
    assert result.ok is False
    assert result.key == b"z"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Operation(1, "put", K, 0, 1),  # no value
        lambda: Operation(1, "incr", K, 0, 1),  # type: ignore[arg-type]
        lambda: put(1, K, b"1", 5, 4),  # returns before its call
        lambda: cas(1, K, b"1", b"2", None, 0, 1),  # completed cas without a result
        lambda: cas(1, K, b"1", b"2", True, 0, None),  # unknown outcome with a result
        lambda: get(1, K, b"1", 0, None),
        lambda: Operation(1, "get", K, 0, 1, output=True),
        lambda: Operation(1, "delete", K, 0, 1, value=b"1"),
    ],
)
def test_malformed_operations_are_rejected(build: object) -> None:
    with pytest.raises(MalformedHistoryError) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, ValueError)


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        check_history([], max_steps_per_key=0)


# -- generated histories --------------------------------------------------------------

KINDS: tuple[OpKind, ...] = ("put", "get", "delete", "cas")
KEYS = (b"a", b"b", b"c")
VALUES = (b"1", b"2", b"3")


@st.composite
def executions(draw: st.DrawFn, max_ops: int = 24) -> list[Operation]:
    """A random sequential execution of a dict, op i taking effect at time 3*i, each
    given a window around that point: the result is linearizable by construction.
    Some operations time out; of those, some took effect and some never did."""
    model: dict[bytes, bytes] = {}
    history = []
    for i in range(draw(st.integers(0, max_ops))):
        point = 3 * i
        kind = draw(st.sampled_from(KINDS))
        key = draw(st.sampled_from(KEYS))
        value = draw(st.sampled_from(VALUES))
        expected = draw(st.sampled_from((None, *VALUES)))
        call_time = point - draw(st.integers(0, 12))
        return_time: int | None = point + draw(st.integers(0, 12))
        timed_out = draw(st.integers(0, 9)) == 0
        applied = not timed_out or draw(st.booleans())
        output: bytes | bool | None = None
        before = model.get(key)
        if kind == "put" and applied:
            model[key] = value
        elif kind == "delete" and applied:
            model.pop(key, None)
        elif kind == "get":
            output = before
        elif kind == "cas" and applied:
            output = before == expected
            if output:
                model[key] = value
        if timed_out:
            return_time, output = None, None
        elif not applied:
            continue
        history.append(
            Operation(
                client_id=i,
                kind=kind,
                key=key,
                call_time=call_time,
                return_time=return_time,
                output=output,
                value=value if kind in ("put", "cas") else None,
                expected=expected if kind == "cas" else None,
            )
        )
    return history


@settings(max_examples=100, deadline=None)
@given(executions())
def test_real_executions_are_linearizable(history: list[Operation]) -> None:
    result = check_history(history)
    assert result.ok is True, result.explanation


@settings(max_examples=100, deadline=None)
@given(executions(), st.integers(0, 10_000))
def test_a_read_of_a_value_never_written_is_caught(history: list[Operation], pick: int) -> None:
    reads = [i for i, op in enumerate(history) if op.kind == "get" and op.completed]
    assume(reads)
    victim = reads[pick % len(reads)]
    old = history[victim]
    history[victim] = get(old.client_id, old.key, b"never written", old.call_time, old.return_time)
    result = check_history(history)
    assert result.ok is False
    assert result.key == old.key
    assert "never written" in result.explanation


# -- against a brute-force reference ---------------------------------------------------


def _brute_force(history: Sequence[Operation]) -> bool:
    """Try every subset of the unknown-outcome operations and every order of the chosen
    operations that respects real time, against a dict."""
    completed = [op for op in history if op.completed]
    unknown = [op for op in history if not op.completed]
    for size in range(len(unknown) + 1):
        for extra in itertools.combinations(unknown, size):
            for order in itertools.permutations([*completed, *extra]):
                if _respects_real_time(order) and _legal(order):
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    for later_index, later in enumerate(order):
        for earlier in order[later_index + 1 :]:
            if earlier.return_time is not None and earlier.return_time < later.call_time:
                return False
    return True


def _legal(order: Sequence[Operation]) -> bool:
    model: dict[bytes, bytes] = {}
    for op in order:
        current = model.get(op.key)
        if op.kind == "put":
            assert op.value is not None
            model[op.key] = op.value
        elif op.kind == "delete":
            model.pop(op.key, None)
        elif op.kind == "get":
            if op.completed and op.output != current:
                return False
        else:
            succeeded = current == op.expected
            if op.completed and op.output != succeeded:
                return False
            if succeeded:
                if op.value is None:
                    model.pop(op.key, None)
                else:
                    model[op.key] = op.value
    return True


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    """Arbitrary small histories (mostly not linearizable) over two keys and two values."""
    history = []
    for i in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(KINDS))
        key = draw(st.sampled_from(KEYS[:2]))
        call_time = draw(st.integers(0, 8))
        return_time: int | None = draw(st.integers(call_time, 10))
        if draw(st.integers(0, 3)) == 0:
            return_time = None  # timed out
        value: bytes | None = draw(st.sampled_from((b"1", b"2")))
        if kind == "cas":
            value = draw(st.sampled_from((None, b"1", b"2")))  # None: cas to absent
        output: bytes | bool | None = None
        if return_time is not None and kind == "get":
            output = draw(st.sampled_from((None, b"1", b"2")))
        elif return_time is not None and kind == "cas":
            output = draw(st.booleans())
        history.append(
            Operation(
                client_id=i,
                kind=kind,
                key=key,
                call_time=call_time,
                return_time=return_time,
                output=output,
                value=value if kind in ("put", "cas") else None,
                expected=draw(st.sampled_from((None, b"1", b"2"))) if kind == "cas" else None,
            )
        )
    return history


@settings(max_examples=300, deadline=None)
@given(small_histories())
def test_agrees_with_brute_force(history: list[Operation]) -> None:
    result: CheckResult = check_history(history)
    assert result.ok is _brute_force(history), result.explanation
