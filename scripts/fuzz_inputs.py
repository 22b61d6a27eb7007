"""Fuzz the public API and the command line with bad inputs (hypothesis) and count how each is answered.

    PYTHONPATH=src python scripts/fuzz_inputs.py [--examples 400] [--out fuzz.json] [--photos] [--ladder]

Every case is an input that is wrong by construction (a NaN or negative size, a
probability of 1.5, a NaN pixel, a 3-d batch, an impossible patch, a seed of
2**70, an --out that is a file...). Each answer is classified:

- ``clear``: an exception raised by vaerepair's own code (ValueError, TypeError
  or one of its error classes) with a message; on the command line exit code 1
  or 2 with an ``error:`` line and no traceback;
- ``warned``: accepted with a warning that says what is wrong;
- ``deep``: an exception from inside torch/numpy/argparse internals, or any
  other exception type, or a command-line traceback;
- ``silent``: accepted without a word (a bad result or a run on nonsense);
- ``hang``: no answer within the time limit.

Run it from a checkout (``PYTHONPATH=src``) to measure that checkout: the
before/after figures of the hardening issue come from running it on an old
commit's tree and on the current one. Only API that exists in both is used.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import tempfile
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaerepair as vr
from vaerepair import corruptions as corr
from vaerepair.sweep import beta_range

NAN, INF = float("nan"), float("inf")
BAD_COUNTS = [0, -1, -7, 1.5, NAN, INF, "3", None, True]
BAD_SCALES = [-1.0, -1e-9, NAN, INF, -INF, "0.5", None]
BAD_POSITIVE = [0.0, *BAD_SCALES]
BAD_PROBABILITIES = [-0.1, 1.5, NAN, INF, "0.5", None]


def _images(kind: str) -> Any:
    x = torch.rand(4, 1, 28, 28)
    if kind == "nan pixel":
        x[2, 0, 3, 3] = NAN
    elif kind == "inf pixel":
        x[1, 0, 0, 0] = INF
    elif kind == "3-d":
        x = x[0]
    elif kind == "int64":
        x = (x * 255).long()
    elif kind == "3 channels":
        x = torch.rand(4, 3, 28, 28)
    elif kind == "list":
        x = x.tolist()
    return x


BAD_IMAGES = ["nan pixel", "inf pixel", "3-d", "int64", "3 channels", "list"]
BAD_FOR_ANY_MODEL = [kind for kind in BAD_IMAGES if kind != "3 channels"]  # colour is fine where no model is


def _model() -> Any:
    torch.manual_seed(0)
    return vr.autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))


def _noise_level_repair(value: Any) -> Any:
    """A non-blind U-Net's repair of two images told ``value`` as their noise levels."""
    model = vr.models.build(vr.models.ModelSpec(kind="dae", image_shape=(1, None, None), arch="unet", hidden=(4, 8),
                                                latent_dim=2, likelihood="gaussian", condition="noise_level"))
    return model.repair(torch.rand(2, 1, 16, 16), value)


def _fit_nan(kind: str) -> Any:
    trainer = vr.Trainer(_model(), vr.Reconstruction(), vr.GaussianNoise(0.1), epochs=1, batch_size=4,
                         device="cpu", progress=False)
    good = torch.rand(8, 1, 28, 28)
    bad = _images(kind)
    return trainer.fit(bad, good) if kind != "val nan" else trainer.fit(good, _images("nan pixel"))


