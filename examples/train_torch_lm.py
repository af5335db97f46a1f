"""Train a small character-level language model in PyTorch twice, with identical seeds: once with
torch's cross-entropy, once with fastloss.torch's, and compare the losses and step times.

Data: the text of this repository's README.md (no download). Model: each character is
predicted from the --context characters before it, embedded, concatenated and passed through a
one-hidden-layer MLP (a small neural n-gram model) to logits over the characters that occur in
the text; AdamW. The loss is the only difference between the two runs:

    loss = F.cross_entropy(logits, targets)     # torch
    loss = flt.cross_entropy(logits, targets)   # fastloss.torch

    python examples/train_torch_lm.py [--steps 40] [--batch 2048] [--context 16] [--hidden 256]

The losses agree to float32 rounding (the gradients differ in their last bits, so the two runs
drift apart by a few ulps per step). With a vocabulary of ~90 characters the loss is a small part
of a step; fastloss's advantage grows with the vocabulary (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

import fastloss.torch as flt

TEXT = pathlib.Path(__file__).resolve().parents[1] / "README.md"


class CharModel(torch.nn.Module):
    def __init__(self, vocab: int, context: int, hidden: int, embedding: int = 32) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embedding)
        self.hidden = torch.nn.Linear(context * embedding, hidden)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        features = self.embed(chars).flatten(1)  # (batch, context * embedding)
        return self.head(torch.nn.functional.gelu(self.hidden(features)))  # (batch, vocab)


def load_text() -> tuple[torch.Tensor, int]:
    text = TEXT.read_text(encoding="utf-8")
    alphabet = sorted(set(text))
    index = {c: i for i, c in enumerate(alphabet)}
    return torch.tensor([index[c] for c in text], dtype=torch.int64), len(alphabet)


def training_steps(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int, batch: int, context: int, hidden: int, seed: int = 0,
) -> Iterator[tuple[float, float]]:
    """Trains, yielding the loss and the wall time of every step."""
    data, vocab = load_text()
    windows = data.unfold(0, context + 1, 1)  # every (context + 1)-character window, a view
    torch.manual_seed(seed)
    model = CharModel(vocab, context, hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        window = windows[torch.randint(0, len(windows), (batch,), generator=batches)]
        inputs, targets = window[:, :-1], window[:, -1]
        begin = time.perf_counter()
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        yield loss.item(), time.perf_counter() - begin


def train(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int, batch: int, context: int, hidden: int, seed: int = 0,
) -> tuple[list[float], list[float]]:
    """The losses and wall times of every step."""
    losses, times = zip(*training_steps(loss_fn, steps, batch, context, hidden, seed))
    return list(losses), list(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (args.steps, args.batch, args.context, args.hidden)
    # The two runs take turns step by step, so that other work on the machine slows both alike.
    both = zip(training_steps(F.cross_entropy, *sizes), training_steps(flt.cross_entropy, *sizes))
    (theirs, their_times), (ours, our_times) = (zip(*run) for run in zip(*both))
    print("step  torch loss   fastloss.torch loss")
    for step in range(0, args.steps, max(1, args.steps // 10)):
        print(f"{step:4d}  {theirs[step]:.6f}     {ours[step]:.6f}")
    drift = max(abs(a - b) / abs(a) for a, b in zip(theirs, ours))
    print(f"largest relative difference of the losses: {drift:.1e}")
    # medians without the first step (one-time allocations and thread start-up)
    print(f"time per step (median): torch {statistics.median(their_times[1:]) * 1e3:.2f} ms, "
          f"fastloss.torch {statistics.median(our_times[1:]) * 1e3:.2f} ms "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
