"""Perplexity of a model's stored logits, out of core, on a dask.distributed cluster.

A toy language model's head (hidden states of 64 features times a (V, 64) output matrix, V =
32,000 by default) writes its logits for every position, float32, to a Zarr store, chunk by
chunk, with the tokens that followed. Then a LocalCluster of worker processes, each under a
memory limit smaller than the store, computes the perplexity ``exp(cross_entropy)`` with
`fastloss.dask`, reading the store chunk by chunk, with a progress bar. The script prints that
throughput next to the store's plain read throughput (every chunk read, nothing computed), on
the same cluster, and each worker's peak memory against its limit.

    pip install "fastloss[dask]" "zarr>=3"
    python examples/perplexity_dask.py --small          # ~0.5 GB store, about a minute
    python examples/perplexity_dask.py                  # 4.2 GB store, 1 GiB per worker

(--rows, --vocab, --chunk-rows, --workers, --memory-limit and --store change the sizes; the
store is deleted afterwards unless --keep.)
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster, progress, wait

import fastloss.dask as fld

FEATURES = 64


def model_logits(rows: int, vocab: int, chunk_rows: int, seed: int) -> tuple[da.Array, da.Array]:
    """The toy model's logits (rows, vocab) and the tokens that followed (rows,), lazily: a
    chunk of hidden states times the output matrix; each token is the model's top choice half
    of the time and a uniformly random one otherwise (a perplexity between the two extremes)."""
    rng = np.random.default_rng(seed)
    head = (rng.standard_normal((vocab, FEATURES)) * 0.35).astype(np.float32)
    hidden = da.random.default_rng(seed).standard_normal(
        (rows, FEATURES), chunks=(chunk_rows, FEATURES), dtype=np.float32
    )
    logits = hidden @ head.T
    uniform = da.random.default_rng(seed + 1).integers(0, vocab, rows, chunks=chunk_rows)
    coin = da.random.default_rng(seed + 2).random(rows, chunks=chunk_rows) < 0.5
    tokens = da.where(coin, logits.argmax(axis=1), uniform)
    return logits, tokens


def _touch(block: np.ndarray) -> np.ndarray:
    """Reads a block and computes nothing: the store's plain read throughput."""
    return np.zeros((1,) * block.ndim, np.float32)


def peak_memory(client: Client) -> dict:
    """Each worker's highest memory use since it started, from distributed's own monitor."""
    return client.run(lambda dask_worker: max(dask_worker.monitor.quantities["memory"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="4096 rows, 400 MiB per worker: about a minute")
    parser.add_argument("--rows", type=int, default=None, help="positions (default 32768)")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--chunk-rows", type=int, default=256,
                        help="rows per chunk of the store (256 x 32000 float32 = 33 MB)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default=None,
                        help="per worker (default 1GiB; 400MiB with --small)")
    parser.add_argument("--store", default=None, help="the Zarr store's path (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    args = parser.parse_args()
    rows = args.rows or (4096 if args.small else 32768)
    limit = args.memory_limit or ("400MiB" if args.small else "1GiB")
    store = Path(args.store or tempfile.mkdtemp(prefix="perplexity-")) / "logits.zarr"
    store_bytes = rows * args.vocab * 4

    print(f"logits {rows} x {args.vocab} float32 = {format_bytes(store_bytes)} in {store}; "
          f"{args.workers} worker processes, memory limit {limit} each")
    if store_bytes <= parse_bytes(limit):
        print("(note: the store fits in one worker's memory limit; raise --rows)")
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=limit, dashboard_address=None)
    client = Client(cluster, timeout=60)
    try:
        logits, tokens = model_logits(rows, args.vocab, args.chunk_rows, seed=0)
        start = time.perf_counter()
        # uncompressed: float32 logits barely compress, and the read should cost only I/O
        written = da.to_zarr(logits, str(store), component="logits", compute=False,
                             overwrite=True, compressors=None)
        written_tokens = da.to_zarr(tokens, str(store), component="tokens", compute=False,
                                    overwrite=True)
        client.compute([written, written_tokens], sync=True)
        print(f"written in {time.perf_counter() - start:.1f} s")

        stored = da.from_zarr(str(store), component="logits")
        targets = da.from_zarr(str(store), component="tokens")

        start = time.perf_counter()
        touched = stored.map_blocks(_touch, chunks=(1,) * stored.ndim, dtype=np.float32).sum()
        wait(client.compute(touched))
        read_seconds = time.perf_counter() - start

        loss = fld.cross_entropy(stored, targets)
        start = time.perf_counter()
        future = client.compute(loss)
        print("perplexity:")
        progress(future)
        value = float(future.result())
        seconds = time.perf_counter() - start
        print()
        print(f"cross-entropy {value:.4f} nats, perplexity {math.exp(value):.1f} "
              f"(vocabulary {args.vocab})")
        read = store_bytes / read_seconds / 1e9
        rate = store_bytes / seconds / 1e9
        print(f"plain read of the store   {read:6.2f} GB/s ({read_seconds:.2f} s)")
        print(f"perplexity with fastloss  {rate:6.2f} GB/s ({seconds:.2f} s), "
              f"{rate / read:.0%} of the read throughput")
        for worker, peak in sorted(peak_memory(client).items()):
            print(f"worker {worker}: peak memory {format_bytes(peak)} of {limit}")
    finally:
        client.close(timeout=60)
        cluster.close(timeout=60)
        if not args.keep:
            shutil.rmtree(store.parent if args.store is None else store, ignore_errors=True)


if __name__ == "__main__":
    main()
