"""Deterministic simulation support (shared/STYLE.md §9). So far: the linearizability
checker the simulator runs over client histories. Pure: no I/O.

The simulator proper (virtual time, seeded network and disk faults, crashes) comes in
later steps of the Raft issue.
"""

from atoll.sim.linearizability import (
    DEFAULT_MAX_STEPS_PER_KEY,
    CheckResult,
    MalformedHistoryError,
    Operation,
    OpKind,
    RegisterState,
    cas,
    check_history,
    delete,
    describe,
    get,
    put,
    register_step,
)

__all__ = [
    "DEFAULT_MAX_STEPS_PER_KEY",
    "CheckResult",
    "MalformedHistoryError",
    "OpKind",
    "Operation",
    "RegisterState",
    "cas",
    "check_history",
    "delete",
    "describe",
    "get",
    "put",
    "register_step",
]
