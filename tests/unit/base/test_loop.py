"""atoll.base.loop: which event loop a node runs on, chosen by ATOLL_EVENT_LOOP."""

from __future__ import annotations

import asyncio

import pytest

from atoll.base import loop as event_loop


def test_uvloop_unless_the_environment_asks_for_asyncio() -> None:
    assert event_loop.loop_name({}) == "uvloop"
    assert event_loop.loop_name({event_loop.LOOP_ENV: ""}) == "uvloop"
    assert event_loop.loop_name({event_loop.LOOP_ENV: "asyncio"}) == "asyncio"


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(event_loop.LoopChoiceError, match="trio"):
        event_loop.loop_name({event_loop.LOOP_ENV: "trio"})


@pytest.mark.parametrize("name", event_loop.LOOPS)
def test_run_uses_the_chosen_loop(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.LOOP_ENV, name)

    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(kind()).startswith("uvloop" if name == "uvloop" else "asyncio")
