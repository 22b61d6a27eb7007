"""Sensor noise (Poisson, Poisson-Gaussian) and the noise-level syntax of corruption specs."""

from __future__ import annotations

import pytest
import torch

from vaerepair import corruptions as C


def test_poisson_gaussian_has_the_model_mean_and_variance() -> None:
    x = torch.full((40, 1, 64, 64), 0.3, dtype=torch.float64)
    x[20:] = 0.8
    gain, sigma = 0.01, 0.02
    y = C.PoissonGaussian(gain, sigma)(x, generator=torch.Generator().manual_seed(0))
    for part, level in ((slice(0, 20), 0.3), (slice(20, 40), 0.8)):
        values = y[part].flatten()
        assert float(values.mean()) == pytest.approx(level, abs=4 * (gain * level / len(values)) ** 0.5 + 1e-4)
        assert float(values.var()) == pytest.approx(gain * level + sigma**2, rel=0.03)  # 81,920 draws each


def test_poisson_alone_gives_whole_photon_counts() -> None:
    x = torch.rand(4, 3, 16, 16)
    y = C.Poisson(0.05)(x, generator=torch.Generator().manual_seed(1))
    counts = y / 0.05
    torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-4)
    assert float((y - x).abs().mean()) > 0.01


def test_per_image_gain_ranges_and_reproducibility() -> None:
    x = torch.full((64, 1, 32, 32), 0.5)
    noise = C.PoissonGaussian((0.001, 0.05), (0.0, 0.01))
    a = noise(x, generator=torch.Generator().manual_seed(3))
    b = noise(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, noise(x, generator=torch.Generator().manual_seed(4)))
    per_image = a.flatten(1).var(dim=1)  # a * 0.5 + sigma^2, each image its own
    assert float(per_image.min()) < 0.001 * 0.5 + 0.01**2 + 0.002 and float(per_image.max()) > 0.02
    assert float(per_image.max()) < 0.05 * 0.5 + 0.01**2 + 0.005


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="gain must be finite and > 0"):
        C.Poisson(0.0)
    with pytest.raises(ValueError, match="sigma range must have low <= high"):
        C.PoissonGaussian(0.01, (0.2, 0.1))


@pytest.mark.parametrize(("spec", "kind", "values"), [
    ("gaussian:0-55/255", C.GaussianNoise, {"sigma": (0.0, 55 / 255)}),
    ("gaussian:25/255", C.GaussianNoise, {"sigma": (25 / 255, 25 / 255)}),
    ("gaussian:0.5", C.GaussianNoise, {"sigma": (0.5, 0.5)}),
    ("gaussian:1e-3", C.GaussianNoise, {"sigma": (1e-3, 1e-3)}),
    ("poisson:0.01", C.Poisson, {"gain": (0.01, 0.01)}),
    ("poisson:0.002-0.02", C.Poisson, {"gain": (0.002, 0.02)}),
    ("poissongaussian:0.01:2/255", C.PoissonGaussian, {"gain": (0.01, 0.01), "sigma": (2 / 255, 2 / 255)}),
])
def test_specs_with_levels_ranges_and_divisors(spec: str, kind: type, values: dict) -> None:
    built = C.from_spec(spec)
    assert type(built) is kind
    for name, expected in values.items():
        assert getattr(built, name) == pytest.approx(expected)


@pytest.mark.parametrize(("spec", "message"), [
    ("gaussian:5-", "is not a number"),
    ("gaussian:1/0", "divides by zero"),
    ("gaussian:0.3-0.1", "low <= high"),
    ("poissongaussian:0.01", "use poissongaussian:GAIN:SIGMA"),
])
def test_bad_specs_name_the_fix(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        C.from_spec(spec)
