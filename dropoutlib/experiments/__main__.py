"""Command line: ``python -m dropoutlib.experiments NAME --out FILE [--quick] [--seeds ...]``.

Every argument is checked before the sweep starts: a bad one ends the command at once with a
usage message and exit status 2 (argparse's convention), never after minutes of training.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from dropoutlib.experiments.sweeps import EXPERIMENTS, run_experiment


def _seed(text: str) -> int:
    """A seed: a non-negative integer (what ``numpy.random.default_rng`` accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: seeds must be >= 0")
    return value


def _out_problem(out: str) -> str | None:
    """Why ``out`` cannot receive the results file, or None if it can."""
    path = Path(out)
    if path.is_dir():
        return f"--out {out!r} is a folder; name a file inside it, e.g. {str(path / 'x.json')!r}"
    if path.suffix != ".json":
        return f"--out must name a .json file, but got {out!r}"
    parent = path.parent
    if not parent.exists():
        return f"--out {out!r}: the folder {str(parent)!r} does not exist"
    if not parent.is_dir():
        return f"--out {out!r}: {str(parent)!r} is not a folder"
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"--out {out!r}: no permission to write there"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m dropoutlib.experiments",
        description="Run one of the book's dropout sweeps and write its results (JSON).",
        epilog="\n".join(f"{e.name}: {e.doc}" for e in EXPERIMENTS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(EXPERIMENTS), help="the experiment to run")
    parser.add_argument("--out", required=True, help="results file to write (.json)")
    parser.add_argument("--quick", action="store_true", help="tiny grid and 150 steps (seconds)")
    parser.add_argument(
        "--seeds",
        type=_seed,
        nargs="+",
        help="distinct non-negative integer seeds (default: the experiment's)",
    )
    args = parser.parse_args(argv)
    problem = _out_problem(args.out)
    if problem is not None:
        parser.error(problem)
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, but got {args.seeds}")
    results = run_experiment(args.name, seeds=args.seeds, quick=args.quick, progress=True)
    results.meta["command"] = shlex.join(["python", "-m", "dropoutlib.experiments", *argv])
    results.save(args.out)
    print(f"{args.name}: {len(results.rows)} rows in {results.meta['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