API: dict[str, tuple[str, list[Any], Callable[[Any], Any]]] = {
    # name: (area, bad values, call)
    "GaussianNoise(sigma)": ("corruptions", BAD_SCALES, lambda v: corr.GaussianNoise(v)),
    "SaltAndPepper(amount)": ("corruptions", BAD_PROBABILITIES, lambda v: corr.SaltAndPepper(v)),
    "BlockErasure(size)": ("corruptions", BAD_COUNTS, lambda v: corr.BlockErasure(size=v)),
    "RandomMask(p)": ("corruptions", BAD_PROBABILITIES, lambda v: corr.RandomMask(v)),
    "RandomMask(patch_size)": ("corruptions", [*BAD_COUNTS, 10**5],
                               lambda v: corr.RandomMask(0.5, patch_size=v)(torch.rand(2, 1, 28, 28))),
    "PixelInversion(p)": ("corruptions", BAD_PROBABILITIES, lambda v: corr.PixelInversion(v)),
    "OneOf(weights)": ("corruptions", [INF, NAN, -1.0, "1"],
                       lambda v: corr.OneOf([corr.GaussianNoise(0.1), corr.SaltAndPepper(0.1)], weights=[v, 1.0])),
    "GaussianNoise()(images)": ("corruptions", BAD_FOR_ANY_MODEL, lambda v: corr.GaussianNoise(0.1)(_images(v))),
    "BlockErasure()(images)": ("corruptions", BAD_FOR_ANY_MODEL, lambda v: corr.BlockErasure(size=5)(_images(v))),
    "psnr(data_range)": ("metrics", BAD_POSITIVE,
                         lambda v: vr.psnr(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), data_range=v)),
    "psnr(images)": ("metrics", BAD_IMAGES, lambda v: vr.psnr(_images(v), torch.rand(4, 1, 28, 28))),
    "ssim(images)": ("metrics", BAD_IMAGES, lambda v: vr.ssim(_images(v), torch.rand(4, 1, 28, 28))),
    "autoencoder(latent_dim)": ("models", BAD_COUNTS, lambda v: vr.autoencoder(latent_dim=v)),
    "autoencoder(hidden)": ("models", BAD_COUNTS, lambda v: vr.autoencoder(hidden=(v,))),
    "repair(batch_size)": ("models", BAD_COUNTS, lambda v: _model().repair(torch.rand(3, 1, 28, 28), batch_size=v)),
    "repair(images)": ("models", BAD_IMAGES, lambda v: _model().repair(_images(v))),
    "repair(noise level)": ("models", [torch.tensor([0.1]), torch.tensor([25, 25]), torch.tensor([-0.1, 0.1]),
                                       torch.tensor([NAN, 0.1]), torch.tensor([25.0, 25.0]), torch.zeros(2, 2),
                                       0.1, "0.1", None], _noise_level_repair),
    "ELBO(beta)": ("objectives", [-1.0, NAN, INF, "1", None], lambda v: vr.ELBO(beta=v)),
    "ELBO(n_samples)": ("objectives", BAD_COUNTS, lambda v: vr.ELBO(n_samples=v)),
    "IWAE(k)": ("objectives", BAD_COUNTS, lambda v: vr.objectives.IWAE(k=v)),
    "negative_log_likelihood(likelihood)": ("objectives", [None, "bernoulli", 3.0, torch.rand(2, 1, 4, 4)],
                                            lambda v: vr.distributions.negative_log_likelihood(
                                                v, torch.rand(2, 1, 4, 4))),
    "negative_log_likelihood(x)": ("objectives", [None, "images", [[0.5]], torch.rand(2, 1, 5, 4),
                                                  torch.full((2, 1, 4, 4), NAN), torch.full((2, 1, 4, 4), 2.0)],
                                   lambda v: vr.distributions.negative_log_likelihood(
                                       vr.distributions.Bernoulli()(torch.zeros(2, 1, 4, 4)), v)),
    "Trainer(epochs)": ("trainer", BAD_COUNTS, lambda v: vr.Trainer(_model(), vr.Reconstruction(), epochs=v)),
    "Trainer(batch_size)": ("trainer", BAD_COUNTS,
                            lambda v: vr.Trainer(_model(), vr.Reconstruction(), batch_size=v)),
    "Trainer(lr)": ("trainer", BAD_POSITIVE, lambda v: vr.Trainer(_model(), vr.Reconstruction(), lr=v)),
    "Trainer.fit(data)": ("trainer", ["nan pixel", "inf pixel", "3-d", "val nan"], _fit_nan),
    "train_val_split(val_fraction)": ("data", [0.0, 1.0, *BAD_PROBABILITIES],
                                      lambda v: vr.train_val_split(vr.ImageDataset(
                                          torch.zeros(10, 1, 4, 4, dtype=torch.uint8)), v)),
    "ImageDataset(images)": ("data", BAD_IMAGES, lambda v: vr.ImageDataset(_images(v))),
    "load(name)": ("data", ["imagenet", "", None, 3], lambda v: vr.load(v, "train")),
    "load(split)": ("data", ["validation", "", None], lambda v: vr.load("fashion-mnist", v)),
    "from_spec(text)": ("corruptions", ["", "gaussian", "gaussian:", "gaussian:0.1:0.2", "block:0", "block:-3",
                                        "mask:2", "mask:0.5:0", "invert:-1", "saltpepper:nan", "none:1", ":",
                                        None, 0.5], lambda v: corr.from_spec(v)),
    "beta_range(text)": ("trainer", ["", "1:2", "1:2:0", "1:2:-1", "2:1:0.5", "nan:1:0.1", "a,b", "1,,2"],
                         lambda v: beta_range(v)),
    "Trainer(nan_policy)": ("trainer", ["ignore", "", None, 1],
                            lambda v: vr.Trainer(_model(), vr.Reconstruction(), nan_policy=v)),
    "Trainer(device)": ("trainer", ["tpu", "cuda:99", "", None, 3],
                        lambda v: vr.Trainer(_model(), vr.Reconstruction(), device=v).fit(torch.rand(8, 1, 28, 28))),
    "FisherDivergence(n_samples)": ("objectives", BAD_COUNTS, lambda v: vr.FisherDivergence(n_samples=v)),
    "PlanarFlowPosterior(n_flows)": ("models", [-1, 1.5, NAN, "2", None, True],
                                     lambda v: vr.flows.PlanarFlowPosterior(16, 4, n_flows=v)),
    "load_checkpoint(path)": ("models", ["missing.pt", "FILE", "DIR"],
                              lambda v: vr.load_checkpoint(_WORKDIR[0] / v)),
}
_WORKDIR: list[Path] = []  # set by main(): a folder holding FILE (a text file) and DIR (a folder)


def _ladder() -> Any:
    torch.manual_seed(0)
    return vr.ladder_vae(widths=(4, 4), latent_channels=2, sigma=0.3, repair_samples=2)


def _latents(kind: str) -> Any:
    model, x = _ladder(), torch.rand(2, 1, 8, 8)
    path = model.path(x, n_samples=3)
    given = {"too few": [path.levels[0].z], "too many": [*path.latents, None], "wrong shape": [
        torch.zeros(3, 2, 5, 5), None], "nan": [path.levels[0].z * NAN, None], "not a list": 3}[kind]
    return model.path(x, n_samples=3, latents=given)


