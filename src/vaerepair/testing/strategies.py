"""Hypothesis strategies for image batches, latents, corruptions and small models (needs ``hypothesis``).

>>> from hypothesis import given
>>> from vaerepair.testing import strategies as vst
>>> @given(vst.image_batches(channels=(1, 3)))
... def test_my_corruption(x): ...
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st
from torch import Tensor

from vaerepair import corruptions as corr
from vaerepair.testing.models import ARCHS, LIKELIHOODS, POSTERIORS, ExchangeableModel, small_model

__all__ = ["image_batches", "latent_batches", "corruptions", "corruption_specs", "small_models"]


@st.composite
def image_batches(
    draw: st.DrawFn,
    batch_sizes: Sequence[int] = (1, 2, 3, 5),
    channels: Sequence[int] = (1, 3),
    sizes: Sequence[int] = (4, 8, 12),
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    value_range: tuple[float, float] = (0.0, 1.0),
    binary: bool | None = None,
) -> Tensor:
    """Image batches ``(B, C, H, W)``: uniform values in ``value_range`` (or 0/1 values when ``binary``;
    ``None``: either), square sides from ``sizes``, reproducible from the drawn seed."""
    b, c = draw(st.sampled_from(list(batch_sizes))), draw(st.sampled_from(list(channels)))
    side, dtype = draw(st.sampled_from(list(sizes))), draw(st.sampled_from(list(dtypes)))
    seed = draw(st.integers(0, 2**31 - 1))
    is_binary = draw(st.booleans()) if binary is None else binary
    g = torch.Generator().manual_seed(seed)
    lo, hi = value_range
    if is_binary:
        x = (torch.rand(b, c, side, side, generator=g, dtype=torch.float64) > 0.5).to(torch.float64)
        return (lo + (hi - lo) * x).to(dtype)
    return (lo + (hi - lo) * torch.rand(b, c, side, side, generator=g, dtype=torch.float64)).to(dtype)


@st.composite
def latent_batches(
    draw: st.DrawFn, batch_sizes: Sequence[int] = (1, 2, 3, 5), dims: Sequence[int] = (1, 2, 3, 8),
    scale: float = 3.0, dtypes: Sequence[torch.dtype] = (torch.float64,),
) -> Tensor:
    """Latent batches ``(B, D)``: Gaussian values times ``scale`` (reaching the tails)."""
    b, d = draw(st.sampled_from(list(batch_sizes))), draw(st.sampled_from(list(dims)))
    dtype, seed = draw(st.sampled_from(list(dtypes))), draw(st.integers(0, 2**31 - 1))
    z = scale * torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return z.to(dtype)


def corruption_specs() -> st.SearchStrategy[str]:
    """CLI corruption specs (``"gaussian:0.3"``, ``"block:3"``, ``"mask:0.2:2"``, compositions with ``+``)."""
    unit = st.floats(0.01, 0.99).map(lambda v: round(v, 3))
    single = st.one_of(
        unit.map(lambda s: f"gaussian:{s}"),
        unit.map(lambda a: f"saltpepper:{a}"),
        st.integers(1, 4).map(lambda s: f"block:{s}"),
        st.floats(0.05, 0.5).map(lambda a: f"block:{round(a, 3)}"),
        st.tuples(unit, st.sampled_from([1, 2])).map(lambda t: f"mask:{t[0]}:{t[1]}"),
        unit.map(lambda a: f"invert:{a}"),
    )
    return st.one_of(single, st.tuples(single, single).map("+".join))


def corruptions() -> st.SearchStrategy[corr.Corruption]:
    """Corruption instances built from :func:`corruption_specs` (images of side >= 4)."""
    return corruption_specs().map(corr.from_spec)


def small_models(
    archs: Sequence[str] = ARCHS, posteriors: Sequence[str] = POSTERIORS, likelihoods: Sequence[str] = LIKELIHOODS,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
) -> st.SearchStrategy[ExchangeableModel]:
    """Tiny VAEs (:func:`~vaerepair.testing.small_model`): MLP or conv, Gaussian or planar-flow posterior,
    Bernoulli or Gaussian likelihood, on ``(1, 8, 8)`` images, with a drawn initialisation seed."""
    return st.builds(
        lambda a, p, lk, dtype, seed: small_model(a, p, lk, dtype=dtype, seed=seed),
        st.sampled_from(list(archs)), st.sampled_from(list(posteriors)), st.sampled_from(list(likelihoods)),
        st.sampled_from(list(dtypes)), st.integers(0, 2**16),
    )
