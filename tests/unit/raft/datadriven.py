"""A small reader and rewriter of datadriven test files (etcd's `datadriven` format).

A file is a sequence of blocks:

    command arg1 arg2 key=value
    ----
    expected output
    (until a blank line)

Lines starting with `#` between blocks are comments. `check_file` runs every block's
command through a callback and compares the output with the expected text; with
`rewrite=True` (pytest `--rewrite`) it writes the actual outputs back instead, so a
change in behaviour is reviewed as a diff of the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Command:
    name: str
    args: list[str]
    kwargs: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def int_arg(self, i: int) -> int:
        return int(self.args[i])

    def ints(self) -> list[int]:
        return [int(a) for a in self.args]


@dataclass
class Block:
    header_lines: list[str]
    command: Command
    expected: str


def parse_command(text: str, line: int) -> Command:
    words = text.split()
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for word in words[1:]:
        if "=" in word:
            key, _, value = word.partition("=")
            kwargs[key] = value
        else:
            args.append(word)
    return Command(words[0], args, kwargs, line)


def parse(text: str) -> list[Block]:
    lines = text.split("\n")
    blocks: list[Block] = []
    header: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            header.append(line)
            i += 1
            continue
        command = parse_command(line, i + 1)
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 2}: expected '----' after the command")
        i += 2
        out: list[str] = []
        while i < len(lines) and lines[i] != "":
            out.append(lines[i])
            i += 1
        blocks.append(Block(header, command, "\n".join(out)))
        header = []
    return blocks


def render(blocks: list[Block], outputs: list[str]) -> str:
    parts: list[str] = []
    for block, output in zip(blocks, outputs, strict=True):
        parts.extend(block.header_lines)
        words = [block.command.name, *block.command.args]
        words += [f"{k}={v}" for k, v in block.command.kwargs.items()]
        parts.append(" ".join(words))
        parts.append("----")
        parts.append(output if output else "ok")
    return "\n".join(parts).rstrip("\n") + "\n"


def check_file(path: Path, run: Callable[[Command], str], rewrite: bool) -> None:
    blocks = parse(path.read_text())
    outputs: list[str] = []
    for block in blocks:
        actual = run(block.command).rstrip("\n") or "ok"
        outputs.append(actual)
        if not rewrite and actual != block.expected:
            raise AssertionError(
                f"{path.name}:{block.command.line}: {block.command.name} "
                f"{' '.join(block.command.args)}\n--- expected\n{block.expected}\n"
                f"--- actual\n{actual}\n(run pytest with --rewrite to accept)"
            )
    if rewrite:
        path.write_text(render(blocks, outputs))
