"""Where a training step's time over a hand-written step goes: the model's modules, the objective, the Trainer.

``vae_vs_plain.py`` and ``throughput.py`` time whole epochs of the Trainer
against hand-written loops; this script splits the difference by layer. Five
ways of taking one training step of the same model (fused Adam 1e-3, batch 128)
are interleaved step by step, in a random order each round:

1. ``plain``: the hand-written step. ``--model vae`` (default): the VAE of
   ``vae_vs_plain.py`` (784-400-20, ``nn.Linear`` layers, ``F.relu``, Bernoulli
   likelihood, N(0, I) prior, one draw, analytic KL; clean images). ``--model ae``:
   the denoising autoencoder step of ``throughput.py`` (784-400-20, Gaussian
   noise of sigma 0.5 added inline, the model's ``nn.Sequential`` layers called).
2. ``modules``: the library's model called through its modules (and, for the
   autoencoder, its ``GaussianNoise``), the loss written out by hand.
3. ``objective``: ``vaerepair.ELBO()`` (``Reconstruction()``) in a hand-written
   loop: the objective's latent path, likelihood and KL layers on top of (2).
4. ``checked``: (3) with the gradients checked for NaN and Inf before the update,
   in the one kernel call the Trainer's guard makes.
5. ``source``: (4) on the batches of a :class:`~vaerepair.training.TensorSource`,
   the Trainer's default source (which corrupts them, with its own generator).
6. ``trainer``: one step of ``vaerepair.Trainer`` (its precision, NaN guard,
   callbacks, optimizer step, epoch meter and per-step bookkeeping) on top of (5).

The Trainer drives the rounds: a callback takes the other four steps at the
end of each Trainer step (the Trainer's own step is timed from the callback's
return to its next call, so it includes the loop's per-step bookkeeping and
one callback dispatch that ``progress=False`` alone does not make). Every
hand-written step runs under ``validation(False)``, as the Trainer's steps do.
Each line gives the median over steps of the paired difference (the step of a
layer minus the step of the layer below it, taken in the same round) and its
exact binomial 95 % interval (``timing.py``): side by side in one round, a
machine's slow drifts cancel. The interval is that of one run. From one run
(one process) to the next the layers' shares move far more than it says, the
total less: in four default runs the autoencoder's objective layer took -22
to 117 µs and its loop 71 to 161 µs, for totals of 190 to 281 µs; in five, the
VAE's layers moved by 30 to 65 µs, for totals of 261 to 316 µs (where each copy's
tensors land in memory changes what stays in cache). Read a layer over several
runs, and the total as the figure to trust.

Run: python benchmarks/step_overhead.py [--model vae|ae] [--steps 2500] [--threads 2]
(about 1 minute on 2 cores). Ends with ``Trainer over plain per step: X us (Y %)``.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from timing import median_interval  # benchmarks/timing.py
from vae_vs_plain import PlainVAE  # benchmarks/vae_vs_plain.py

import vaerepair as vr
from vaerepair.distributions import validation
from vaerepair.training.sources import SourceContext

Step = Callable[[], None]


def hand_step(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
              images: torch.Tensor, batch_size: int, seed: int, check: bool = False) -> Step:
    """A hand-written training step on shuffled batches of uint8 ``images`` ``(N, 1, 28, 28)``, its loss
    ``loss_of(model, clean batch)``; with ``check``, the gradients are checked before the update."""
    gen = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []

    def batch() -> tuple[torch.Tensor, ...]:
        if not batches:
            order = torch.randperm(len(images), generator=gen)
            batches.extend(reversed(order.split(batch_size)))
        return (images[batches.pop()].float().div(255),)

    return _step(model, batch, loss_of, check)


def source_step(model: torch.nn.Module, objective: Callable[..., vr.objectives.ObjectiveResult],
                source: vr.training.TensorSource) -> Step:
    """A hand-written, checked training step on the batches of the Trainer's own source (corrupted there)."""
    batches: list[Iterator[vr.training.Batch]] = [iter(source)]

    def batch() -> tuple[torch.Tensor, ...]:
        for _ in range(2):  # the next epoch's first batch when this one is done
            item = next(batches[0], None)
            if item is not None:
                return item.input, item.target
            batches[0] = iter(source)
        raise RuntimeError("the source gave no batch")

    return _step(model, batch, lambda m, x_in, x: objective(m, x_in, x).loss, True)


def _step(model: torch.nn.Module, batch: Callable[[], tuple[torch.Tensor, ...]],
          loss_of: Callable[..., torch.Tensor], check: bool) -> Step:
    """One step: ``loss_of(model, *batch())``, backward, the gradients checked for NaN and Inf as the Trainer's
    guard does (with ``check``: the gradient scaler's kernel, scale 1, in one call), fused Adam's update."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the Trainer's default
    params = list(model.parameters())
    found, one = torch.zeros(()), torch.ones(())

    def step() -> None:
        loss = loss_of(model, *batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if check:
            torch._amp_foreach_non_finite_check_and_unscale_([p.grad for p in reversed(params)], found, one)
            if found.item():
                raise FloatingPointError("a non-finite gradient")
        opt.step()
        loss.item()  # the value one prints, as the Trainer reads it

    return step


SIGMA = 0.5  # the autoencoder's training noise, as in throughput.py


def plain_loss(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The hand-written VAE's negative ELBO."""
    return model.neg_elbo(x.flatten(1)).mean()  # type: ignore[operator]


