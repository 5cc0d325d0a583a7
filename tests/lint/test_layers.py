"""Repository rules as tests, read from the source with `ast` (shared/STYLE.md §3, §1-2,
§8): layers import only downwards; no pickle, marshal, eval or exec anywhere in src/;
no clock reads or global randomness in the pure cores.

Each checker is a plain function over source text, and each has a self-test feeding
it a bad snippet, so that a rule which could never fail is itself a failure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = "atoll"

# -- (a) layering ------------------------------------------------------------------------

# The layers, bottom first (shared/STYLE.md §3). A module may import its own package
# and any package of an earlier tier; never a later tier, nor a sibling in its own
# tier. Add new packages here as they appear; a package missing from the table fails
# `test_every_package_has_a_layer`. The full order, for when they exist:
#   base -> engine -> pure cores (raft core, placement, erasure, objects formats, s3
#   parsing) -> rpc -> services (raft host, kv, storage, meta) -> gateway -> cli, node.
# `engine` sits directly above `base`: the local engine (formats and its own I/O
# shell) needs nothing else, and everything above it may use it. `raft` is the pure
# consensus core, beside it. `sim` drives the pure cores (the Raft core today) on
# virtual time, so it sits above them and below anything that does network I/O.
# `proto` is the generated protobuf code, beside `rpc`. `multiraft` is the Raft host
# (many groups over one transport and one engine); `kv` is the replicated key-value
# service on top of it. `placement` (ring, PG tables) is pure; `erasure` is the codec,
# the stripe layout and the shard file format (it reads and writes shard files, as
# `engine` does its own files). `storage` is the storage node's shard service on
# `atoll.rpc`; `meta` is the cluster map (the state machine of Raft group 0, beside
# the KV service) with the heartbeats and failure detection around it. `objects` is the
# object manifests and the object index layout in the KV space (pure formats, below
# everything that reads them); `gateway` is the S3 gateway over all the services.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("base",),
    ("engine", "raft", "placement", "erasure", "objects"),
    ("sim",),
    ("rpc", "proto"),
    ("multiraft", "storage"),
    ("kv", "meta"),
    ("gateway",),
    ("server",),
    ("cli",),
)


def tier_of(package: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int | None:
    for tier, packages in enumerate(layers):
        if package in packages:
            return tier
    return None


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Absolute names of the modules `source` imports, with their line numbers.
    Imports inside functions and `TYPE_CHECKING` blocks count too: layering is about
    what a module knows of, not only what it loads at start-up."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            yield origin, node.lineno
            # `from atoll import engine` imports the package `atoll.engine`.
            for alias in node.names:
                yield f"{origin}.{alias.name}", node.lineno


def package_of(module: str) -> str | None:
    """`atoll.engine.lsm` -> `engine`; the root `atoll` -> ""; outside atoll -> None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def layer_violations(
    source: str,
    module: str,
    is_package: bool = False,
    layers: tuple[tuple[str, ...], ...] = LAYERS,
) -> list[str]:
    own = package_of(module)
    if own is None:
        return [f"{module}: not inside the {PACKAGE} package"]
    own_tier = -1 if own == "" else tier_of(own, layers)
    if own_tier is None:
        return [f"{module}: package {own!r} has no layer; add it to LAYERS"]
    found = []
    for target, line in imported_modules(source, module, is_package):
        other = package_of(target)
        if other is None or other == own or other == "":
            continue  # outside atoll, its own package, or the bare root
        other_tier = tier_of(other, layers)
        if other_tier is None and not _is_plain_root_name(target, layers):
            found.append(f"{module}:{line}: imports {target}, whose package has no layer")
        elif other_tier is not None and other_tier >= own_tier:
            found.append(
                f"{module}:{line}: imports {target} "
                f"(tier {other_tier} {other!r}, not below tier {own_tier} {own!r})"
            )
    return found


def _is_plain_root_name(target: str, layers: tuple[tuple[str, ...], ...]) -> bool:
    # `from atoll import __version__` names an attribute of the root, not a package.
    head, _, name = target.rpartition(".")
    return head == PACKAGE and tier_of(name, layers) is None and name.startswith("__")


def source_files(src: Path = SRC) -> list[Path]:
    return sorted((src / PACKAGE).rglob("*.py"))


def test_layering() -> None:
    violations = []
    for path in source_files():
        violations += layer_violations(
            path.read_text(), module_name(path), is_package=path.name == "__init__.py"
        )
    assert violations == []


def test_every_package_has_a_layer() -> None:
    packages = {
        p.relative_to(SRC / PACKAGE).parts[0] for p in source_files() if p.parent != SRC / PACKAGE
    }
    missing = sorted(p for p in packages if tier_of(p) is None)
    assert missing == [], f"add these packages to LAYERS: {missing}"


