"""Ratio benchmarks: dropoutlib against PyTorch and against hardware floors.

Run all with ``python -m benchmarks`` (or ``make bench``), one with
``python -m benchmarks NAME`` where ``NAME`` is a ``bench_NAME.py`` module here. Each
benchmark prints a table of ratios measured side by side in one run and writes
``benchmarks/results/NAME.json``. Benchmarks never assert on time.
"""
