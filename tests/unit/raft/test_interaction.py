"""Golden tests of the Raft core: each file in testdata/ is a script of commands and
the transcript they must produce (shared/STYLE.md §9). `pytest --rewrite` regenerates
the transcripts; review the diff."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from datadriven import check_file
from interaction import Env

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_interaction(path: Path, request: pytest.FixtureRequest) -> None:
    env = Env()
    check_file(path, env.run, rewrite=bool(request.config.getoption("--rewrite")))


def test_a_core_refuses_to_start_without_a_configuration() -> None:
    # Changes replayed from the log on top of an empty configuration would give a
    # wrong voter set (a joining node could believe it is alone and elect itself).
    import random

    from atoll.raft import ConfigError, Raft, RaftConfig

    with pytest.raises(ConfigError, match="no voters"):
        Raft(RaftConfig(id=4), random.Random(1))
