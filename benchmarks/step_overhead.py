"""Where a VAE step's time over a hand-written step goes: the model's modules, the objective, the Trainer.

``vae_vs_plain.py`` times whole epochs of the Trainer against a hand-written
VAE; this script splits the difference by layer. Five ways of taking one
training step of the same VAE (the reports' 784-400-20, Bernoulli likelihood,
N(0, I) prior, one draw, analytic KL; fused Adam 1e-3, batch 128, clean images)
are interleaved step by step, in a random order each round:

1. ``plain``: the hand-written VAE of ``vae_vs_plain.py`` (``nn.Linear`` layers, ``F.relu``).
2. ``modules``: the library's model, its encoder, posterior and decoder modules
   called by hand, the negative ELBO written out (BCE and the closed-form KL).
3. ``objective``: ``vaerepair.ELBO()(model, x, x)`` in a hand-written loop: the
   objective's latent path, likelihood and KL layers on top of (2).
4. ``checked``: (3) with the gradients checked for NaN and Inf before the update,
   in the one kernel call the Trainer's guard makes.
5. ``trainer``: one step of ``vaerepair.Trainer`` (its batch source, precision,
   NaN guard, optimizer step and epoch meter) on top of (4).

The Trainer drives the rounds: a callback takes the other three steps at the
end of each Trainer step (the Trainer's own step is timed from the callback's
return to its next call, so it includes the loop's per-step bookkeeping and
one callback dispatch that ``progress=False`` alone does not make). Every
hand-written step runs under ``validation(False)``, as the Trainer's steps do.
Each line gives the median over steps of the paired difference (the step of a
layer minus the step of the layer below it, taken in the same round) and its
exact binomial 95 % interval (``timing.py``): side by side in one round, a
machine's slow drifts cancel.

Run: python benchmarks/step_overhead.py [--steps 2500] [--threads 2]  (about 1 minute on 2 cores)
Ends with ``Trainer over plain per step: X us (Y %)``.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import median_interval  # benchmarks/timing.py
from vae_vs_plain import PlainVAE  # benchmarks/vae_vs_plain.py

import vaerepair as vr
from vaerepair.distributions import validation

Step = Callable[[], None]


def hand_step(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
              images: torch.Tensor, batch_size: int, seed: int, check: bool = False) -> Step:
    """A hand-written training step over shuffled batches of uint8 ``images`` ``(N, 1, 28, 28)``; with
    ``check``, the gradients are checked for NaN and Inf before the update as the Trainer's guard does (the
    gradient scaler's kernel, scale 1, in one call)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the Trainer's default
    gen = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    params = list(model.parameters())
    found, one = torch.zeros(()), torch.ones(())

    def step() -> None:
        if not batches:
            order = torch.randperm(len(images), generator=gen)
            batches.extend(reversed(order.split(batch_size)))
        x = images[batches.pop()].float().div(255)
        loss = loss_of(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if check:
            torch._amp_foreach_non_finite_check_and_unscale_([p.grad for p in reversed(params)], found, one)
            if found.item():
                raise FloatingPointError("a non-finite gradient")
        opt.step()
        loss.item()  # the value one prints, as the Trainer reads it

    return step


def plain_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.neg_elbo(x.flatten(1)).mean()  # type: ignore[operator]


def modules_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The negative ELBO from the library model's modules, written out as one writes it by hand."""
    q = model.posterior(model.encoder(x))
    z = q.loc + q.scale * torch.randn(q.loc.shape)
    recon = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(dim=(1, 2, 3))
    return (recon + q.kl_standard_normal()).mean()


def objective_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return vr.ELBO()(model, x, x).loss


class Rounds(vr.training.Callback):
    """At the end of each Trainer step: time it, then take the other steps in a random order."""

    def __init__(self, steps: dict[str, Step], rounds: int) -> None:
        self.steps, self.rounds = steps, rounds
        self.times: dict[str, list[float]] = {"trainer": [], **{k: [] for k in steps}}
        self.resumed: float | None = None  # when the Trainer got control back

    def on_epoch_start(self, trainer: vr.Trainer, epoch: int) -> None:
        self.resumed = None  # a step across the epoch's end is not timed

    def on_step_end(self, trainer: vr.Trainer, batch: object, result: object) -> None:
        if self.resumed is not None and len(self.times["trainer"]) < self.rounds:
            self.times["trainer"].append(time.perf_counter() - self.resumed)
            names = list(self.steps)
            random.shuffle(names)
            for name in names:
                t0 = time.perf_counter()
                self.steps[name]()
                self.times[name].append(time.perf_counter() - t0)
        if len(self.times["trainer"]) >= self.rounds:
            trainer.stop_training = True
        self.resumed = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2500, help="rounds of one step of each (default 2500)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=12000, help="training images (default 12000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < 6 or args.n < 128:
        parser.error(f"--steps must be >= 6 and --n >= 128, got {args.steps} and {args.n}")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    train = vr.load("fashion-mnist", "train")[: args.n]
    torch.manual_seed(args.seed)
    model = vr.variational_autoencoder(latent_dim=20, hidden=(400,), likelihood="bernoulli")
    torch.manual_seed(args.seed)
    steps = {
        "plain": hand_step(PlainVAE(), plain_loss, train.images, 128, args.seed),
        "modules": hand_step(copy.deepcopy(model), modules_loss, train.images, 128, args.seed),
        "objective": hand_step(copy.deepcopy(model), objective_loss, train.images, 128, args.seed),
        "checked": hand_step(copy.deepcopy(model), objective_loss, train.images, 128, args.seed, check=True),
    }
    rounds = Rounds(steps, args.steps)
    steps_per_epoch = -(-args.n // 128)
    trainer = vr.Trainer(model, vr.ELBO(), None, epochs=args.steps // (steps_per_epoch - 1) + 2, batch_size=128,
                         device="cpu", seed=args.seed, progress=False, callbacks=[rounds])
    with validation(False):  # the hand-written steps run without per-call checks, as the Trainer's do
        trainer.fit(train)

    times = rounds.times
    plain = statistics.median(times["plain"])
    print(f"{len(times['plain'])} rounds, {args.threads} threads; median step: "
          + ", ".join(f"{k} {statistics.median(v) * 1e6:.0f} us" for k, v in times.items()))
    layers = [("modules", "plain", "the library's modules over nn.Linear + F.relu"),
              ("objective", "modules", "ELBO's latent path, likelihood and KL layers"),
              ("checked", "objective", "the gradient check before the update"),
              ("trainer", "checked", "the Trainer's own steps: batches, guard, meter, bookkeeping"),
              ("trainer", "plain", "in all")]
    for upper, lower, what in layers:
        diff, low, high = median_interval([a - b for a, b in zip(times[upper], times[lower], strict=True)])
        print(f"{upper} - {lower}: {diff * 1e6:6.0f} us (95 % interval {low * 1e6:.0f}..{high * 1e6:.0f}), "
              f"{diff / plain:+.1%} of a plain step: {what}")
    total = statistics.median([a - b for a, b in zip(times["trainer"], times["plain"], strict=True)])
    print(f"Trainer over plain per step: {total * 1e6:.0f} us ({total / plain:.1%})")


if __name__ == "__main__":
    main()