def test_base_imports_no_other_atoll_package() -> None:
    for path in source_files():
        if package_of(module_name(path)) != "base":
            continue
        for target, line in imported_modules(
            path.read_text(), module_name(path), path.name == "__init__.py"
        ):
            assert package_of(target) in (None, "", "base"), f"{path}:{line} imports {target}"


def test_engine_imports_only_base_and_engine() -> None:
    for path in source_files():
        if package_of(module_name(path)) != "engine":
            continue
        for target, line in imported_modules(
            path.read_text(), module_name(path), path.name == "__init__.py"
        ):
            assert package_of(target) in (None, "", "base", "engine"), (
                f"{path}:{line} imports {target}"
            )


@pytest.mark.parametrize(
    ("module", "snippet"),
    [
        ("atoll.base.codec", "from atoll.engine import open_engine\n"),
        ("atoll.base.codec", "import atoll.engine.api\n"),
        ("atoll.base.codec", "from atoll import engine\n"),
        ("atoll.base.codec", "from ..engine import api\n"),
        ("atoll.base.codec", "def f():\n    from atoll.cli import main\n"),
        ("atoll.engine.lsm", "from atoll.cli.main import main\n"),
        ("atoll.engine.lsm", "from atoll.mystery import thing\n"),
        ("atoll", "from atoll.engine import open_engine\n"),
    ],
)
def test_layer_checker_catches_upward_imports(module: str, snippet: str) -> None:
    assert layer_violations(snippet, module) != []


def test_layer_checker_catches_same_tier_siblings() -> None:
    layers = (("base",), ("placement", "erasure"))
    assert layer_violations(
        "from atoll.erasure import codec\n", "atoll.placement.ring", layers=layers
    )


def test_layer_checker_catches_an_unlisted_package() -> None:
    assert layer_violations("import os\n", "atoll.mystery.thing") != []


@pytest.mark.parametrize(
    ("module", "snippet", "is_package"),
    [
        ("atoll.engine.lsm", "from atoll.base.errors import invariant\nimport os\n", False),
        ("atoll.engine.lsm", "from . import api\nfrom .errors import EngineError\n", False),
        ("atoll.engine", "from .api import Engine\n", True),
        (
            "atoll.cli.main",
            "from atoll.engine import open_engine\nfrom atoll import __version__\n",
            False,
        ),
    ],
)
def test_layer_checker_allows_downward_and_own_imports(
    module: str, snippet: str, is_package: bool
) -> None:
    assert layer_violations(snippet, module, is_package) == []


# -- (b) no pickle, marshal, eval, exec ------------------------------------------------------

FORBIDDEN_MODULES = frozenset(
    {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}
)
FORBIDDEN_BUILTINS = frozenset({"eval", "exec"})


def forbidden_uses(source: str) -> list[str]:
    """Imports of pickle-like modules and calls of eval/exec (bare or `builtins.`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.module == "builtins":
                names += [alias.name for alias in node.names]
        elif isinstance(node, ast.Call):
            names = [_dotted(node.func)]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if (
                root in FORBIDDEN_MODULES
                or name in FORBIDDEN_BUILTINS
                or (name.startswith("builtins.") and name.split(".")[1] in FORBIDDEN_BUILTINS)
            ):
                found.append(f"line {node.lineno}: {name}")
    return found


def _dotted(node: ast.expr) -> str:
    """`a.b.c` for a chain of attributes on a name; "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(node.id)
    return ".".join(reversed(parts))


def test_no_pickle_marshal_eval_or_exec_in_src() -> None:
    violations = [
        f"{path.relative_to(ROOT)}: {use}"
        for path in source_files()
        for use in forbidden_uses(path.read_text())
    ]
    assert violations == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\n",
        "import pickle as p\n",
        "from pickle import dumps\n",
        "import marshal\n",
        "from shelve import open\n",
        "x = eval('1 + 1')\n",
        "exec('x = 1')\n",
        "import builtins\nbuiltins.eval('1')\n",
        "from builtins import exec\n",
        "def f():\n    return eval(s)\n",
    ],
)
def test_forbidden_checker_catches(snippet: str) -> None:
    assert forbidden_uses(snippet) != []


def test_forbidden_checker_ignores_lookalikes() -> None:
    # A method called eval, and a word in a string, are not the builtins.
    assert forbidden_uses("model.eval()\nx = 'eval(pickle)'\nimport pickletools_like\n") == []


# -- (c) no clocks or global randomness in pure cores -----------------------------------