def _inpainter() -> Any:
    torch.manual_seed(0)
    return vr.ladder_vae(widths=(4, 4), latent_channels=2, sigma=0.3, repair_samples=2, condition="image")


def _conditions(kind: str) -> Any:
    """A conditional ladder's repair with one kind of bad condition."""
    model, x = _inpainter(), torch.rand(2, 1, 8, 8)
    good = model.condition.prepare(x, x > 0.5)
    c = {"none": None, "one channel": x, "wrong size": good[..., :4], "wrong rows": good[:1],
         "nan": good * NAN, "int": good.long(), "vector": torch.rand(2, 3), "list": [good]}[kind]
    return model.repair(x, c, n_samples=2)


def _mask_coverage(kind: str) -> Any:
    draws, target = torch.rand(5, 2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    mask = {"float": torch.ones(2, 1, 4, 4), "shape": torch.ones(2, 1, 4, 5, dtype=torch.bool),
            "empty": torch.zeros(2, 1, 4, 4, dtype=torch.bool), "list": [[True]]}[kind]
    return vr.metrics.interval_coverage(draws, target, mask=mask)


def _draws(kind: str) -> Any:
    return {"4-d": torch.rand(4, 1, 8, 8), "1 sample": torch.rand(1, 4, 1, 8, 8),
            "nan": torch.full((5, 4, 1, 8, 8), NAN), "shape": torch.rand(5, 4, 1, 8, 9)}[kind]


# the latent path and the ladder VAE (newer trees only: --ladder)
LADDER_API: dict[str, tuple[str, list[Any], Callable[[Any], Any]]] = {
    "ladder_vae(widths)": ("ladder", [(), (0,), (-1, 4), (1.5,), ("4",), None, 8, "32"],
                           lambda v: vr.ladder_vae(widths=v)),
    "ladder_vae(latent_channels)": ("ladder", [*BAD_COUNTS, (2,), (2, 2, 2, 2)],
                                    lambda v: vr.ladder_vae(widths=(4, 4, 4), latent_channels=v)),
    "ladder_vae(sigma)": ("ladder", BAD_POSITIVE, lambda v: vr.ladder_vae(sigma=v)),
    "ladder_vae(blocks)": ("ladder", [-1, 1.5, NAN, "2", None], lambda v: vr.ladder_vae(blocks=v)),
    "ladder_vae(likelihood)": ("ladder", ["laplace", "", None, 3], lambda v: vr.ladder_vae(likelihood=v)),
    "LadderSpec.from_dict(junk)": ("ladder", [{"kind": "vae"}, {"hidden": [3]}, {"widths": "abc"},
                                              {"full_resolution": "yes"}, {"channels": 0}],
                                   lambda v: vr.models.LadderSpec.from_dict(v)),
    "ladder.repair(images)": ("ladder", BAD_IMAGES, lambda v: _ladder().repair(_images(v))),
    "ladder.repair(n_samples)": ("ladder", [-1, 1.5, NAN, "3", 1],
                                 lambda v: _ladder().repair(torch.rand(2, 1, 8, 8), n_samples=v, return_std=True)),
    "ladder.sample(n)": ("ladder", BAD_COUNTS, lambda v: _ladder().sample(v, size=(8, 8))),
    "ladder.sample(size)": ("ladder", [None, (0, 8), (-4, 8), (8,), "8x8"], lambda v: _ladder().sample(2, size=v)),
    "ladder.path(latents)": ("ladder", ["too few", "too many", "wrong shape", "nan", "not a list"], _latents),
    "ladder.path(condition)": ("ladder", ["a tensor"],
                               lambda v: _ladder().path(torch.rand(2, 1, 8, 8), torch.rand(2, 3))),
    "ELBO(free_bits)": ("ladder", BAD_SCALES, lambda v: vr.ELBO(free_bits=v)),
    "FisherDivergence(ladder)": ("ladder", ["ladder"], lambda v: vr.FisherDivergence()(_ladder(), torch.rand(
        2, 1, 8, 8), torch.rand(2, 1, 8, 8))),
    "interval_coverage(samples)": ("ladder", ["4-d", "1 sample", "nan", "shape"],
                                   lambda v: vr.metrics.interval_coverage(_draws(v), torch.rand(4, 1, 8, 8))),
    "interval_coverage(level)": ("ladder", [0.0, 1.0, 1.5, -0.5, NAN, "0.9"], lambda v: vr.metrics.interval_coverage(
        torch.rand(5, 2, 1, 4, 4), torch.rand(2, 1, 4, 4), level=v)),
    "interval_coverage(mask)": ("ladder", ["float", "shape", "empty", "list"], _mask_coverage),
    "LikelihoodSpec(junk)": ("ladder", [{"name": "laplace"}, {"sigma": -1}, {"sigma": NAN}, {"link": "exp"},
                                        {"learn_sigma": "yes"}, {"gain": -0.1}],
                             lambda v: vr.models.LikelihoodSpec(**v)),
    "VAESpec.from_dict(junk)": ("ladder", [{"kind": "dae"}, {"spatial": True}, {"likelihood": {"name": "x"}},
                                           {"likelihood": 3}, {"n_flows": -1}, {"depth": 2}, "not a dict"],
                                lambda v: vr.models.VAESpec.from_dict(v if isinstance(v, str) else
                                                                      {"kind": "vae", **v})),
    "autoencoder(residual)": ("ladder", ["bernoulli", "sigmoid link", "a string"], lambda v: vr.autoencoder(
        residual=v == "a string" and "yes" or True, likelihood="gaussian" if v != "bernoulli" else "bernoulli",
        link="sigmoid" if v == "sigmoid link" else "identity")),
    "ladder_vae(condition)": ("ladder", ["label", "mask", "", 3, True], lambda v: vr.ladder_vae(condition=v)),
    "ladder_vae(flows)": ("ladder", [-1, 1.5, NAN, "2", None], lambda v: vr.ladder_vae(flows=v)),
    "inpainter.repair(condition)": ("ladder", ["none", "one channel", "wrong size", "wrong rows", "nan", "int",
                                               "vector", "list"], _conditions),
    "inpainter.sample(condition)": ("ladder", [None, "2 rows for 3", "vector"], lambda v: _inpainter().sample(
        3, {None: None, "2 rows for 3": torch.rand(2, 2, 8, 8), "vector": torch.rand(3, 2)}[v])),
    "Reconstruction(inpainter)": ("ladder", ["pairs"], lambda v: vr.Reconstruction()(
        _inpainter(), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 2, 8, 8))),
}

