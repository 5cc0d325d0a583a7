"""Erasure-coding benchmark: Atoll's stripe API next to the raw library in the same run;
writes bench/results/erasure.md and erasure.json.

Section "codec" (issue 4 §5): encode, and decode with 2 data shards missing, in GB/s
of stripe data, for 4+2 and 8+3 with 1 MiB blocks, single-threaded, three ways:

- atoll: `atoll.erasure.StripeCodec` (`encode(stripe)` returns the k+m shard views;
  `decode(shards, length)` returns the k data pieces, the 2 missing ones rebuilt);
- raw ISA-L: `ec_encode_data` of the same ISA-L library (the one pyeclib's wheel
  bundles), called through ctypes with tables, pointer arrays and output buffers all
  prepared before the clock starts: the floor any wrapper can reach;
- pyeclib: `ECDriver(ec_type="isa_l_rs_cauchy")` `encode(stripe)` and
  `decode(fragments)`, as the library is used (it allocates every fragment, adds its
  own 80-byte header, and decode returns the joined stripe); also run once more in a
  child process with glibc's mmap threshold raised, to show what its allocations cost.

Every repetition runs every path over the same `--stripes` distinct random stripes
(so the working set is not cache-hot), paths interleaved so that load changes on the
shared machine hit them alike; the report gives the median of `--repetitions`.

A later section (the storage service path: encode + checksum + PutShard, GetShard +
verify + decode) adds a function to SECTIONS and a renderer to RENDERERS.

    PYTHONPATH=src python bench/erasure.py [--stripes 48] [--repetitions 15] [--min-seconds 0.2]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK_BYTES = 1024 * 1024
PROFILES = ((4, 2), (8, 3))
MISSING = (0, 1)  # the data shards a decode has to rebuild
TARGET_RATIO = 0.8
# Raised so that glibc serves pyeclib's 128-256 KiB fragments from its heap instead of
# mapping fresh pages on every call (its default threshold is 128 KiB).
MALLOC_TUNED_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(64 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024),
}

try:
    import atoll.erasure as erasure
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import atoll.erasure as erasure

from pyeclib.ec_iface import ECDriver  # noqa: E402

# -- paths -----------------------------------------------------------------------------------


def _address(buffer: bytes | bytearray) -> int:
    if isinstance(buffer, bytes):
        return int(ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0)
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


class RawIsal:
    """ISA-L called directly, everything prepared up front for the given stripes."""

    def __init__(self, k: int, m: int, stripes: list[bytes], shards: list[list[bytes]]) -> None:
        lib = erasure.load_isal()
        self.lib, self.k, self.m = lib, k, m
        n, size = k + m, len(stripes[0]) // k
        self.size = size
        matrix = (ctypes.c_ubyte * (n * k))()
        lib.gf_gen_cauchy1_matrix(matrix, n, k)
        self.encode_tables = self._tables(bytes(matrix)[k * k :], m)
        survivors = [i for i in range(n) if i not in MISSING][:k]
        square = (ctypes.c_ubyte * (k * k)).from_buffer_copy(
            b"".join(bytes(matrix)[i * k : (i + 1) * k] for i in survivors)
        )
        inverse = (ctypes.c_ubyte * (k * k))()
        if lib.gf_invert_matrix(square, inverse, k) != 0:
            raise RuntimeError("singular decode matrix")
        # Missing data shard d is row d of the inverse applied to the survivors.
        self.decode_tables = self._tables(
            b"".join(bytes(inverse)[d * k : (d + 1) * k] for d in MISSING), len(MISSING)
        )
        self.outputs = [bytearray(size) for _ in range(max(m, len(MISSING)))]
        out_pointers = [_address(b) for b in self.outputs]
        self.encode_args = [
            (
                (ctypes.c_void_p * k)(*[_address(stripe) + i * size for i in range(k)]),
                (ctypes.c_void_p * m)(*out_pointers[:m]),
            )
            for stripe in stripes
        ]
        self.decode_args = [
            (
                (ctypes.c_void_p * k)(*[_address(s[i]) for i in survivors]),
                (ctypes.c_void_p * len(MISSING))(*out_pointers[: len(MISSING)]),
            )
            for s in shards
        ]

    def _tables(self, rows: bytes, count: int) -> ctypes.Array[ctypes.c_ubyte]:
        tables = (ctypes.c_ubyte * (32 * self.k * count))()
        self.lib.ec_init_tables(
            self.k, count, (ctypes.c_ubyte * len(rows)).from_buffer_copy(rows), tables
        )
        return tables

    def encode(self, stripe: int) -> None:
        sources, targets = self.encode_args[stripe]
        self.lib.ec_encode_data(self.size, self.k, self.m, self.encode_tables, sources, targets)

    def decode(self, stripe: int) -> None:
        sources, targets = self.decode_args[stripe]
        self.lib.ec_encode_data(
            self.size, self.k, len(MISSING), self.decode_tables, sources, targets
        )

    def encode_all(self) -> None:
        lib, size, k, m, tables = self.lib, self.size, self.k, self.m, self.encode_tables
        for sources, targets in self.encode_args:
            lib.ec_encode_data(size, k, m, tables, sources, targets)

    def decode_all(self) -> None:
        lib, size, k, rows, tables = self.lib, self.size, self.k, len(MISSING), self.decode_tables
        for sources, targets in self.decode_args:
            lib.ec_encode_data(size, k, rows, tables, sources, targets)


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"{what}: the paths disagree, nothing would be comparable")


def _stripes(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(BLOCK_BYTES) for _ in range(count)]


def _paths(k: int, m: int, stripes: list[bytes]) -> dict[str, dict[str, Callable[[], None]]]:
    """For each path, its encode and decode closures over all the stripes; checks that
    every path computes the same bytes before anything is timed."""
    layout = erasure.StripeLayout(k, m, BLOCK_BYTES)
    codec = erasure.StripeCodec(layout)
    shards = [[bytes(s) for s in codec.encode(stripe)] for stripe in stripes]
    survivors = [{i: s[i] for i in range(k + m) if i not in MISSING} for s in shards]
    raw = RawIsal(k, m, stripes, shards)
    driver = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
    fragments = [driver.encode(stripe) for stripe in stripes]
    kept = [[f for i, f in enumerate(frs) if i not in MISSING] for frs in fragments]

    # Same bytes everywhere (the first stripe), before anything is timed.
    header = len(fragments[0][0]) - layout.full_shard_bytes
    raw.encode(0)
    _check([bytes(o) for o in raw.outputs[:m]] == shards[0][k:], "raw ISA-L parity")
    _check([f[header:] for f in fragments[0]] == shards[0], "pyeclib fragments")
    _check(b"".join(codec.decode(survivors[0], BLOCK_BYTES)) == stripes[0], "atoll decode")
    _check(driver.decode(kept[0]) == stripes[0], "pyeclib decode")
    raw.decode(0)
    _check(
        [bytes(o) for o in raw.outputs[: len(MISSING)]] == shards[0][: len(MISSING)], "raw decode"
    )

    def atoll_encode() -> None:
        for stripe in stripes:
            codec.encode(stripe)

    def atoll_decode() -> None:
        for present in survivors:
            codec.decode(present, BLOCK_BYTES)

    def pyeclib_encode() -> None:
        for stripe in stripes:
            driver.encode(stripe)

    def pyeclib_decode() -> None:
        for frs in kept:
            driver.decode(frs)

    return {
        "atoll": {"encode": atoll_encode, "decode": atoll_decode},
        "raw ISA-L": {"encode": raw.encode_all, "decode": raw.decode_all},
        "pyeclib": {"encode": pyeclib_encode, "decode": pyeclib_decode},
    }


def _measure(
    paths: dict[str, dict[str, Callable[[], None]]],
    repetitions: int,
    data_bytes: int,
    min_seconds: float,
) -> dict[str, dict[str, list[float]]]:
    """GB/s of every (path, operation), one figure per repetition, interleaved. A
    figure times as many passes over the stripes as fill `min_seconds`."""
    passes: dict[tuple[str, str], int] = {}
    for name, ops in paths.items():  # warm-up (pages in the outputs) and calibration
        for op, run in ops.items():
            run()
            start = time.perf_counter()
            run()
            passes[name, op] = max(1, math.ceil(min_seconds / (time.perf_counter() - start)))
    rates: dict[str, dict[str, list[float]]] = {
        p: {op: [] for op in ops} for p, ops in paths.items()
    }
    for _ in range(repetitions):
        for name, ops in paths.items():
            for op, run in ops.items():
                count = passes[name, op]
                start = time.perf_counter()
                for _ in range(count):
                    run()
                rates[name][op].append(count * data_bytes / (time.perf_counter() - start) / 1e9)
    return rates


def codec_section(args: argparse.Namespace) -> dict[str, Any]:
    profiles = []
    for k, m in PROFILES:
        stripes = _stripes(args.stripes, seed=k * 100 + m)
        rates = _measure(
            _paths(k, m, stripes), args.repetitions, len(stripes) * BLOCK_BYTES, args.min_seconds
        )
        del stripes
        children = (
            {
                "default": _pyeclib_child_run(k, m, args, {}),
                "tuned": _pyeclib_child_run(k, m, args, MALLOC_TUNED_ENV),
            }
            if args.pyeclib_children
            else None
        )
        profiles.append({"k": k, "m": m, "rates_gbps": rates, "pyeclib_child_gbps": children})
    return {
        "block_bytes": BLOCK_BYTES,
        "stripes_per_repetition": args.stripes,
        "repetitions": args.repetitions,
        "min_seconds_per_figure": args.min_seconds,
        "missing_on_decode": list(MISSING),
        "target_ratio": TARGET_RATIO,
        "profiles": profiles,
    }


def _pyeclib_child_run(
    k: int, m: int, args: argparse.Namespace, malloc_env: dict[str, str]
) -> dict[str, list[float]]:
    """pyeclib alone in a fresh child process, coding one stripe buffer over and over,
    with `malloc_env` added to its environment (glibc reads MALLOC_* at start-up)."""
    command = [
        sys.executable,
        __file__,
        "--pyeclib-child",
        f"{k},{m}",
        "--stripes",
        "1",  # one stripe buffer coded over and over, as a loop over a receive buffer
        "--repetitions",
        str(args.repetitions),
        "--min-seconds",
        str(args.min_seconds),
    ]
    env = {n: v for n, v in os.environ.items() if not n.startswith("MALLOC_")} | malloc_env
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    figures: dict[str, list[float]] = json.loads(out.stdout)
    return figures


def _pyeclib_child(profile: str, args: argparse.Namespace) -> int:
    """Encode measured first, while the heap holds nothing else of pyeclib's; then the
    fragments to decode from are made and decode is measured."""
    k, m = (int(x) for x in profile.split(","))
    stripes = _stripes(args.stripes, seed=k * 100 + m)
    driver = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
    data_bytes = len(stripes) * BLOCK_BYTES

    def encode() -> None:
        for stripe in stripes:
            driver.encode(stripe)

    rates = _measure(
        {"pyeclib": {"encode": encode}}, args.repetitions, data_bytes, args.min_seconds
    )
    kept = [[f for i, f in enumerate(driver.encode(s)) if i not in MISSING] for s in stripes]

    def decode() -> None:
        for frs in kept:
            driver.decode(frs)

    rates["pyeclib"] |= _measure(
        {"pyeclib": {"decode": decode}}, args.repetitions, data_bytes, args.min_seconds
    )["pyeclib"]
    print(json.dumps(rates["pyeclib"]))
    return 0


# -- report ------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def codec_markdown(section: dict[str, Any]) -> str:
    rows = []
    verdicts = []
    for profile in section["profiles"]:
        name = f"{profile['k']}+{profile['m']}"
        rates = profile["rates_gbps"]
        children = profile["pyeclib_child_gbps"]
        for op in ("encode", "decode"):
            atoll, raw, pyeclib = (_median(rates[p][op]) for p in ("atoll", "raw ISA-L", "pyeclib"))
            # Paired: each repetition measures the paths back to back, so the ratio of
            # one repetition is free of the machine's drift between repetitions.
            ratio_raw = _median(
                [a / r for a, r in zip(rates["atoll"][op], rates["raw ISA-L"][op], strict=True)]
            )
            ratio_pyeclib = _median(
                [a / p for a, p in zip(rates["atoll"][op], rates["pyeclib"][op], strict=True)]
            )
            verdicts.append(ratio_raw >= section["target_ratio"])
            spread = f"{min(rates['atoll'][op]):.2f}-{max(rates['atoll'][op]):.2f}"
            child_cells = (
                " | ".join(f"{_median(children[kind][op]):.2f}" for kind in ("default", "tuned"))
                if children
                else "not run | not run"
            )
            rows.append(
                f"| {name} | {op} | **{atoll:.2f}** ({spread}) | {raw:.2f} | {ratio_raw:.2f} | "
                f"{pyeclib:.2f} | {child_cells} | {ratio_pyeclib:.1f} |"
            )
    met = all(verdicts)
    return f"""## Codec: Atoll's stripe API against the raw library

