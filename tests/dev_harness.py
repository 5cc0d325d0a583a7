"""`atoll dev` as tests run it (tests/integration, tests/faults): the real command in a
child process, started until it announces the cluster, stopped as Ctrl-C would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[1] / "src")
DEV_START_TIMEOUT_S = 120.0  # `atoll dev` to cluster.json and its announcement
DEV_STOP_TIMEOUT_S = 30.0


@dataclass
class DevRun:
    root: Path
    process: subprocess.Popen[bytes]
    out: Path
    document: dict[str, Any] = field(default_factory=dict)


def start_dev(root: Path, *args: str) -> DevRun:
    """`atoll dev --dir root ARGS...`, once it prints that it serves (with its
    cluster.json read); AssertionError with its output if it does not come up."""
    out = root.parent / f"dev-{time.monotonic_ns()}.out"
    with open(out, "wb") as file:
        process = subprocess.Popen(
            [sys.executable, "-m", "atoll.cli", "dev", "--dir", str(root), *args],
            env=dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1"),
            stdout=file,
            stderr=subprocess.STDOUT,
        )
    run = DevRun(root, process, out)
    deadline = time.monotonic() + DEV_START_TIMEOUT_S
    while "Ctrl-C stops the cluster." not in out.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_dev(run)
            raise AssertionError(f"atoll dev did not come up:\n{out.read_text(errors='replace')}")
        time.sleep(0.1)
    run.document = json.loads((root / "cluster.json").read_text())
    return run


def stop_dev(run: DevRun) -> int:
    """SIGTERM, as Ctrl-C would; SIGKILL it and its nodes if it does not stop. A node
    a test stopped (SIGSTOP) is continued first, so that it can exit."""
    for node in run.document.get("nodes", []):
        if node.get("pid"):  # None: a node `atoll dev stop-node` stopped
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(node["pid"]), signal.SIGCONT)
    if run.process.poll() is None:
        run.process.send_signal(signal.SIGTERM)
    try:
        return run.process.wait(DEV_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.process.kill()
        for node in run.document.get("nodes", []):
            if node.get("pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(node["pid"]), signal.SIGKILL)
        return run.process.wait(DEV_STOP_TIMEOUT_S)