def _objective_call(objective: Any, kind: str) -> Any:
    """``objective(model, x_input, x_target)`` on one kind of bad batch (the objectives' own boundary)."""
    torch.manual_seed(0)
    vae = vr.variational_autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))
    x = torch.rand(4, 1, 28, 28)
    x_in, x_target = {"nan pixel": (_images("nan pixel"), x), "inf target": (x, _images("inf pixel")),
                      "empty batch": (x[:0], x[:0]), "float16": (x.half(), x.half()),
                      "bfloat16": (x.bfloat16(), x.bfloat16()), "None target": (x, None),
                      "shapes differ": (x, x[:, :, :20, :20]), "3-d": (x[0], x[0]),
                      "batch sizes differ": (x, x[:3])}[kind]
    return objective(vae, x_in, x_target)


BAD_BATCHES = ["nan pixel", "inf target", "empty batch", "float16", "bfloat16", "None target", "shapes differ",
               "3-d", "batch sizes differ"]


def _checkpoint(kind: str) -> Any:
    """A real checkpoint edited in one field, then loaded and resumed from."""
    path = _WORKDIR[0] / "trained" / "last.pt"
    data = torch.load(path, weights_only=True)
    edited = _WORKDIR[0] / f"edited-{kind.replace(' ', '-')}.pt"
    if kind == "spec a list":
        data["model_spec"] = [1, 2]
    elif kind == "weights missing":
        del data["model"]
    elif kind == "weights a list":
        data["model"] = [1, 2]
    elif kind == "history a list":
        data["history"] = [1]
    elif kind == "trainer field missing":
        del data["trainer"]["global_step"]
    elif kind == "garbage rng":
        data["rng"] = {"torch": torch.zeros(3, dtype=torch.uint8)} if "rng" in data else data
    torch.save(data, edited)
    if kind == "map_location":
        return vr.load_checkpoint(path, map_location="tpu:7")
    model = vr.load_model(edited)
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.5), epochs=1, batch_size=32,
                         device="cpu", progress=False)
    return trainer.fit(torch.rand(64, 1, 28, 28), resume=edited)


def _trainer_case(kind: str) -> Any:
    model, other = _model(), _model()
    x = torch.rand(16, 1, 28, 28)
    make = lambda **kw: vr.Trainer(kw.pop("model", model), kw.pop("objective", vr.Reconstruction()),  # noqa: E731
                                   kw.pop("corruption", vr.GaussianNoise(0.1)), epochs=1, batch_size=8,
                                   device="cpu", progress=False, **kw)
    if kind == "optimizer of another model":
        return make(optimizer=torch.optim.SGD(other.parameters(), lr=0.1)).fit(x)
    if kind == "loss without grad":
        def detached(m: Any, a: Any, b: Any, c: Any = None) -> Any:
            r = vr.Reconstruction()(m, a, b, c)
            return vr.objectives.ObjectiveResult(r.loss.detach(), r.terms)
        return make(objective=detached).fit(x)
    if kind == "metadata not plain":
        return make(metadata={"fn": print}, checkpoint_dir=_WORKDIR[0] / "meta").fit(x)
    if kind == "seed 2**70":
        return make(seed=2**70).fit(x)
    if kind == "evaluate corruption 0.5":
        return make().evaluate(x, corruption=0.5)  # a spec string is accepted; a bare number is not
    if kind == "corruption bad spec":
        return make(corruption="gauss:0.5")
    if kind == "plain nn.Module":
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 784), torch.nn.Unflatten(1, (1, 28, 28)))
        return make(model=net).fit(x, x[:4])
    if kind == "worse than input":
        return make(lr=1e6).fit(x, x[:8])
    raise AssertionError(kind)


BAD_TRAINER = ["optimizer of another model", "loss without grad", "metadata not plain", "seed 2**70",
               "evaluate corruption 0.5", "corruption bad spec", "plain nn.Module", "worse than input"]
