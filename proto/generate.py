"""Regenerate the Python code for the protobuf schemas under proto/ into
src/atoll/proto/ (`make proto`). Writes files; run from anywhere.

    python proto/generate.py [--out DIR]

The schemas live at proto/atoll/<name>.proto (protobuf `package atoll.<name>.v1`), but
the generated modules must import as `atoll.proto.<name>_pb2`. Rather than rewrite the
generated imports afterwards, protoc is given a virtual path: `-I atoll/proto=proto/atoll`
maps the directory proto/atoll to the import path atoll/proto, so the files are compiled
as `atoll/proto/<name>.proto` and land, with correct imports, in `<out>/atoll/proto/`.
(The descriptor's file name is therefore `atoll/proto/<name>.proto` in Python; no
message depends on it.) `--out` defaults to src/, i.e. the committed tree;
tests/unit/proto/test_generated_up_to_date.py generates into a temporary directory and
compares.

Needs grpcio-tools (the `dev` extra), whose bundled protoc fixes the generated text:
that is why the extra pins it to one minor version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "proto" / "atoll"
# The generated modules, per schema, relative to the output directory.
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def schema_names() -> list[str]:
    return sorted(path.stem for path in SCHEMAS.glob("*.proto"))


def generated_files(out: Path) -> list[Path]:
    """Every file `generate(out)` writes, in a fixed order."""
    return [
        out / "atoll" / "proto" / f"{name}{suffix}"
        for name in schema_names()
        for suffix in SUFFIXES
    ]


def generate(out: Path) -> None:
    from grpc_tools import protoc  # the dev extra; imported here so --help works without it

    include = Path(protoc.__file__).parent / "_proto"  # the well-known types
    (out / "atoll" / "proto").mkdir(parents=True, exist_ok=True)
    for name in schema_names():
        args = [
            "grpc_tools.protoc",
            f"-Iatoll/proto={SCHEMAS}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"atoll/proto/{name}.proto",
        ]
        status = protoc.main(args)
        if status != 0:
            raise SystemExit(f"protoc failed on {name}.proto (status {status})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "src")
    args = parser.parse_args()
    generate(args.out)
    for path in generated_files(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
