"""linear_cross_entropy forward+gradients at a large vocabulary: its default tiles (strips
spanning the vocabulary, as many rows as the 64 MB budget holds, or vocabulary tiles of up to 1024
rows when such strips would be thin) against a given (rows, classes) tile (a tile narrower than the
vocabulary has its logits computed again by the gradient), beside the three bare GEMMs into reused
outputs. Each way runs once per round, by turns; the best of the rounds is printed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python \\
        python bench/linear_strips.py --shape 2048x2048x128256 --tile 1024x10240 --rounds 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastloss as fl
from fastloss._linear_cross_entropy import tile_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1024x1024x128256", help="NxDxV")
    parser.add_argument("--tile", default="1024x12288", help="ROWSxCLASSES of the tiled way")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    n, d, v = (int(s) for s in args.shape.split("x"))
    tile = tuple(int(s) for s in args.tile.split("x"))
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32) / 8
    w = rng.standard_normal((v, d), dtype=np.float32) / 8
    t = rng.integers(0, v, n)
    logits = np.empty((n, v), np.float32)
    grad_weight = np.empty((v, d), np.float32)
    grad_input = np.empty((n, d), np.float32)

    def three_gemms() -> None:
        np.matmul(x, w.T, out=logits)
        np.matmul(logits.T, x, out=grad_weight)
        np.matmul(logits, w, out=grad_input)

    ways = {
        "three GEMMs": three_gemms,
        "default tiles": lambda: fl.linear_cross_entropy(x, w, t, return_grad=True),
        f"{tile[0]}-row strips in {tile[1]}-class tiles": lambda: fl.linear_cross_entropy(
            x, w, t, return_grad=True, chunk_size=tile
        ),
    }
    print("default strip, tile:", tile_shape(n, d, v, 4, False, False)[:2])
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, call in ways.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    base = min(times["three GEMMs"])
    for name, values in times.items():
        print(f"{name:36s} best {min(values):8.3f} s  {min(values) / base:5.2f}x the three GEMMs")


if __name__ == "__main__":
    main()
