"""fastloss.dask against fastloss in memory, side by side in one run: cross_entropy of a
float32 (rows, classes) array held in memory, as it is and as a dask array in row chunks and in
class-axis chunks, on dask's threaded scheduler. Prints each timing's median and its ratio to
the in-memory call.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python \\
        python bench/dask_chunks.py --threads 2 --repeats 7

The issue's goals (2 threads, 4096 x 32000, 8 row chunks / 4 class chunks): at most 1.3x and
1.5x the in-memory time. Two ways to spend the threads are timed: dask's pool of `threads`
workers each running fastloss on one thread, and one dask worker running fastloss on
`threads` threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import dask
import dask.array as da
import numpy as np

import fastloss as fl
import fastloss.dask as fld


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: page faults, thread pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--row-chunks", type=int, default=8)
    parser.add_argument("--class-chunks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.classes), dtype=np.float32)
    t = rng.integers(0, args.classes, args.rows)
    rows = da.from_array(x, chunks=(-(-args.rows // args.row_chunks), args.classes))
    columns = da.from_array(x, chunks=(args.rows, -(-args.classes // args.class_chunks)))
    loss_rows = fld.cross_entropy(rows, t)
    loss_columns = fld.cross_entropy(columns, t)
    expected = fl.cross_entropy(x, t)
    for loss in (loss_rows, loss_columns):
        assert np.isclose(loss.compute(scheduler="sync"), expected, rtol=2e-7)

    fl.set_num_threads(args.threads)
    in_memory = median_seconds(lambda: fl.cross_entropy(x, t), args.repeats)
    print(f"cross_entropy {args.rows}x{args.classes} float32, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"  in memory                          {in_memory * 1e3:8.1f} ms")
    ways = {
        f"{args.threads} dask workers x 1 fastloss thread": (args.threads, 1),
        f"1 dask worker x {args.threads} fastloss threads": (1, args.threads),
    }
    for label, (workers, threads) in ways.items():
        fl.set_num_threads(threads)
        with dask.config.set(scheduler="threads", num_workers=workers):
            for name, loss in ((f"{args.row_chunks} row chunks", loss_rows),
                               (f"{args.class_chunks} class chunks", loss_columns)):
                seconds = median_seconds(loss.compute, args.repeats)
                print(f"  {name:16s} {label:34s} {seconds * 1e3:8.1f} ms  "
                      f"{seconds / in_memory:5.2f}x")
    fl.set_num_threads(args.threads)


if __name__ == "__main__":
    main()