Each figure times passes over {section["stripes_per_repetition"]} distinct random stripes of
{section["block_bytes"] // 1024} KiB (at least {section["min_seconds_per_figure"]} s of them); {section["repetitions"]} repetitions, paths
interleaved; median GB/s (10^9 bytes of stripe data per second; the atoll column also
gives the range over the repetitions). The ratios are the medians of the per-repetition
ratios: within a repetition the paths run back to back, so each ratio compares them on
the same state of this shared VM, whose speed drifts between repetitions. One thread. Decode rebuilds data shards
{section["missing_on_decode"]} from the other `k` shards.

| Profile | Op | atoll `StripeCodec` | raw ISA-L | atoll / raw | pyeclib | pyeclib, 1 stripe, fresh process | same, mmap threshold raised | atoll / pyeclib |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Target: Atoll's stripe API ≥ {section["target_ratio"]:.0%} of the raw library's speed.
Against raw ISA-L (the strict reading): **{"met" if met else "NOT met"}**
({sum(verdicts)} of {len(verdicts)} rows at or above {section["target_ratio"]:.2f}).

- **raw ISA-L** is `ec_encode_data` with its tables, pointer arrays and output buffers
  built before timing: only the coding itself. Atoll's stripe API adds, per stripe,
  its Python work: finding the stripe's address, filling the pointer arrays, cutting
  the views, and on decode choosing the survivors and looking up the cached decode
  tables (a few microseconds, against 60-120 us of coding per 1 MiB stripe).
- **pyeclib** is `ECDriver(ec_type="isa_l_rs_cauchy")` used as its API is meant to be
  used: `encode` returns `k + m` new `bytes` with liberasurecode's 80-byte header each,
  and `decode` returns the joined stripe as a new `bytes`. Same code, same parity bytes
  (checked before timing). Its rate depends on how glibc serves those 128-256 KiB
  allocations: above the mmap threshold (128 KiB at start, raised by glibc after the
  first large free) each call may map and fault in fresh pages, and whether it does
  depends on what else the heap holds. The "pyeclib" column runs in this process over
  the same stripes as the other paths; the next two run pyeclib alone in a fresh child
  process coding one 1 MiB stripe buffer over and over (as a loop over one receive
  buffer would; encode is measured before anything else is allocated), with glibc's
  defaults and with `MALLOC_MMAP_THRESHOLD_={MALLOC_TUNED_ENV["MALLOC_MMAP_THRESHOLD_"]}` and
  `MALLOC_TRIM_THRESHOLD_={MALLOC_TUNED_ENV["MALLOC_TRIM_THRESHOLD_"]}`. Atoll's codec allocates nothing per stripe,
  so its rate does not depend on the allocator.
"""


def service_section(args: argparse.Namespace) -> dict[str, Any]:
    """The whole path through the storage service: bench/erasure_service.py."""
    import asyncio

    import erasure_service

    return asyncio.run(erasure_service.measure_service())


def service_section_markdown(result: dict[str, Any]) -> str:
    import erasure_service

    return "## The path through the storage service\n\n" + erasure_service.service_markdown(result)


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "codec": codec_section,
    "service": service_section,
}
RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "codec": codec_markdown,
    "service": service_section_markdown,
}


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def _cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return " ".join(
                f for f in ("avx2", "avx512f", "avx512bw", "gfni", "vpclmulqdq") if f in flags
            )
    return "?"


def environment(load_before: str) -> dict[str, Any]:
    import numpy
    import pyeclib_c  # type: ignore[import-untyped]

    version = pyeclib_c.get_liberasurecode_version()
    return {
        "date (UTC)": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "cpu flags (ISA-L relevant)": _cpu_flags(),
        "load average before": load_before,
        "load average after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pyeclib": importlib.metadata.version("pyeclib"),
        "liberasurecode": f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}",
        "ISA-L library": erasure.load_isal()._name,
        "numpy": numpy.__version__,
    }


def markdown(data: dict[str, Any]) -> str:
    env = "\n".join(f"- {key}: {value}" for key, value in data["env"].items())
    sections = "\n".join(RENDERERS[name](section) for name, section in data["sections"].items())
    return f"""# atoll.erasure benchmark

Written by `bench/erasure.py` (issue 4 §5); every figure is in `erasure.json` beside
this file. The machine is a small shared VM: compare ratios within one run rather than
figures across runs.

## Environment

{env}
- run time: {data["run_s"]:.1f} s

{sections}"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stripes", type=int, default=48, help="distinct 1 MiB stripes per repetition"
    )
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument(
        "--min-seconds", type=float, default=0.2, help="least time one figure measures"
    )
    parser.add_argument("--sections", type=lambda s: s.split(","), default=list(SECTIONS))
    parser.add_argument("--no-pyeclib-children", dest="pyeclib_children", action="store_false")
    parser.add_argument("--out", type=Path, default=RESULTS / "erasure.md")
    parser.add_argument("--report-only", type=Path, help="rewrite the report from this JSON")
    parser.add_argument("--pyeclib-child", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.pyeclib_child:
        return _pyeclib_child(args.pyeclib_child, args)
    if args.report_only:
        args.out.write_text(markdown(json.loads(args.report_only.read_text())))
        return 0
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.monotonic()
    sections = {name: SECTIONS[name](args) for name in args.sections}
    data = {
        "env": environment(load_before),
        "run_s": time.monotonic() - started,
        "sections": sections,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(data)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
