"""Every built-in objective and component with the settings its contract checks run under.

The library's own test suite runs one parametrised contract test per kind over
these dictionaries; a test also checks that every public class appears here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from vaerepair import corruptions as corr
from vaerepair import distributions as dist
from vaerepair import objectives as obj
from vaerepair.flows import PlanarFlowPosterior
from vaerepair.nets import ConvDecoder, ConvEncoder, ConvHead, MLPDecoder, MLPEncoder, UNetEncoder
from vaerepair.testing.models import LIKELIHOODS

__all__ = [
    "ObjectiveEntry", "BUILTIN_OBJECTIVES", "BUILTIN_POSTERIORS", "BUILTIN_LIKELIHOODS", "BUILTIN_CORRUPTIONS",
    "BUILTIN_NETWORKS",
]


@dataclass(frozen=True)
class ObjectiveEntry:
    """An objective factory, the likelihoods it accepts, and the term that claims a lower bound on log p(x)."""

    make: Callable[[], Any]
    likelihoods: tuple[str, ...] = LIKELIHOODS
    bound: str | None = None
    target: str = "clean"  # what it trains on: "clean", "noisy" (self-supervised) or "pair" (two observations)
    ignore_params: tuple[str, ...] = ()  # parameters it does not train (squared errors leave a likelihood scale)


_SCALE = ("likelihood.",)  # squared-error objectives use the decoder's mean only

BUILTIN_OBJECTIVES: dict[str, ObjectiveEntry] = {
    "Reconstruction": ObjectiveEntry(obj.Reconstruction),
    "ELBO": ObjectiveEntry(obj.ELBO, bound="elbo"),
    "ELBO(beta=4)": ObjectiveEntry(lambda: obj.ELBO(beta=4.0), bound="elbo"),
    "ELBO(beta=warm-up)": ObjectiveEntry(lambda: obj.ELBO(beta=obj.LinearWarmup(10)), bound="elbo"),
    "ELBO(kl=mc, S=2)": ObjectiveEntry(lambda: obj.ELBO(kl="mc", n_samples=2), bound="elbo"),
    "IWAE(k=3)": ObjectiveEntry(lambda: obj.IWAE(k=3), bound="auto"),
    "FisherDivergence": ObjectiveEntry(obj.FisherDivergence, likelihoods=("gaussian",)),
    "FisherDivergence(closed_form)": ObjectiveEntry(lambda: obj.FisherDivergence(closed_form=True),
                                                    likelihoods=("gaussian",)),
    "FisherDivergence(autograd)": ObjectiveEntry(lambda: obj.FisherDivergence(closed_form=False),
                                                 likelihoods=("gaussian",)),
    "Noise2Noise": ObjectiveEntry(obj.Noise2Noise, target="pair", ignore_params=_SCALE),
    "BlindSpot": ObjectiveEntry(obj.BlindSpot, target="noisy", ignore_params=_SCALE),
    "BlindSpot(local-mean)": ObjectiveEntry(lambda: obj.BlindSpot(2, "local-mean", radius=1), target="noisy",
                                            ignore_params=_SCALE),
    "BlindSpot(median)": ObjectiveEntry(lambda: obj.BlindSpot(3, "median"), target="noisy", ignore_params=_SCALE),
    "SURE": ObjectiveEntry(lambda: obj.SURE(0.3), target="noisy", ignore_params=_SCALE),
    "SURE(autograd)": ObjectiveEntry(lambda: obj.SURE(0.3, divergence="autograd"), target="noisy",
                                     ignore_params=_SCALE),
}

# name -> (head factory, whether it has a density)
BUILTIN_POSTERIORS: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    "GaussianPosterior": (lambda: dist.GaussianPosterior(6, 3), True),
    "PointMassPosterior": (lambda: dist.PointMassPosterior(6, 3), False),
    "PlanarFlowPosterior(amortized)": (lambda: PlanarFlowPosterior(6, 3, n_flows=2, amortized=True), True),
    "PlanarFlowPosterior(global)": (lambda: PlanarFlowPosterior(6, 3, n_flows=2, amortized=False), True),
    "PlanarFlowPosterior(K=0)": (lambda: PlanarFlowPosterior(6, 3, n_flows=0), True),
}

BUILTIN_LIKELIHOODS: dict[str, Callable[[], nn.Module]] = {
    "Bernoulli": dist.Bernoulli,
    "ContinuousBernoulli": dist.ContinuousBernoulli,
    "Gaussian": lambda: dist.Gaussian(0.5),
    "Gaussian(sigmoid)": lambda: dist.Gaussian(0.5, link="sigmoid"),
    "Gaussian(learned)": lambda: dist.Gaussian(0.5, learn_sigma=True),
    "PoissonGaussianLikelihood": lambda: dist.PoissonGaussianLikelihood(0.05, 0.1, link="sigmoid"),
}

# name -> (factory, value range of the output, None: unbounded)
BUILTIN_CORRUPTIONS: dict[str, tuple[Callable[[], corr.Corruption], tuple[float, float] | None]] = {
    "GaussianNoise": (lambda: corr.GaussianNoise(0.2), None),
    "GaussianNoise(clip)": (lambda: corr.GaussianNoise((0.1, 0.3), clip=True), (0.0, 1.0)),
    "SaltAndPepper": (lambda: corr.SaltAndPepper(0.2), (0.0, 1.0)),
    "Quantize": (lambda: corr.Quantize(), (0.0, 1.0)),
    "GaussianNoise+Quantize (a saved 8-bit file)": (lambda: corr.from_spec("gaussian:0.3+quantize"), (0.0, 1.0)),
    "Poisson": (lambda: corr.Poisson((0.01, 0.05)), None),
    "PoissonGaussian": (lambda: corr.PoissonGaussian(0.02, (0.0, 0.05)), None),
    "PixelInversion": (lambda: corr.PixelInversion(0.5), (0.0, 1.0)),
    "BlockErasure": (lambda: corr.BlockErasure(size=3), (0.0, 1.0)),
    "RandomMask": (lambda: corr.RandomMask(0.3, patch_size=2), (0.0, 1.0)),
    "Compose": (lambda: corr.Compose([corr.GaussianNoise(0.1, clip=True), corr.BlockErasure(size=2)]), (0.0, 1.0)),
    "OneOf": (lambda: corr.OneOf([corr.SaltAndPepper(0.1), corr.RandomMask(0.2)]), (0.0, 1.0)),
}

# name -> (factory, input shape without the batch)
BUILTIN_NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "MLPEncoder": (lambda: MLPEncoder((1, 8, 8), (16,)), (1, 8, 8)),
    "MLPDecoder": (lambda: MLPDecoder(3, (1, 8, 8), (16,)), (3,)),
    "ConvEncoder": (lambda: ConvEncoder((3, 8, 8), (4, 8), out_features=16, norm="group"), (3, 8, 8)),
    "ConvDecoder": (lambda: ConvDecoder(3, (3, 8, 8), (8, 4), norm="group"), (3,)),
    "ConvDecoder(spatial)": (lambda: ConvDecoder(8, (1, 8, 8), (8, 4), spatial=True), (8,)),
    "UNetEncoder": (lambda: UNetEncoder(1, (4, 8), norm="group"), (1, 9, 7)),  # odd sizes: padded and cropped
    "ConvHead": (lambda: ConvHead(3, 3, hidden=4), (3, 9, 7)),
}
