"""Train a small classifier end to end in NumPy, with fastloss computing the loss and its gradient.

Dataset: scikit-learn's bundled handwritten digits (1797 8x8 images, 10 classes; it ships inside
the scikit-learn package, nothing is downloaded). Model: a one-hidden-layer MLP (64 -> 128 -> 10,
ReLU), trained with plain minibatch SGD with momentum. fastloss supplies the fused cross-entropy
forward + gradient with respect to the logits; the two matrix products are NumPy's.

    pip install scikit-learn && python examples/train_digits.py

Typical result (seeded, a few seconds on 2 cores): test accuracy about 97-98% after 30 epochs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastloss as fl


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # pixel values 0..16 -> 0..1
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return x[:split], y[:split], x[split:], y[split:]


def train(epochs: int, batch: int, lr: float, seed: int) -> float:
    x_train, y_train, x_test, y_test = load_data(seed)
    rng = np.random.default_rng(seed)
    hidden, classes = 128, 10
    w1 = (rng.standard_normal((64, hidden)) * np.sqrt(2 / 64)).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = (rng.standard_normal((hidden, classes)) * np.sqrt(2 / hidden)).astype(np.float32)
    b2 = np.zeros(classes, np.float32)
    params = [w1, b1, w2, b2]
    velocity = [np.zeros_like(p) for p in params]

    def logits_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.maximum(x @ w1 + b1, 0.0)
        return h, h @ w2 + b2

    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            xb, yb = x_train[idx], y_train[idx]
            h, logits = logits_of(xb)
            # Loss and d(mean loss)/d(logits) in one fused pass; the gradient overwrites the logits.
            loss, d_logits = fl.cross_entropy(logits, yb, label_smoothing=0.05, return_grad=True,
                                              grad_out=logits)
            total += float(loss) * len(idx)
            d_h = (d_logits @ w2.T) * (h > 0)
            grads = [xb.T @ d_h, d_h.sum(0), h.T @ d_logits, d_logits.sum(0)]
            for p, v, g in zip(params, velocity, grads):
                v *= 0.9
                v -= lr * g
                p += v
        _, test_logits = logits_of(x_test)
        accuracy = float(np.mean(np.argmax(test_logits, axis=1) == y_test))
        if epoch % 5 == 4 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(x_train):.4f}  test accuracy {accuracy:.3f}")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    accuracy = train(args.epochs, args.batch, args.lr, args.seed)
    print(f"final test accuracy {accuracy:.3f} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