BAD_RANGE = ["0-255 floats", "negative"]  # clean images for a corruption: [0, 1] exactly
BAD_SCALE = ["0-255 floats", "-255..0"]  # repairs and metrics take noisy images too: only another scale is wrong


def _ranged(kind: str) -> Any:
    x = torch.rand(4, 1, 28, 28)
    return {"0-255 floats": x * 255, "negative": x - 0.5, "-255..0": -255 * x}[kind]


# the objective boundary, corruptions' range, the Trainer, checkpoints and small checks (--craft)
CRAFT_API: dict[str, tuple[str, list[Any], Callable[[Any], Any]]] = {
    "Reconstruction()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.Reconstruction(), v)),
    "ELBO()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.ELBO(), v)),
    "IWAE()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.objectives.IWAE(k=2), v)),
    "FisherDivergence()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.FisherDivergence(), v)),
    "SURE()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.objectives.SURE(0.1), v)),
    "BlindSpot()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.objectives.BlindSpot(), v)),
    "Noise2Noise()(batch)": ("objectives", BAD_BATCHES, lambda v: _objective_call(vr.objectives.Noise2Noise(), v)),
    "GaussianNoise()(range)": ("corruptions", BAD_RANGE, lambda v: corr.GaussianNoise(0.1)(_ranged(v))),
    "BlockErasure()(range)": ("corruptions", BAD_RANGE, lambda v: corr.BlockErasure(size=5)(_ranged(v))),
    "RandomMask()(range)": ("corruptions", BAD_RANGE, lambda v: corr.RandomMask(0.5)(_ranged(v))),
    "PixelInversion()(range)": ("corruptions", BAD_RANGE, lambda v: corr.PixelInversion(0.5)(_ranged(v))),
    "SaltAndPepper()(range)": ("corruptions", BAD_RANGE, lambda v: corr.SaltAndPepper(0.1)(_ranged(v))),
    "corruption(generator)": ("corruptions", [0, "seed", 1.5, torch.zeros(2)],
                              lambda v: corr.GaussianNoise(0.1)(torch.rand(2, 1, 8, 8), generator=v)),
    "GaussianNoise(sigma > 1)": ("corruptions", [25.0, 255.0], lambda v: corr.GaussianNoise(v)(torch.rand(2, 1, 8, 8))),
    "repair(range)": ("models", BAD_SCALE, lambda v: _model().repair(_ranged(v))),
    "reconstruct(range)": ("models", BAD_SCALE, lambda v: _model().reconstruct(_ranged(v))),
    "psnr(range)": ("metrics", BAD_SCALE, lambda v: vr.psnr(_ranged(v), torch.rand(4, 1, 28, 28))),
    "psnr(mask)": ("metrics", ["float mask", "int mask"], lambda v: vr.psnr(
        torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8),
        mask=torch.ones(2, 1, 8, 8) if v == "float mask" else torch.ones(2, 1, 8, 8, dtype=torch.long))),
    "ssim(sigma)": ("metrics", [0.0, -1.0, NAN, INF, "1.5"], lambda v: vr.ssim(
        torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), sigma=v)),
    "ssim(data_range)": ("metrics", [0.0, -1.0, NAN], lambda v: vr.ssim(
        torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), data_range=v)),
    "ssim(empty batch)": ("metrics", ["empty"], lambda v: vr.ssim(torch.rand(0, 1, 16, 16), torch.rand(0, 1, 16, 16))),
    "psnr(empty batch)": ("metrics", ["empty"], lambda v: vr.psnr(torch.rand(0, 1, 16, 16), torch.rand(0, 1, 16, 16))),
    "ImageDataset(labels)": ("data", ["floats", "nan", "strings", "2-d", "too few"], lambda v: vr.ImageDataset(
        torch.zeros(4, 1, 4, 4, dtype=torch.uint8),
        {"floats": torch.tensor([0.5, 1.0, 2.0, 3.0]), "nan": torch.tensor([0.0, NAN, 1.0, 2.0]),
         "strings": ["a", "b", "c", "d"], "2-d": torch.zeros(4, 2, dtype=torch.long),
         "too few": torch.zeros(3, dtype=torch.long)}[v])),
    "train_val_split(types)": ("data", ["dataset a list", "seed a string", "seed 1.5", "fraction a string"],
                               lambda v: vr.train_val_split(
                                   [1, 2, 3] if v == "dataset a list" else vr.ImageDataset(
                                       torch.zeros(10, 1, 4, 4, dtype=torch.uint8)),
                                   "0.2" if v == "fraction a string" else 0.2,
                                   seed={"seed a string": "0", "seed 1.5": 1.5}.get(v, 0))),
    "load(root)": ("data", [3, 1.5, ["/tmp"]], lambda v: vr.load("fashion-mnist", "test", root=v)),
    "model.sample(n)": ("models", [-1, 1.5, "3", NAN, None], lambda v: vr.variational_autoencoder(
        (1, 28, 28), latent_dim=4, hidden=(16,)).sample(v)),
    "iwae_nll(chunk)": ("objectives", [0, -1, 1.5], lambda v: vr.iwae_nll(vr.variational_autoencoder(
        (1, 28, 28), latent_dim=4, hidden=(16,)), torch.rand(2, 1, 28, 28), k=4, chunk=v)),
    "iwae_nll(batch_size)": ("objectives", [0, -1, 1.5], lambda v: vr.iwae_nll(vr.variational_autoencoder(
        (1, 28, 28), latent_dim=4, hidden=(16,)), torch.rand(2, 1, 28, 28), k=4, batch_size=v)),
    "Trainer(misuse)": ("trainer", BAD_TRAINER, _trainer_case),
    "checkpoint(edited)": ("checkpoints", ["spec a list", "weights missing", "weights a list", "history a list",
                                          "trainer field missing", "garbage rng", "map_location"], _checkpoint),
}