def modules_loss(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The negative ELBO from the library model's modules, written out as one writes it by hand."""
    q = model.posterior(model.encoder(x))
    z = q.loc + q.scale * torch.randn(q.loc.shape)
    recon = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(dim=(1, 2, 3))
    return (recon + q.kl_standard_normal()).mean()


# built once, as a loop builds its objective and its corruption
ELBO, RECONSTRUCTION, NOISE = vr.ELBO(), vr.Reconstruction(), vr.GaussianNoise(SIGMA)


def objective_loss(model: Any, x: torch.Tensor) -> torch.Tensor:
    return ELBO(model, x, x).loss


def ae_plain_loss(model: Any, x: torch.Tensor) -> torch.Tensor:
    """throughput.py's hand-written step: inline noise, the layers' ``nn.Sequential`` and ``nn.Linear`` called."""
    noisy = x + SIGMA * torch.randn(x.shape)
    logits = model.decoder(model.posterior.head(model.encoder.net(noisy.flatten(1))))
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3)).mean()


def ae_modules_loss(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The library's corruption, encoder, posterior and decoder modules called by hand, the loss written out."""
    noisy = NOISE(x)
    logits = model.decoder(model.posterior(model.encoder(noisy)).loc)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3)).mean()


def ae_objective_loss(model: Any, x: torch.Tensor) -> torch.Tensor:
    return RECONSTRUCTION(model, NOISE(x), x).loss



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
    parser.add_argument("--model", choices=("vae", "ae"), default="vae",
                        help="vae: vae_vs_plain.py's VAE (default); ae: throughput.py's denoising autoencoder")
    args = parser.parse_args()
    if args.steps < 6 or args.n < 256 or args.threads < 1:
        parser.error(f"--steps must be >= 6, --n >= 256 (two batches) and --threads >= 1, got {args.steps}, "
                     f"{args.n} and {args.threads}")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    train = vr.load("fashion-mnist", "train")[: args.n]
    torch.manual_seed(args.seed)
    if args.model == "vae":
        model = vr.variational_autoencoder(latent_dim=20, hidden=(400,), likelihood="bernoulli")
        objective, corruption, losses = vr.ELBO(), None, (plain_loss, modules_loss, objective_loss)
        torch.manual_seed(args.seed)
        plain_model: torch.nn.Module = PlainVAE()
    else:
        model = vr.autoencoder(arch="mlp", latent_dim=20)
        objective, corruption = vr.Reconstruction(), vr.GaussianNoise(SIGMA)  # type: ignore[assignment]
        losses = (ae_plain_loss, ae_modules_loss, ae_objective_loss)
        plain_model = copy.deepcopy(model)
    steps = {
        "plain": hand_step(plain_model, losses[0], train.images, 128, args.seed),
        "modules": hand_step(copy.deepcopy(model), losses[1], train.images, 128, args.seed),
        "objective": hand_step(copy.deepcopy(model), losses[2], train.images, 128, args.seed),
        "checked": hand_step(copy.deepcopy(model), losses[2], train.images, 128, args.seed, check=True),
    }
    source = vr.training.TensorSource(train)
    source.setup(SourceContext(torch.device("cpu"), torch.float32, 128, args.seed, corruption,
                               image_shape=(1, 28, 28)))
    steps["source"] = source_step(copy.deepcopy(model), objective, source)
    rounds = Rounds(steps, args.steps)
    steps_per_epoch = -(-args.n // 128)
    trainer = vr.Trainer(model, objective, corruption, epochs=args.steps // (steps_per_epoch - 1) + 2, batch_size=128,
                         device="cpu", seed=args.seed, progress=False, callbacks=[rounds])
    with validation(False):  # the hand-written steps run without per-call checks, as the Trainer's do
        trainer.fit(train)

    times = rounds.times
    plain = statistics.median(times["plain"])
    print(f"{args.model}, {len(times['plain'])} rounds, {args.threads} threads; median step: "
          + ", ".join(f"{k} {statistics.median(v) * 1e6:.0f} us" for k, v in times.items()))
    layers = [("modules", "plain", "the library's modules over the hand-written layers"),
              ("objective", "modules", "the objective's latent path, likelihood (and KL) layers"),
              ("checked", "objective", "the gradient check before the update"),
              ("source", "checked", "batches from a TensorSource (the Trainer's; its corruption)"),
              ("trainer", "source", "the Trainer's loop: precision, guard, callbacks, meter, bookkeeping"),
              ("trainer", "plain", "in all")]
    for upper, lower, what in layers:
        diff, low, high = median_interval([a - b for a, b in zip(times[upper], times[lower], strict=True)])
        print(f"{upper} - {lower}: {diff * 1e6:6.0f} us (95 % interval {low * 1e6:.0f}..{high * 1e6:.0f}), "
              f"{diff / plain:+.1%} of a plain step: {what}")
    total = statistics.median([a - b for a, b in zip(times["trainer"], times["plain"], strict=True)])
    print(f"Trainer over plain per step: {total * 1e6:.0f} us ({total / plain:.1%})")


if __name__ == "__main__":
    main()
