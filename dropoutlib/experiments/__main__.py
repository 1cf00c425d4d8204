"""Command line: ``python -m dropoutlib.experiments NAME --out FILE [--quick] [--seeds ...]``."""

from __future__ import annotations

import argparse
import shlex
import sys

from dropoutlib.experiments.sweeps import EXPERIMENTS, run_experiment


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
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the experiment's)")
    args = parser.parse_args(argv)
    results = run_experiment(args.name, seeds=args.seeds, quick=args.quick, progress=True)
    results.meta["command"] = shlex.join(["python", "-m", "dropoutlib.experiments", *argv])
    results.save(args.out)
    print(f"{args.name}: {len(results.rows)} rows in {results.meta['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
