"""The deterministic Raft simulator over many seeds (issue 3, §4).

`pytest tests/sim --seed N` replays one seed; the seed range is printed at the start
and every failing seed is printed with its violation. Seeds that ever failed join
`FIXED_SEEDS` so they are run forever.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from atoll.cli.sim_cmd import run_seeds, summarize
from atoll.raft import Raft
from atoll.sim.raft_sim import SimParams, run_seed

sys.path.insert(0, str(Path(__file__).parent))

from broken_cores import (
    CommitsWithoutMajority,
    EagerAckHost,
    VotesWithoutLogCheck,
    WinsWithoutQuorum,
    factory,
)

SEEDS = int(os.environ.get("ATOLL_SIM_SEEDS", "500"))
FIXED_SEEDS: list[int] = []  # seeds that once found a bug (none yet)
BROKEN_CORE_SEED_BUDGET = 60
BROKEN_HOST_SEED_BUDGET = 150  # lost acks need a crash inside an fsync: rarer


def test_seeds(request: pytest.FixtureRequest) -> None:
    replay = request.config.getoption("--seed")
    seeds = [replay] if replay is not None else sorted(set(range(SEEDS)) | set(FIXED_SEEDS))
    print(
        f"\nraft simulator: {len(seeds)} seeds from {seeds[0]} (replay: pytest tests/sim --seed N)"
    )
    reports = list(run_seeds(seeds, jobs=os.cpu_count() or 1))
    lines = summarize(reports)
    print("\n".join(lines))
    bad = [r.summary() for r in reports if not r.ok]
    assert not bad, "\n".join(bad)
    # The runs must have exercised what they claim to.
    totals = {k: sum(r.faults.get(k, 0) for r in reports) for k in reports[0].faults}
    if replay is None:
        for fault in (
            "crashes",
            "lost_writes",
            "partitions",
            "dropped",
            "duplicated",
            "conf_changes",
            "transfers",
            "snapshots_sent",
            "compactions",
        ):
            assert totals[fault] > 0, f"no {fault} in {len(seeds)} seeds"
        assert sum(r.ops_checked for r in reports) > 100 * len(seeds)


def test_a_seed_replays_exactly() -> None:
    seed = 12345
    first, second = run_seed(seed), run_seed(seed)
    assert first == second
    assert SimParams.from_seed(seed) == SimParams.from_seed(seed)


@pytest.mark.parametrize(
    "broken",
    [CommitsWithoutMajority, VotesWithoutLogCheck, WinsWithoutQuorum],
    ids=lambda c: c.__name__,
)
def test_the_simulator_catches_a_broken_core(broken: type[Raft]) -> None:
    for seed in range(BROKEN_CORE_SEED_BUDGET):
        report = run_seed(seed, factory(broken))
        if not report.ok:
            print(f"{broken.__name__} caught by seed {seed}: {report.violation[:300]}")
            return
    pytest.fail(f"{broken.__name__} survived {BROKEN_CORE_SEED_BUDGET} seeds")


def test_the_simulator_catches_a_host_that_acks_before_syncing() -> None:
    for seed in range(BROKEN_HOST_SEED_BUDGET):
        report = EagerAckHost(SimParams.from_seed(seed)).run()
        if not report.ok:
            print(f"EagerAckHost caught by seed {seed}: {report.violation[:300]}")
            return
    pytest.fail(f"EagerAckHost survived {BROKEN_HOST_SEED_BUDGET} seeds")