_LADDER_TRAIN = ["--model", "ladder", "--hidden", "4,4", "--latent-dim", "2", "--likelihood", "gaussian",
                 "--sigma", "0.3", "--limit", "32", "--epochs", "1", "--eval-n", "8", "--no-progress"]
LADDER_CLI: dict[str, list[list[str]]] = {
    "train --model ladder": [[*_LADDER_TRAIN, "--arch", "conv", "--out", "DIR/l1"],
                             [*_LADDER_TRAIN, "--free-bits", "-1", "--out", "DIR/l2"],
                             [*_LADDER_TRAIN, "--free-bits", "nan", "--out", "DIR/l3"],
                             [*_LADDER_TRAIN, "--condition", "label", "--out", "DIR/l4"],
                             [*_LADDER_TRAIN, "--flows", "-2", "--out", "DIR/l5"],
                             [*_LADDER_TRAIN, "--global-flows", "--flows", "2", "--out", "DIR/l5b"],
                             [*_LADDER_TRAIN, "--objective", "fisher", "--out", "DIR/l6"],
                             [*_LADDER_TRAIN, "--hidden", "0", "--out", "DIR/l7"]],
    "denoise --samples": [["IMAGE", "-c", "LADDER", "-o", "out.png", "--samples", "-1"],
                          ["IMAGE", "-c", "LADDER", "-o", "out.png", "--samples", "1.5"],
                          ["IMAGE", "-c", "LADDER", "-o", "out.png", "--samples", "1", "--std-out", "std.png"],
                          ["IMAGE", "IMAGE2", "-c", "LADDER", "-o", "DIR", "--samples", "4", "--std-out", "std.png"],
                          ["IMAGE", "-c", "LADDER", "-o", "out.png", "--samples", "4", "--std-out", "DIR"],
                          ["IMAGE", "-c", "CHECKPOINT", "-o", "out.png", "--samples", "4", "--std-out", "std.png"]],
    "evaluate --samples": [["--checkpoint", "LADDER", "--samples", "-1"], ["--checkpoint", "LADDER", "--iwae-k", "0"]],
}

_BASE = ["--limit", "64", "--epochs", "1", "--batch-size", "32", "--hidden", "16", "--latent-dim", "4",
         "--eval-n", "32", "--iwae-k", "2", "--no-progress"]
CLI_BAD: dict[str, list[str]] = {
    "--epochs": ["0", "-1", "abc", "1.5"], "--batch-size": ["0", "-1"], "--lr": ["0", "-1", "nan", "inf"],
    "--limit": ["0", "-1"], "--eval-n": ["0", "-1"], "--iwae-k": ["0", "-1"], "--latent-dim": ["0", "-1"],
    "--hidden": ["0", "-3", "abc"], "--threads": ["0", "-1"], "--seed": ["-1", str(2**70)],
    "--val-fraction": ["0", "1", "-0.5", "nan"], "--beta": ["-1", "nan"], "--patience": ["0", "-1"],
    "--checkpoint-every": ["0", "-1"],
    "--corruption": ["block:inf", "block:nan", "mask:0.5:inf", "gaussian:-1", "gaussian:nan", "bogus",
                     "mask:0.5:100000", "saltpepper:1.5"],
    "--out": ["FILE", "FILE/under"],
}
SWEEP_BAD = {"--betas": ["0:inf:1", "0:1:1e-300", "1:0:1", "a:b:c", "nan"]}
# evaluate, denoise and fetch (CHECKPOINT: a real one trained at the start; FILE a text file, DIR a folder)
OTHER_BAD: dict[str, list[list[str]]] = {
    "evaluate": [["--checkpoint", "CHECKPOINT", "--n", "-1"], ["--checkpoint", "CHECKPOINT", "--n", "0"],
                 ["--checkpoint", "CHECKPOINT", "--out", "DIR"], ["--checkpoint", "CHECKPOINT", "--iwae-k", "0"],
                 ["--checkpoint", "CHECKPOINT", "--corruption", "block:nan"], ["--checkpoint", "missing.pt"],
                 ["--checkpoint", "FILE"], ["--checkpoint", "DIR"],
                 ["--checkpoint", "CHECKPOINT", "--grid", "FILE/g.png"]],
    "denoise": [["IMAGE", "-c", "CHECKPOINT", "-o", "FILE/x.png"],
                ["missing.png", "-c", "CHECKPOINT", "-o", "out.png"],
                ["FILE", "-c", "CHECKPOINT", "-o", "out.png"], ["IMAGE", "-c", "FILE", "-o", "out.png"],
                ["IMAGE", "-c", "CHECKPOINT", "-o", "out.png", "--overlap", "-1"]],
    "fetch": [["fashion-mnist", "--root", "FILE"], ["imagenet"], ["fashion-mnist", "--root", "FILE/under"]],
}
# photographs (PHOTOS: a folder of three small grey PNGs; these commands exist only in newer trees)
_PHOTO = ["--data", "PHOTOS", "--arch", "unet", "--hidden", "8,16", "--epochs", "1", "--patches-per-epoch", "16",
          "--batch-size", "8", "--patch", "16", "--no-progress", "--out", "DIR/photo"]
