"""Corruptions: shapes, masks, per-image randomness, reproducibility, statistics, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vaerepair import corruptions as C

ALL = [
    lambda: C.GaussianNoise(0.3),
    lambda: C.GaussianNoise((0.1, 0.5), clip=True),
    lambda: C.SaltAndPepper(0.2),
    lambda: C.BlockErasure(size=7),
    lambda: C.BlockErasure(area=0.25, value=1.0),
    lambda: C.RandomMask(0.4),
    lambda: C.RandomMask(0.4, patch_size=4),
    lambda: C.PixelInversion(),
    lambda: C.PixelInversion(0.3),
    lambda: C.Compose([C.GaussianNoise(0.1), C.BlockErasure(size=5)]),
    lambda: C.OneOf([C.GaussianNoise(0.2), C.RandomMask(0.5), C.PixelInversion()]),
]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (3, 3, 32, 32)])
def test_shape_dtype_device_and_mask(make, shape):
    x = torch.rand(shape)
    out = make()(x, return_mask=True)
    assert out.images.shape == x.shape and out.images.dtype == x.dtype and out.images.device == x.device
    assert out.mask.shape == x.shape and out.mask.dtype == torch.bool
    # Pixels outside the mask are untouched.
    assert torch.equal(out.images[~out.mask], x[~out.mask])


@pytest.mark.parametrize("make", ALL)
def test_generator_reproducible_and_input_untouched(make):
    x = torch.rand(5, 1, 28, 28)
    x0 = x.clone()
    c = make()
    a = c(x, generator=torch.Generator().manual_seed(7))
    b = c(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(x, x0)


@pytest.mark.parametrize("make", [m for i, m in enumerate(ALL) if i != 7])  # whole-image inversion is not random
def test_each_image_draws_its_own_randomness(make):
    x = torch.full((4, 1, 28, 28), 0.3)  # not 0.5, which inversion maps to itself
    out = make()(x, generator=torch.Generator().manual_seed(3), return_mask=True)
    diffs = [(out.images[0] - out.images[i]).abs().sum().item() for i in range(1, 4)]
    assert all(d > 0 for d in diffs), "identical images got identical corruption"


def test_gaussian_noise_statistics_unclipped():
    x = torch.full((64, 1, 28, 28), 0.5, dtype=torch.float64)
    y = C.GaussianNoise(0.5)(x, generator=torch.Generator().manual_seed(0))
    noise = y - x
    assert abs(noise.mean().item()) < 0.01
    assert abs(noise.std().item() - 0.5) < 0.01
    assert y.min() < 0 and y.max() > 1  # unclipped by default


def test_gaussian_noise_clip_and_sigma_range():
    x = torch.rand(256, 1, 8, 8)
    y = C.GaussianNoise((0.0, 0.4), clip=True)(x)
    assert y.min() >= 0 and y.max() <= 1
    per_image = (y - x).flatten(1).std(dim=1)
    assert per_image.min() < 0.1 and per_image.max() > 0.3  # sigmas differ per image


def test_salt_and_pepper_fraction_and_values():
    x = torch.full((32, 3, 28, 28), 0.5)
    out = C.SaltAndPepper(0.2, salt_ratio=0.75)(x, generator=torch.Generator().manual_seed(0), return_mask=True)
    frac = out.mask[:, 0].float().mean().item()
    assert abs(frac - 0.2) < 0.01
    hit = out.images[out.mask]
    assert set(hit.unique().tolist()) <= {0.0, 1.0}
    assert abs(hit.mean().item() - 0.75) < 0.02
    # A location is corrupted in all channels together.
    assert torch.equal(out.mask[:, 0], out.mask[:, 1]) and torch.equal(out.mask[:, 0], out.mask[:, 2])


@pytest.mark.parametrize("size", [1, 5, 28])
def test_block_erasure_is_one_square_inside(size):
    x = torch.rand(50, 1, 28, 28) * 0.5 + 0.25
    out = C.BlockErasure(size=size, value=0.0)(x, generator=torch.Generator().manual_seed(1), return_mask=True)
    m = out.mask[:, 0]
    assert (m.sum(dim=(1, 2)) == size * size).all()
    rows, cols = m.any(dim=2), m.any(dim=1)
    assert (rows.sum(1) == size).all() and (cols.sum(1) == size).all()  # a square, contiguous
    assert (out.images[out.mask] == 0).all()
    if size < 28:
        tops = rows.float().argmax(dim=1)
        assert len(tops.unique()) > 5  # positions vary per image


def test_block_erasure_positions_cover_every_offset():
    x = torch.rand(2000, 1, 10, 10)
    m = C.BlockErasure(size=4)(x, generator=torch.Generator().manual_seed(0), return_mask=True).mask[:, 0]
    tops = m.any(dim=2).float().argmax(dim=1)
    counts = torch.bincount(tops, minlength=7)
    assert counts.shape[0] == 7 and (counts > 200).all()  # 7 offsets, roughly uniform


def test_block_area_gives_side():
    assert C.BlockErasure(area=0.25).side(28, 28) == 14
    assert C.BlockErasure(area=1.0).side(32, 32) == 32
    with pytest.raises(ValueError, match="does not fit"):
        C.BlockErasure(size=40)(torch.rand(1, 1, 28, 28))


def test_random_mask_patches_and_fraction():
    x = torch.rand(64, 1, 28, 28)
    out = C.RandomMask(0.3, patch_size=4)(x, generator=torch.Generator().manual_seed(0), return_mask=True)
    m = out.mask[:, 0].float()
    cells = m.unfold(1, 4, 4).unfold(2, 4, 4)  # (B, 7, 7, 4, 4)
    assert (cells.amin(dim=(-1, -2)) == cells.amax(dim=(-1, -2))).all()  # patches all-or-nothing
    assert abs(m.mean().item() - 0.3) < 0.03


def test_pixel_inversion():
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(C.PixelInversion()(x), 1 - x)
    out = C.PixelInversion(0.5)(x, return_mask=True)
    assert torch.allclose(out.images[out.mask], 1 - x[out.mask])


def test_compose_applies_in_order_and_unions_masks():
    x = torch.rand(8, 1, 28, 28)
    c = C.Compose([C.PixelInversion(), C.BlockErasure(size=6, value=0.0)])
    out = c(x, return_mask=True)
    assert out.mask.all()  # inversion touches everything
    erased = out.images == 0
    assert (erased.sum(dim=(1, 2, 3)) >= 36).all()  # the block was applied after the inversion


def test_one_of_picks_one_member_per_image_with_weights():
    x = torch.rand(400, 1, 8, 8) * 0.5 + 0.25
    c = C.OneOf([C.PixelInversion(), C.BlockErasure(size=8, value=0.0)], weights=[3, 1])
    y = c(x, generator=torch.Generator().manual_seed(0))
    inverted = torch.isclose(y, 1 - x).flatten(1).all(dim=1)
    erased = (y == 0).flatten(1).all(dim=1)
    assert (inverted ^ erased).all()
    assert abs(inverted.float().mean().item() - 0.75) < 0.07


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: C.GaussianNoise(-0.1), "sigma must be finite and >= 0"),
        (lambda: C.GaussianNoise((0.5, 0.1)), "low <= high"),
        (lambda: C.SaltAndPepper(1.5), r"amount must be in \[0, 1\]"),
        (lambda: C.BlockErasure(), "exactly one of size"),
        (lambda: C.BlockErasure(size=3, area=0.1), "exactly one of size"),
        (lambda: C.BlockErasure(size=0), "size must be an integer >= 1"),
        (lambda: C.BlockErasure(area=0.0), "area must be in"),
        (lambda: C.RandomMask(0.5, patch_size=0), "patch_size must be"),
        (lambda: C.RandomMask(0.5, value=2.0), r"value must be in \[0, 1\]"),
        (lambda: C.Compose([]), "at least one"),
        (lambda: C.OneOf([C.PixelInversion()], weights=[1, 2]), "one entry per corruption"),
    ],
)
def test_bad_arguments_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\), got \(28, 28\)"):
        C.GaussianNoise(0.1)(torch.rand(28, 28))
    with pytest.raises(TypeError, match="x.float\\(\\) / 255"):
        C.GaussianNoise(0.1)(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="Corruption"):
        C.Compose([lambda x: x])  # type: ignore[list-item]


def test_from_spec():
    assert isinstance(C.from_spec("gaussian:0.5"), C.GaussianNoise)
    assert C.from_spec("block:12").size == 12
    assert C.from_spec("block:0.25").area == 0.25
    assert C.from_spec("mask:0.5:4").patch_size == 4
    assert C.from_spec("invert").amount == 1.0
    assert isinstance(C.from_spec("gaussian:0.25+block:10"), C.Compose)
    with pytest.raises(ValueError, match="unknown corruption 'blur'.*known: gaussian"):
        C.from_spec("blur:3")
    with pytest.raises(ValueError, match="not a number"):
        C.from_spec("gaussian:abc")


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 5),
    c=st.sampled_from([1, 3]),
    h=st.integers(4, 20),
    w=st.integers(4, 20),
    which=st.integers(0, len(ALL) - 1),
)
def test_any_shape(b, c, h, w, which):
    c_ = ALL[which]()
    if isinstance(c_, C.BlockErasure) and c_.size is not None and c_.size > min(h, w):
        return
    if isinstance(c_, C.RandomMask) and 1 < c_.patch_size >= max(h, w):
        return  # one cell covering the whole image is refused by design (test_random_mask_* covers it)
    if isinstance(c_, C.Compose):
        return  # holds a 5-pixel block; covered above
    x = torch.rand(b, c, h, w)
    out = c_(x, return_mask=True)
    assert out.images.shape == x.shape and out.mask.shape == x.shape
    assert math.isfinite(out.images.sum().item())


def test_module_apply_still_works_on_models_holding_corruptions():
    """``nn.Module.apply`` (recursive init) must not be shadowed by the corruption API."""
    holder = torch.nn.Sequential(torch.nn.Linear(2, 2), C.Compose([C.GaussianNoise(0.1)]))
    seen = []
    holder.apply(lambda m: seen.append(type(m).__name__))
    assert "GaussianNoise" in seen and "Linear" in seen


def test_quantize_is_what_saving_an_8_bit_file_does() -> None:
    """Oracle: the PNG round trip through PIL (clip, round to 8 bits, read back)."""
    import io

    import numpy as np
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    noisy = torch.rand(1, 1, 16, 16, generator=g) + 0.5 * torch.randn(1, 1, 16, 16, generator=g)
    buffer = io.BytesIO()
    Image.fromarray((noisy[0, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    from_file = torch.from_numpy(np.array(Image.open(io.BytesIO(buffer.getvalue())))).float() / 255
    assert torch.equal(C.Quantize().transform(noisy, {}).images[0, 0], from_file)
    assert C.from_spec("quantize:16").levels == 16
    assert set((C.Quantize(4).transform(noisy, {}).images * 3).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    with pytest.raises(ValueError, match="LEVELS must be a whole number >= 2"):
        C.from_spec("quantize:1.5")


def test_a_bar_in_a_spec_is_one_of_several_choices_per_image() -> None:
    c = C.from_spec("gaussian:0.5|gaussian:0.5+quantize")
    assert isinstance(c, C.OneOf) and c.probabilities == [0.5, 0.5]
    assert isinstance(c.corruptions[1], C.Compose) and isinstance(c.corruptions[1].corruptions[1], C.Quantize)
    out = c(torch.full((64, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(0))
    on_grid = ((out * 255).round() == out * 255).flatten(1).all(dim=1)  # the quantised images
    assert 10 < int(on_grid.sum()) < 54
    with pytest.raises(ValueError, match="an empty choice"):
        C.from_spec("gaussian:0.5|")


def test_inside_the_training_step_gaussian_noise_is_its_draws_its_arithmetic_and_a_view() -> None:
    """What a training step pays for a corruption. With validation off (the Trainer's step) no value of the
    images is read, and the all-True mask of a corruption that touches every pixel is a view of one True
    stored per device, not a new tensor filled for every batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from vaerepair.distributions import validation

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    noise, x, g = C.GaussianNoise(0.5), torch.rand(4, 1, 6, 6), torch.Generator().manual_seed(0)
    noise(x, generator=g)  # the first call of a shape makes its mask
    with validation(False), Ops() as ops:
        y = noise(x, generator=g)
    assert ops.names == ["full", "randn", "addcmul", "expand"]
    with Ops() as ops:  # validation on (a direct call): one read of the pixels' range checks them
        noise(x, generator=g)
    assert ops.names[-4:] == ["full", "randn", "addcmul", "expand"] and len(ops.names) > 4
    assert y.shape == x.shape


def test_the_stored_true_of_full_masks_survives_inference_mode_and_callers_that_write_to_a_mask() -> None:
    """The all-True mask is a view of one stored True per device: made under inference mode it is still a
    plain tensor, it works in a graph, and a caller who writes through one mask does not change the next."""
    x = torch.rand(2, 1, 5, 7)
    with torch.inference_mode():  # the first mask on this device may come from an inference
        first = C.GaussianNoise(0.1)(x, return_mask=True).mask
    assert first.dtype == torch.bool and first.shape == x.shape and bool(first.all())
    assert not first.is_inference()
    w = torch.rand(2, 1, 5, 7, requires_grad=True)
    torch.where(first, w, torch.zeros_like(w)).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    first[0, 0, 0, 0] = False  # a caller ignores "read-only": every position of its mask shows it
    assert not bool(first.any())
    after = C.PoissonGaussian(10.0, 0.1)(torch.rand(3, 1, 4, 4), return_mask=True).mask
    assert after.shape == (3, 1, 4, 4) and bool(after.all())
