"""Summaries of py-spy's raw (collapsed-stack) output for bench/kv.py: samples per
thread, and the event-loop thread's time by category (system calls, Atoll's layers,
gRPC) and its top frames by own and by inclusive samples. Pure apart from reading the
file.

A line of `py-spy record --format raw --threads [--native]` is
`thread (TID): NAME;frame;frame;... COUNT`, a frame `function (file:line)`, outermost
first. Without `--idle`, py-spy leaves out samples of threads it finds waiting, so a
thread's samples over `rate_hz * duration_s` is roughly the share of the time it was
running or ready to run (on a saturated machine, ready includes waiting for a CPU).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^thread \((?P<tid>\d+)\): (?P<stack>.*) (?P<count>\d+)$")
_LINE_NUMBER = re.compile(r":\d+\)$")
_ADDRESS = re.compile(r"^0x[0-9a-f]+ ")
MAIN_THREAD = "MainThread"
# Frames on (nearly) every stack of a thread say nothing about where its time goes.
UBIQUITOUS_SHARE = 0.8


# Innermost frames that are a system call: libc's (--native) or the Python function
# that makes it (asyncio's selector transport, the selector).
_WAITS = {"epoll_wait", "EpollSelector.select"}
_WRITES = {
    "send",
    "sendmsg",
    "sendto",
    "write",
    "writev",
    "sock_send_impl",
    "_SelectorSocketTransport.write",
}
_READS = {
    "recv",
    "sock_recv_impl",
    "recvmsg",
    "recvfrom",
    "read",
    "readv",
    "_SelectorSocketTransport._read_ready__get_buffer",
    "_SelectorSocketTransport._read_ready__data_received",
}
_DISPATCH = {"Handle._run", "BaseEventLoop._run_once"}
# Innermost match wins: (substring of a frame, category).
_LAYERS = (
    ("atoll/raft/", "Raft core (atoll.raft)"),
    ("atoll/multiraft/", "multi-raft host, transport, log store (atoll.multiraft)"),
    ("atoll/kv/gateway", "KV gateway forwarding (atoll.kv.gateway)"),
    ("atoll/kv/", "KV service and gRPC servicer (atoll.kv)"),
    ("atoll/rpc/", "atoll.rpc framing"),
    ("atoll/engine/", "storage engine (atoll.engine)"),
    ("grpc/", "gRPC (its Cython layer and C core), not in a system call"),
)


@dataclass
class ThreadProfile:
    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)  # innermost frame -> samples
    inclusive: Counter[str] = field(default_factory=Counter)  # any frame on the stack
    categories: Counter[str] = field(default_factory=Counter)


def category(frames: list[str]) -> str:
    """Where a sample's time goes: a system call by what made it, else the innermost
    layer of Atoll or gRPC on the stack, else C code run straight from the event loop,
    else asyncio and the rest of Python. Works on Python-only stacks (a system call
    shows as the Python function that made it) and on --native ones."""
    leaf = frames[-1].split(" ", 1)[0]
    # Only what the current event-loop callback runs: the frames around the loop (a
    # process's `main` in atoll/..., say) are on every stack and tell nothing.
    names = [f.split(" ", 1)[0] for f in frames]
    loop_at = max((i for i, n in enumerate(names) if n in _DISPATCH), default=-1)
    inner = frames[loop_at + 1 :]
    stack = ";".join(inner)
    innermost = {f.split(" ", 1)[0] for f in frames[-4:]}
    if "pthread_cond_timedwait" in innermost:  # CPython 3.11's take_gil (native only)
        return "waiting to take the GIL (native stacks only)"
    if leaf == "pthread_cond_signal":  # drop_gil waking a waiter (native only)
        return "handing the GIL over (native stacks only)"
    if leaf in _WAITS:
        return "waiting for events (epoll)"
    if innermost & _WRITES:
        if "grpc/" in stack:
            return "system calls: gRPC's writes (replies to clients, wake-ups)"
        if "atoll/rpc/" in stack:
            return "system calls: atoll.rpc sends"
        return "system calls: other writes"
    if innermost & _READS:
        return "system calls: reads"
    for frame in reversed(inner):
        for marker, name in _LAYERS:
            if marker in frame:
                return name
    if leaf == "Handle._run":
        return "C code called by the event loop (gRPC's Cython layer, C callbacks)"
    return "asyncio, CPython and the rest"


def _frame(text: str) -> str:
    """`function (file:line)` without the line, so one function is one row; a native
    frame without a symbol (`0x7f.. (libc.so.6)`) becomes `? (libc.so.6)`."""
    return _ADDRESS.sub("? ", _LINE_NUMBER.sub(")", text))


def parse(path: Path) -> dict[str, ThreadProfile]:
    """Thread name -> its samples (threads of one name, such as a pool's, merged)."""
    threads: dict[str, ThreadProfile] = {}
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        count = int(match["count"])
        name, *frames = match["stack"].split(";")
        thread = threads.setdefault(name, ThreadProfile())
        thread.samples += count
        if not frames:
            continue
        names = [_frame(f) for f in frames]
        thread.own[names[-1]] += count
        thread.categories[category(names)] += count
        for frame in set(names):
            thread.inclusive[frame] += count
    return threads


def _rows(counter: Counter[str], total: int, top: int) -> list[dict[str, Any]]:
    return [
        {"frame": f, "samples": n, "pct": 100 * n / max(total, 1)}
        for f, n in counter.most_common(top)
    ]


def summary(path: Path, rate_hz: int, duration_s: float, top: int) -> dict[str, Any]:
    threads = parse(path)
    possible = rate_hz * duration_s
    main = threads.get(MAIN_THREAD, ThreadProfile())
    telling = Counter(
        {
            f: n
            for f, n in main.inclusive.items()
            if n < UBIQUITOUS_SHARE * main.samples and ("atoll/" in f or "grpc/" in f)
        }
    )
    every_own: Counter[str] = Counter()
    for thread in threads.values():
        every_own.update(thread.own)
    return {
        "file": path.name,
        "samples": sum(t.samples for t in threads.values()),
        "rate_hz": rate_hz,
        "duration_s": duration_s,
        "threads": [
            {"thread": name, "samples": t.samples, "active_pct": 100 * t.samples / possible}
            for name, t in sorted(threads.items(), key=lambda kv: -kv[1].samples)
        ],
        "main_samples": main.samples,
        "main_categories": _rows(main.categories, main.samples, top),
        "main_own": _rows(main.own, main.samples, top),
        "main_inclusive": _rows(telling, main.samples, top),
        "all_own": _rows(every_own, sum(t.samples for t in threads.values()), top),
    }