PHOTO_BAD: dict[str, list[list[str]]] = {
    "train --data": [[*_PHOTO, "--patch", "0"], [*_PHOTO, "--patch", "4096"], [*_PHOTO, "--noise-sigma", "-1"],
                     [*_PHOTO, "--objective", "sure"], [*_PHOTO, "--objective", "noise2noise"],
                     [*_PHOTO, "--objective", "noise2noise", "--targets", "missing"],
                     [*_PHOTO, "--blind-spacing", "1", "--objective", "blindspot", "--corruption", "none"],
                     [*_PHOTO, "--arch", "mlp"], [*_PHOTO, "--val-data", "FILE"],
                     [*_PHOTO, "--noise-gain", "nan"], [*_PHOTO[:1], "missing", *_PHOTO[2:]],
                     [*_PHOTO[:1], "FILE", *_PHOTO[2:]], [*_PHOTO[:1], "DIR", *_PHOTO[2:]]],
    "evaluate --data": [["--data", "PHOTOS", "--model", "grey", "--sigma", "-5"],
                        ["--data", "PHOTOS", "--model", "nonexistent"], ["--data", "PHOTOS", "--model", "grey",
                                                                          "--tile", "0"],
                        ["--data", "DIR", "--model", "grey"], ["--data", "PHOTOS"]],
    "denoise --model": [["IMAGE", "-m", "grey", "-o", "out.png", "--tile", "0"],
                        ["IMAGE", "-m", "grey", "-o", "out.png", "--tile", "-8"],
                        ["IMAGE", "-m", "nonexistent", "-o", "out.png"], ["IMAGE", "-o", "out.png"],
                        ["IMAGE", "-m", "grey", "-c", "CHECKPOINT", "-o", "out.png"],
                        ["COLOUR", "-m", "grey", "-o", "out.png"], ["IMAGE", "-m", "colour", "-o", "out.png"]],
    "denoise --noise-sigma": [["IMAGE", "-m", "grey", "-o", "out.png", "--noise-sigma", "25"],
                              ["IMAGE", "-m", "grey-sigma", "-o", "out.png", "--noise-sigma", "-1"],
                              ["IMAGE", "-m", "grey-sigma", "-o", "out.png", "--noise-sigma", "nan"],
                              ["IMAGE", "-m", "grey-sigma", "-o", "out.png", "--noise-sigma", "300"],
                              ["IMAGE", "-m", "grey-sigma", "-o", "out.png", "--noise-sigma", "loud"],
                              ["COLOUR", "-m", "grey-sigma", "-o", "out.png"]],
    "denoise FOLDER": [["EMPTY", "-m", "grey", "-o", "DIR/folder_out"], ["PHOTOS", "-m", "grey", "-o", "FILE"],
                       ["PHOTOS", "PHOTOS", "-m", "grey", "-o", "DIR/twice"],
                       ["PHOTOS", "-m", "grey", "-o", "DIR/p", "--std-out", "std.png"],
                       ["PHOTOS", "missing", "-m", "grey", "-o", "DIR/m"]],
}


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def _classify_exception(err: BaseException) -> str:
    if isinstance(err, _Timeout):
        return "hang"
    frames = traceback.extract_tb(err.__traceback__)
    ours = bool(frames) and "vaerepair" in frames[-1].filename and "site-packages/torch" not in frames[-1].filename
    known = isinstance(err, (ValueError, TypeError)) or type(err).__module__.startswith("vaerepair")
    return "clear" if ours and known and str(err) else "deep"


def run_api(name: str, value: Any, seconds: int) -> str:
    _, _, call = API[name]
    signal.alarm(seconds)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call(value)
        return "warned" if any(issubclass(w.category, (RuntimeWarning, UserWarning)) for w in caught) else "silent"
    except BaseException as err:  # noqa: BLE001 - every answer is classified
        return _classify_exception(err)
    finally:
        signal.alarm(0)


