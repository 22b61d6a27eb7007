"""Cost of a Fisher-autoencoder training step against an ELBO step on the same model and batch.

The reports' MLP (784-400-20, Gaussian likelihood with sigma = 1 and a sigmoid
link, which the Fisher objective needs), one batch of 128 Fashion-MNIST
training images with Gaussian noise (sigma = 0.25) as input and the clean
images as target, Adam 1e-3. A step is what the Trainer does: the objective,
``zero_grad``, ``loss.backward(inputs=params)``, ``optimizer.step()``.

Timed, alternating blocks of ``--block`` steps, in this process:

* ``ELBO``: :class:`vaerepair.ELBO`;
* ``Fisher``: :class:`vaerepair.FisherDivergence` (the default: the likelihood's
  closed-form derivatives where it has them, as the Gaussian does);
* ``Fisher autograd``: ``FisherDivergence(closed_form=False)`` (every derivative by autograd);
* ``hand-written Fisher``: the same loss written out in plain PyTorch for this
  MLP (closed-form Gaussian scores, two ``torch.autograd.grad`` calls), the
  reference for what the library's generic version costs.

The Fisher step needs two extra backward passes (the likelihood score through
the decoder, the encoder's x-score through the encoder) and their double
backward; with the 784-wide layers dominating, that is 11 large matrix
products against the ELBO's 5.

Run: python benchmarks/fisher_cost.py [--threads 2] [--repeats 15] [--block 10]
Ends with the line ``time ratio (Fisher / ELBO): X.XX`` (target: at most 2.0).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import vaerepair as vr


class HandWrittenFisher(nn.Module):
    """784-400-20 Gaussian VAE and its Fisher loss in plain PyTorch (MATH.md §1.2 closed forms)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40))
        self.decoder = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

    def loss(self, x_in: Tensor, x: Tensor) -> Tensor:
        x_in = x_in.detach().requires_grad_(True)
        mu, raw = self.encoder(x_in).chunk(2, dim=1)
        scale = nn.functional.softplus(raw) + 1e-4
        eps = torch.randn_like(mu)
        z = mu + scale * eps
        s_qx = torch.autograd.grad((mu, scale), x_in, (eps / scale, (eps.square() - 1) / scale),
                                   create_graph=True)[0]
        mean = torch.sigmoid(self.decoder(z))
        residual = x.flatten(1) - mean  # (x - f) / sigma^2 with sigma = 1
        s_lik = torch.autograd.grad(mean, z, residual, create_graph=True)[0]
        fisher_z = 0.5 * (-eps / scale - s_lik + z).square().sum(1)
        per_image = fisher_z + 0.5 * s_qx.square().flatten(1).sum(1) + 0.5 * residual.square().sum(1) - 784.0
        return per_image.mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = vr.load("fashion-mnist", "train")[: args.batch].float_images().to(device)
    x_in = vr.GaussianNoise(0.25)(x, generator=torch.Generator(device).manual_seed(0))

    steps: dict[str, Callable[[], Tensor]] = {}

    def library_step(objective: vr.objectives.Objective) -> Callable[[], Tensor]:
        torch.manual_seed(0)
        model = vr.variational_autoencoder(latent_dim=20, hidden=(400,), likelihood="gaussian", link="sigmoid")
        model.to(device)
        params = list(model.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-3)

        def step() -> Tensor:
            loss = objective(model, x_in, x).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimizer.step()
            return loss

        return step

    def hand_written_step() -> Callable[[], Tensor]:
        torch.manual_seed(0)
        model = HandWrittenFisher().to(device)
        params = list(model.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-3)

        def step() -> Tensor:
            loss = model.loss(x_in, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimizer.step()
            return loss

        return step

    steps["ELBO"] = library_step(vr.ELBO())
    steps["Fisher"] = library_step(vr.FisherDivergence())
    steps["Fisher autograd"] = library_step(vr.FisherDivergence(closed_form=False))
    steps["hand-written Fisher"] = hand_written_step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for step in steps.values():  # warm-up
        for _ in range(5):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(args.block):
                step()
            sync()
            times[name].append((time.perf_counter() - t0) / args.block)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"batch {args.batch}, {args.threads} threads, {args.device}; median of {args.repeats} blocks "
          f"of {args.block} steps")
    for name, t in med.items():
        print(f"{name:>20}: {t * 1e3:7.2f} ms/step  ({t / med['ELBO']:.2f} x ELBO)")
    print(f"time ratio (Fisher / hand-written Fisher): {med['Fisher'] / med['hand-written Fisher']:.2f}")
    print(f"time ratio (Fisher autograd / ELBO): {med['Fisher autograd'] / med['ELBO']:.2f}")
    print(f"time ratio (Fisher / ELBO): {med['Fisher'] / med['ELBO']:.2f}")


if __name__ == "__main__":
    main()
