"""Child processes that die with their parent (engine workers, KV gateways). Does
process-level I/O: prctl and a watchdog thread.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process
(prctl(2)), and it is Linux-only, so a watchdog thread that polls the parent pid is the
second line of defence.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

PARENT_POLL_INTERVAL_S = 0.05


def die_with_parent(parent_pid: int) -> None:
    """Arrange for this process to exit when `parent_pid` does (call first thing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_INTERVAL_S)
    os._exit(1)