def run_cli(argv: list[str], seconds: int) -> str:
    from vaerepair.cli import main

    err, out = io.StringIO(), io.StringIO()
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) \
                as caught:
            warnings.simplefilter("always")
            code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    except BaseException as error:  # noqa: BLE001
        return "hang" if isinstance(error, _Timeout) else "deep"
    finally:
        signal.alarm(0)
    text = err.getvalue()
    if code in (1, 2) and "error:" in text and "Traceback" not in text:
        return "clear"
    if code == 0:
        return "warned" if caught or "warning" in text.lower() else "silent"
    return "deep"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--seconds", type=int, default=60, help="time limit per case")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--photos", action="store_true",
                        help="also the photograph commands (train/evaluate --data, denoise --model): newer trees only")
    parser.add_argument("--craft", action="store_true",
                        help="also the objective boundary, image ranges, Trainer misuse, edited checkpoints "
                             "and small checks (issue 24)")
    parser.add_argument("--only-craft", action="store_true", help="only the --craft cases")
    parser.add_argument("--ladder", action="store_true",
                        help="also the latent path and the ladder VAE (API and CLI): newer trees only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    (workdir / "FILE").write_text("a file, not a folder")
    seen: dict[tuple[str, str, str], str] = {}

    if args.ladder:
        API.update(LADDER_API)
    if args.only_craft:
        API.clear()
    if args.craft or args.only_craft:
        API.update(CRAFT_API)
    api_cases = st.sampled_from(sorted(API)).flatmap(lambda n: st.tuples(st.just(n), st.sampled_from(API[n][1])))
    _WORKDIR.append(workdir)
    (workdir / "DIR").mkdir()
    checkpoint = workdir / "trained" / "best.pt"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        from vaerepair.cli import main as cli_main

        cli_main(["train", *_BASE, "--out", str(workdir / "trained")])
        if args.ladder:
            cli_main(["train", *_LADDER_TRAIN, "--out", str(workdir / "ladder")])
    image = workdir / "image.png"
    from torchvision.io import write_png

    write_png((torch.rand(1, 28, 28) * 255).to(torch.uint8), str(image))
    (workdir / "photos").mkdir()
    for i, (h, w) in enumerate([(40, 48), (36, 36), (52, 40)]):
        write_png((torch.rand(1, h, w) * 255).to(torch.uint8), str(workdir / "photos" / f"p{i}.png"))
    write_png((torch.rand(3, 28, 28) * 255).to(torch.uint8), str(workdir / "colour.png"))
    write_png((torch.rand(1, 30, 26) * 255).to(torch.uint8), str(workdir / "image2.png"))
    names = {"CHECKPOINT": str(checkpoint), "IMAGE": str(image), "PHOTOS": str(workdir / "photos"),
             "COLOUR": str(workdir / "colour.png"), "LADDER": str(workdir / "ladder" / "best.pt"),
             "IMAGE2": str(workdir / "image2.png"), "EMPTY": str(workdir / "empty")}
    (workdir / "empty").mkdir()

    def resolve(arg: str) -> str:
        if arg in names:
            return names[arg]
        if arg.split("/")[0] in ("FILE", "DIR", "missing.pt", "missing.png", "out.png", "missing", "std.png"):
            return str(workdir / arg)
        return arg

    other = {**OTHER_BAD, **(PHOTO_BAD if args.photos else {}), **(LADDER_CLI if args.ladder else {})}
    cli_cases = st.one_of(
        st.sampled_from(sorted(other)).flatmap(lambda c: st.tuples(st.just(c), st.just("args"),
                                                                    st.sampled_from(other[c]))),
        st.sampled_from(sorted(CLI_BAD)).flatmap(lambda o: st.tuples(st.just("train"), st.just(o),
                                                                      st.sampled_from(CLI_BAD[o]))),
        st.sampled_from(sorted(SWEEP_BAD)).flatmap(lambda o: st.tuples(st.just("sweep"), st.just(o),
                                                                        st.sampled_from(SWEEP_BAD[o]))))

    everything = api_cases.map(lambda c: ("api", *c))
    if not args.only_craft:
        everything = st.one_of(everything, cli_cases.map(lambda c: ("cli", *c)))

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(everything)
    def explore(case: tuple[Any, ...]) -> None:
        if case[0] == "api":
            _, name, value = case
            key = (API[name][0], name, repr(value))
            if key not in seen:
                seen[key] = run_api(name, value, args.seconds)
            return
        _, command, option, value = case
        if option == "args":
            key = ("cli", command, " ".join(value))
            if key not in seen:
                seen[key] = run_cli([command.split()[0], *(resolve(a) for a in value)], args.seconds)
            return
        key = ("cli", f"{command} {option}", value)
        if key in seen:
            return
        out = workdir / f"run{len(seen)}"
        if option == "--out":
            out = workdir / value
        argv = [command, *_BASE, "--out", str(out)]
        if command == "sweep":
            argv += ["--model", "vae", "--betas", value] if option == "--betas" else []
        if option != "--out" and option != "--betas":
            argv += [option, value]
        seen[key] = run_cli(argv, args.seconds)

    explore()
    areas = sorted({k[0] for k in seen})
    table = {area: dict(Counter(v for k, v in seen.items() if k[0] == area)) for area in areas}
    total = dict(Counter(seen.values()))
    print(f"{len(seen)} distinct bad inputs tried")
    print(f"{'area':14s}" + "".join(f"{c:>8s}" for c in ("tried", "clear", "warned", "deep", "silent", "hang")))
    for area in areas:
        row = table[area]
        print(f"{area:14s}{sum(row.values()):8d}" + "".join(f"{row.get(c, 0):8d}"
                                                          for c in ("clear", "warned", "deep", "silent", "hang")))
    print(f"{'all':14s}{len(seen):8d}" + "".join(f"{total.get(c, 0):8d}"
                                                   for c in ("clear", "warned", "deep", "silent", "hang")))
    for (area, name, value), verdict in sorted(seen.items()):
        if verdict not in ("clear", "warned"):
            print(f"  {verdict:6s} {area}: {name} = {value}")
    if args.out is not None:
        args.out.write_text(json.dumps({"tried": len(seen), "by_area": table, "total": total,
                                        "cases": [[*k, v] for k, v in sorted(seen.items())]}, indent=1))


if __name__ == "__main__":
    main()
