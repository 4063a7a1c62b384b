"""A benchmark run on an older commit and on the work tree, alternately.

    python scripts/bench_ab.py --base REV [--pairs N] [--keys a,b,c] -- bench/search.py --runs 7

The commit ``REV`` is exported (``git archive``) into a temporary directory
and this tree's benchmark script copied over its own (the same measuring
code on both sides; the rest, its helpers included, as they were at
``REV``); then, ``--pairs`` times, the benchmark script runs in that tree and in this
one (which goes first alternates from pair to pair), each in a fresh
interpreter with its own tree first on ``PYTHONPATH``. Each run's ``RESULT``
line is kept; the table gives the chosen keys of every run with the load
average before it, then each side's range (min–max). On a shared machine the
pairs are what can be compared: the two sides ran a few seconds apart.

Exit 0 when every run printed its ``RESULT``, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def export(rev: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def run(tree: Path, bench: list[str]) -> dict[str, Any] | None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, *bench], cwd=tree, env=env, capture_output=True, text=True
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument(
        "--keys",
        default=(
            "first_ms,all_ms,longest_alone_ms,ratio,client_cpu_ms,"
            "decode_floor_ms,parse_ms,client_per_floor,parse_per_floor"
        ),
    )
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- script [its arguments]")
    args = parser.parse_args(argv)
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    if not bench or args.pairs < 1:
        parser.error("give the benchmark after --, and at least one pair")
    keys = args.keys.split(",")
    rows: list[tuple[str, float, dict[str, Any]]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        base = Path(tmp)
        export(args.base, base)
        shutil.copyfile(ROOT / bench[0], base / bench[0])
        for n in range(args.pairs):
            sides = [("base", base), ("work", ROOT)]
            for name, tree in sides if n % 2 == 0 else sides[::-1]:
                load = os.getloadavg()[0]
                result = run(tree, bench)
                if result is None:
                    ok = False
                    print(f"{name}: no RESULT line", flush=True)
                    continue
                rows.append((name, load, result))
                shown = "  ".join(f"{k} {result.get(k)}" for k in keys)
                print(f"pair {n + 1} {name:4} load {load:5.2f}  {shown}", flush=True)
    print()
    for name in ("base", "work"):
        mine = [r for side, _, r in rows if side == name]
        ranges = []
        for k in keys:
            values = [r[k] for r in mine if isinstance(r.get(k), int | float)]
            if values:
                ranges.append(f"{k} {min(values):g}–{max(values):g}")
        print(f"{name} ({args.base if name == 'base' else 'work tree'}): " + ", ".join(ranges))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