# Modules that must take time and randomness as parameters (shared/STYLE.md §1-2).
# Only those that exist are checked.
PURE_CORES = (
    "src/atoll/engine/api.py",
    "src/atoll/engine/bloom.py",
    "src/atoll/engine/compaction_picker.py",
    "src/atoll/raft/quorum.py",
    "src/atoll/raft/types.py",
    "src/atoll/raft/core.py",
    "src/atoll/raft/raft_log.py",
    "src/atoll/raft/progress.py",
    "src/atoll/raft/read_only.py",
    "src/atoll/kv/command.py",
    "src/atoll/kv/layout.py",
    "src/atoll/kv/results.py",
    "src/atoll/kv/snapshot_format.py",
    "src/atoll/multiraft/log_format.py",
    "src/atoll/multiraft/wire.py",
    "src/atoll/sim/network.py",
    "src/atoll/sim/sim_disk.py",
    "src/atoll/rpc/frame.py",
    "src/atoll/sim/linearizability.py",
    "src/atoll/placement/ring.py",
    "src/atoll/placement/pg_table.py",
    "src/atoll/placement/simulate.py",
    "src/atoll/erasure/stripe.py",
    "src/atoll/erasure/shard_format.py",
    "src/atoll/meta/cluster_map.py",
    "src/atoll/meta/commands.py",
    "src/atoll/objects/manifest.py",
    "src/atoll/objects/index.py",
    "src/atoll/gateway/sigv4.py",
    "src/atoll/gateway/checksums.py",
    "src/atoll/gateway/payload.py",
    "src/atoll/gateway/s3proto.py",
)

RANDOM_MODULES = frozenset({"random", "secrets"})
# Reaching for these (calling them, or even naming them as a default) reads the real
# clock or the OS's randomness.
NONDETERMINISTIC = frozenset(
    {
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.monotonic_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
        "time.process_time",
        "time.process_time_ns",
        "time.clock_gettime",
        "time.clock_gettime_ns",
        "datetime.now",
        "datetime.utcnow",
        "datetime.today",
        "date.today",
        "os.urandom",
        "uuid.uuid1",
        "uuid.uuid4",
    }
)


def nondeterminism_uses(source: str) -> list[str]:
    tree = ast.parse(source)
    type_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and node not in type_only:
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] in RANDOM_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node not in type_only:
            module = node.module or ""
            if module.split(".")[0] in RANDOM_MODULES:
                found.append(f"line {node.lineno}: from {module} import ...")
            found += [
                f"line {node.lineno}: from {module} import {a.name}"
                for a in node.names
                if f"{module.rpartition('.')[2]}.{a.name}" in NONDETERMINISTIC
            ]
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            if any(name == bad or name.endswith("." + bad) for bad in NONDETERMINISTIC):
                found.append(f"line {node.lineno}: {name}")
    return found


def _type_checking_nodes(tree: ast.Module) -> set[ast.AST]:
    """Imports under `if TYPE_CHECKING:`: a core may name `random.Random` in a type
    annotation for the seeded generator it is given."""
    nodes: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _dotted(node.test).split(".")[-1] == "TYPE_CHECKING":
            for child in node.body:
                nodes.update(ast.walk(child))
    return nodes


def test_pure_cores_read_no_clock_and_no_global_random() -> None:
    violations = [
        f"{relative}: {use}"
        for relative in PURE_CORES
        if (ROOT / relative).exists()
        for use in nondeterminism_uses((ROOT / relative).read_text())
    ]
    assert violations == []


def test_at_least_one_pure_core_is_checked() -> None:
    assert any((ROOT / relative).exists() for relative in PURE_CORES)


@pytest.mark.parametrize(
    "snippet",
    [
        "import random\n",
        "import random as r\n",
        "from random import Random\n",
        "import secrets\n",
        "import time\nnow = time.time()\n",
        "import time\ndef f():\n    return time.monotonic()\n",
        "import time\ndef f(clock=time.monotonic):\n    return clock()\n",
        "from time import monotonic\n",
        "from time import perf_counter_ns\n",
        "import datetime\nx = datetime.datetime.now()\n",
        "import os\nx = os.urandom(8)\n",
        "import uuid\nx = uuid.uuid4()\n",
    ],
)
def test_nondeterminism_checker_catches(snippet: str) -> None:
    assert nondeterminism_uses(snippet) != []


def test_nondeterminism_checker_allows_type_only_imports_and_injected_clocks() -> None:
    snippet = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import random\n"
        "def step(rng: random.Random, now_s: float, clock: Clock) -> float:\n"
        "    return clock.monotonic() + rng.random() + now_s\n"
    )
    assert nondeterminism_uses(snippet) == []
