"""Runs flush and compaction jobs in worker processes, or inline. Does I/O.

Compactions are CPU-bound Python; in the engine's process they would compete with
foreground reads and writes for the GIL. Each worker is a long-lived child process
(`python -m atoll.engine.worker_pool`) that takes one job at a time as a JSON line on
stdin and answers with a JSON line on stdout: no pickle, no multiprocessing bootstrap
(which would re-import the user's `__main__`). A worker asks the kernel to kill it when
its parent dies, so a crashed engine leaves no writer behind.

Jobs are named: "flush" -> `compaction_job.run_flush`, "compact" ->
`compaction_job.run_compaction`. `InlineRunner` runs the same functions in the calling
thread (for `background="thread"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any, Protocol

from atoll.base.errors import CorruptionError
from atoll.base.lifetime import die_with_parent
from atoll.engine.compaction_job import JobResult, JobSpec, run_compaction, run_flush
from atoll.engine.errors import EngineError
from atoll.engine.sstable_writer import TableInfo


class WorkerError(EngineError):
    """A background job failed in its worker, or the worker died."""


class JobRunner(Protocol):
    def run(self, job: str, spec: JobSpec, inputs: list[Any]) -> JobResult: ...


def _execute(job: str, spec: JobSpec, inputs: list[Any]) -> JobResult:
    if job == "flush":
        return run_flush(spec, [str(p) for p in inputs])
    if job == "compact":
        return run_compaction(spec, [(str(p), int(n)) for p, n in inputs])
    raise WorkerError(f"unknown job {job!r}")


class InlineRunner:
    def run(self, job: str, spec: JobSpec, inputs: list[Any]) -> JobResult:
        return _execute(job, spec, inputs)


# ---------------------------------------------------------------- wire encoding (JSON)


def encode_result(result: JobResult) -> dict[str, Any]:
    doc = dataclasses.asdict(result)
    doc["tables"] = [
        {**dataclasses.asdict(t), "smallest": t.smallest.hex(), "largest": t.largest.hex()}
        for t in result.tables
    ]
    return doc


def decode_result(doc: dict[str, Any]) -> JobResult:
    tables = [
        TableInfo(
            **{
                **t,
                "smallest": bytes.fromhex(t["smallest"]),
                "largest": bytes.fromhex(t["largest"]),
            }
        )
        for t in doc["tables"]
    ]
    return JobResult(
        tables=tables,
        bytes_read=doc["bytes_read"],
        bytes_written=doc["bytes_written"],
        entries_in=doc["entries_in"],
        entries_out=doc["entries_out"],
    )


def encode_error(err: BaseException) -> dict[str, Any]:
    doc: dict[str, Any] = {"error": str(err), "type": type(err).__name__}
    if isinstance(err, CorruptionError):
        doc.update(file=err.file, offset=err.offset, expected=err.expected, actual=err.actual)
    return doc


def decode_error(doc: dict[str, Any]) -> Exception:
    if doc.get("type") == "CorruptionError":
        err = CorruptionError("corruption found by a background job", file=doc.get("file") or "?")
        err.args = (doc["error"],)
        err.offset, err.expected, err.actual = (
            doc.get("offset"),
            doc.get("expected"),
            doc.get("actual"),
        )
        return err
    return WorkerError(f"background job failed: {doc.get('type')}: {doc.get('error')}")


# ---------------------------------------------------------------- the pool


class _Worker:
    def __init__(self, nice: int) -> None:
        # The child must import this very package, wherever it was imported from.
        import atoll

        root = os.path.dirname(os.path.dirname(os.path.abspath(atoll.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atoll.engine.worker_pool", str(os.getpid()), str(nice)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def call(self, request: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as err:
            raise WorkerError(f"engine worker {self.proc.pid} died") from err
        if not line:
            raise WorkerError(f"engine worker {self.proc.pid} died (exit {self.proc.poll()})")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _Spawner:
    """Starts workers from one daemon thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
    process (prctl(2)); were workers started from an engine's background thread, they
    would be killed when that engine closed."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[int, Future[_Worker]]] = queue.Queue()
        threading.Thread(target=self._loop, name="atoll-worker-spawner", daemon=True).start()

    def _loop(self) -> None:
        while True:
            nice, future = self._requests.get()
            try:
                future.set_result(_Worker(nice))
            except Exception as err:  # reported to the caller waiting on the future
                future.set_exception(err)

    def spawn(self, nice: int) -> _Worker:
        future: Future[_Worker] = Future()
        self._requests.put((nice, future))
        return future.result(timeout=SPAWN_TIMEOUT_S)


SPAWN_TIMEOUT_S = 60.0
# A job whose worker died is retried this many times on a fresh worker.
JOB_RETRIES = 1


# Jobs run in lanes, each with its own workers, as RocksDB runs flushes in a
# high-priority pool and compactions in a low-priority one: a flush frees memtable
# space that writers are waiting for, so it must never queue behind a long
# compaction, and when both want the CPU the flush should mostly win. Compactions
# run at nice 3: at nice 10 they starved and level 0 reached its stop trigger; at
# nice 0 flushes fell behind and writers stalled more (docs in lsm_options).
LANES: dict[str, tuple[int, int]] = {"flush": (1, 0), "compact": (1, 3)}  # workers, nice


class ProcessRunner:
    """Worker processes shared by every engine of this process, in lanes by job."""

    def __init__(self, lanes: dict[str, tuple[int, int]] | None = None) -> None:
        self._spawner = _Spawner()
        self._lanes: dict[str, tuple[int, queue.Queue[_Worker | None]]] = {}
        for job, (workers, nice) in (lanes or LANES).items():
            idle: queue.Queue[_Worker | None] = queue.Queue(maxsize=workers)
            for _ in range(workers):
                idle.put(None)  # started lazily
            self._lanes[job] = (nice, idle)

    def run(self, job: str, spec: JobSpec, inputs: list[Any]) -> JobResult:
        if job not in self._lanes:
            raise WorkerError(f"unknown job {job!r}")
        nice, idle = self._lanes[job]
        request = (
            json.dumps({"job": job, "spec": dataclasses.asdict(spec), "inputs": inputs}) + "\n"
        ).encode()
        for attempt in range(JOB_RETRIES + 1):
            worker = idle.get()
            try:
                if worker is None:
                    worker = self._spawner.spawn(nice)
                doc = worker.call(request)
                break
            except WorkerError:
                if worker is not None:
                    worker.stop()
                worker = None
                if attempt == JOB_RETRIES:
                    raise
            finally:
                idle.put(worker)
        if "error" in doc:
            raise decode_error(doc)
        return decode_result(doc)


_runners: dict[str, JobRunner] = {}
_runners_lock = threading.Lock()


def shared_runner(kind: str) -> JobRunner:
    """The process-wide runner of `kind`: "process" (worker processes) or "thread"."""
    with _runners_lock:
        runner = _runners.get(kind)
        if runner is None:
            runner = ProcessRunner() if kind == "process" else InlineRunner()
            _runners[kind] = runner
        return runner


# ---------------------------------------------------------------- worker side


def worker_main(parent_pid: int, nice: int) -> None:
    die_with_parent(parent_pid)
    if nice:
        os.nice(nice)
    for line in sys.stdin.buffer:
        try:
            doc = json.loads(line)
            spec = JobSpec(**{**doc["spec"], "snapshots": tuple(doc["spec"]["snapshots"])})
            reply = encode_result(_execute(doc["job"], spec, doc["inputs"]))
        except Exception as err:  # reported to the engine, which fails loudly
            reply = encode_error(err)
        sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
