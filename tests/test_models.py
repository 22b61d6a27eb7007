"""The latent-variable model: composition checks, encode/decode/reconstruct, specs."""

from __future__ import annotations

import pytest
import torch

import vaerepair as vr
from vaerepair import distributions as D
from vaerepair import models, nets
from vaerepair.models import ModelSpec, build
from vaerepair.training.state import spec_differences


def test_reconstruct_shapes_and_range():
    model = models.autoencoder(arch="conv", latent_dim=8, hidden=(8, 16), features=32)
    x = torch.rand(3, 1, 28, 28)
    r = model.reconstruct(x)
    assert r.shape == x.shape and (r >= 0).all() and (r <= 1).all()  # Bernoulli mean


def test_decode_handles_sample_dimension():
    model = models.autoencoder(latent_dim=5, hidden=(32,))
    z = torch.randn(4, 3, 5)
    lik = model.decode(z)
    assert lik.mean.shape == (4, 3, 1, 28, 28)
    torch.testing.assert_close(lik.mean[1], model.decode(z[1]).mean)


def test_repair_restores_training_mode_and_uses_no_grad():
    model = models.autoencoder(latent_dim=4, hidden=(16,)).train()
    out = model.repair(torch.rand(5, 1, 28, 28), batch_size=2)
    assert out.shape == (5, 1, 28, 28) and not out.requires_grad and model.training


def test_composition_errors_name_the_mismatch():
    with pytest.raises(ValueError, match="gives 400 features but the posterior expects in_features=300"):
        models.LatentVariableModel(nets.MLPEncoder(), D.PointMassPosterior(300, 20), nets.MLPDecoder(20), D.Bernoulli())
    with pytest.raises(ValueError, match="latent_dim=20 but the decoder takes latent_dim=8"):
        models.LatentVariableModel(nets.MLPEncoder(), D.PointMassPosterior(400, 20), nets.MLPDecoder(8), D.Bernoulli())
    model = models.autoencoder()
    with pytest.raises(ValueError, match="not conditional"):
        model.encode(torch.rand(1, 1, 28, 28), condition=torch.zeros(1, 10))
    with pytest.raises(ValueError, match=r"1 channel\(s\)"):
        model.reconstruct(torch.rand(1, 3, 28, 28))


def test_spec_round_trip_rebuilds_the_same_architecture():
    model = models.autoencoder(image_shape=(3, 32, 32), arch="conv", latent_dim=12, likelihood="gaussian",
                               sigma=0.2, link="sigmoid", hidden=(8, 16), features=24)
    rebuilt = models.build(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt.reconstruct(x), model.reconstruct(x))
    with pytest.raises(ValueError, match="unknown fields"):
        models.ModelSpec.from_dict({**model.spec, "depth": 3})
    with pytest.raises(ValueError, match="unknown arch 'resnet'"):
        models.ModelSpec(arch="resnet")


def test_repair_of_an_empty_batch():
    model = models.autoencoder(latent_dim=4, hidden=(16,))
    assert model.repair(torch.rand(0, 1, 28, 28)).shape == (0, 1, 28, 28)


@pytest.mark.parametrize("shape, cells", [((1, 28, 28), 49), ((3, 32, 32), 64)])
def test_spatial_conv_autoencoder_keeps_a_latent_map(shape, cells):
    model = models.autoencoder(image_shape=shape, arch="conv", latent_dim=4 * cells, spatial=True, hidden=(8, 16))
    x = torch.rand(3, *shape)
    z = model.encode(x).mean
    assert z.shape == (3, 4 * cells)
    assert model.reconstruct(x).shape == x.shape
    # Locality: a code cell only moves the output near its position (fully convolutional).
    z2 = z.clone()
    z2.view(3, 4, *[int(cells**0.5)] * 2)[:, :, 0, 0] += 5.0
    diff = (model.decode(z2).mean - model.decode(z).mean).abs()[:, :, -8:, -8:]
    assert diff.max() == 0
    rebuilt = models.build(model.spec)
    assert rebuilt.spec["spatial"] is True
    with pytest.raises(ValueError, match=f"multiple of {cells}"):
        models.autoencoder(image_shape=shape, arch="conv", latent_dim=4 * cells + 1, spatial=True)
    with pytest.raises(ValueError, match="spatial=True needs arch='conv'"):
        models.autoencoder(arch="mlp", spatial=True)


def test_continuous_bernoulli_configuration():
    model = models.variational_autoencoder(latent_dim=3, hidden=(16,), likelihood="continuous-bernoulli")
    assert isinstance(model.likelihood, D.ContinuousBernoulli)
    r = model.reconstruct(torch.rand(2, 1, 28, 28))
    assert ((r > 0) & (r < 1)).all()


def test_sample_draws_from_the_prior_and_decodes():
    model = models.variational_autoencoder(latent_dim=3, hidden=(16,))
    a = model.sample(5, generator=torch.Generator().manual_seed(0))
    b = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, 1, 28, 28) and torch.equal(a, b) and ((a >= 0) & (a <= 1)).all()
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, model.decode(z).mean)
    with pytest.raises(ValueError, match="sampling needs a prior"):
        models.autoencoder().sample(2)


def test_the_flow_count_is_n_flows_everywhere_and_the_old_spelling_still_reads() -> None:
    """flow_vae(n_flows=) and PlanarFlowPosterior(n_flows=) but ModelSpec(flows=): one name now."""
    import warnings

    from vaerepair.models import ModelSpec
    from vaerepair.training.state import spec_differences

    assert vr.flow_vae(3, latent_dim=4, hidden=(16,)).spec["n_flows"] == 3
    with pytest.warns(DeprecationWarning, match="use ModelSpec\\(n_flows=...\\)"):
        old = ModelSpec(kind="vae", flows=2)
    assert old.n_flows == 2 and "flows" not in old.to_dict()
    written_before = {**ModelSpec(kind="vae", n_flows=2).to_dict()}
    written_before["flows"] = written_before.pop("n_flows")  # a checkpoint of an earlier version
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading an old checkpoint is not the user's doing: no warning
        assert ModelSpec.from_dict(written_before).n_flows == 2
        assert vr.models.build(written_before).spec["n_flows"] == 2
    assert spec_differences(written_before, ModelSpec(kind="vae", n_flows=2).to_dict()) == []
    assert spec_differences(written_before, ModelSpec(kind="vae", n_flows=3).to_dict()) == [
        "n_flows=2 in the checkpoint, 3 in this model"]


def test_each_model_kind_has_its_own_spec_with_the_likelihood_nested() -> None:
    from vaerepair.models import SPECS, AutoencoderSpec, LadderSpec, LikelihoodSpec, VAESpec

    assert SPECS == {"ae": AutoencoderSpec, "dae": AutoencoderSpec, "vae": VAESpec, "ladder": LadderSpec}
    vae = VAESpec(latent_dim=4, hidden=(16,), likelihood=LikelihoodSpec("gaussian", sigma=0.2), n_flows=2)
    model = build(vae)
    assert model.spec == vae.to_dict() and model.spec["likelihood"] == {
        "name": "gaussian", "sigma": 0.2, "gain": 0.0, "link": "identity", "learn_sigma": False}
    assert VAESpec.from_dict(model.spec) == vae and build(model.spec).spec == model.spec
    assert not hasattr(vae, "spatial") and not hasattr(AutoencoderSpec(), "n_flows")  # only the kind's own fields
    ae = AutoencoderSpec(kind="ae", arch="conv", hidden=(8, 16), latent_dim=98, spatial=True)
    assert build(ae).spec["spatial"] is True
    # the factories and the flat ModelSpec give the same model as the kind's spec
    flat = ModelSpec(kind="vae", latent_dim=4, hidden=(16,), likelihood="gaussian", sigma=0.2, n_flows=2)
    assert flat.kind_spec() == vae and build(flat).spec == model.spec
    assert ModelSpec.from_dict(model.spec) == flat  # model.spec reads back as the flat spec too
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        LikelihoodSpec("laplace")
    with pytest.raises(ValueError, match="unknown link"):
        LikelihoodSpec("gaussian", link="exp")
    with pytest.raises(ValueError, match="a VAESpec has kind 'vae', got 'dae'"):
        VAESpec(kind="dae")
    with pytest.raises(ValueError, match="the conv arch needs hidden=\\(C1, C2\\)"):
        AutoencoderSpec(arch="conv", hidden=(8,))  # refused by the spec, before anything is built
    with pytest.raises(ValueError, match="repair_samples=3 needs kind='vae'"):
        ModelSpec(kind="dae", repair_samples=3)


def test_specs_written_flat_before_the_kinds_had_their_own_still_build_the_same_models() -> None:
    from vaerepair.models import LadderSpec, LikelihoodSpec, VAESpec

    flat_vae = {"kind": "vae", "image_shape": [1, 28, 28], "latent_dim": 4, "arch": "mlp", "hidden": [16],
                "features": 256, "likelihood": "gaussian", "sigma": 0.2, "gain": 0.0, "link": "identity",
                "learn_sigma": False, "norm": None, "activation": "relu", "spatial": False, "condition": None,
                "n_classes": 10, "condition_features": 256, "flows": 2, "amortized": True, "repair_samples": 0}
    spec = VAESpec.from_dict(flat_vae)
    assert spec.n_flows == 2 and spec.likelihood == LikelihoodSpec("gaussian", sigma=0.2)
    torch.manual_seed(0)
    old = build(flat_vae)
    torch.manual_seed(0)
    new = build(spec)
    for (name, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="spatial=True does not apply to kind 'vae'"):
        VAESpec.from_dict({**flat_vae, "spatial": True})
    with pytest.raises(ValueError, match="n_flows=2 does not apply to kind 'dae'"):
        build({**flat_vae, "kind": "dae"})
    flat_ladder = {"kind": "ladder", "channels": 1, "widths": [4, 4], "latent_channels": [2, 2], "blocks": 1,
                   "likelihood": "gaussian", "sigma": 0.3, "gain": 0.0, "link": "identity", "activation": "silu",
                   "repair_samples": 4, "full_resolution": False}
    ladder = LadderSpec.from_dict(flat_ladder)
    assert ladder.likelihood.sigma == 0.3 and build(flat_ladder).likelihood.sigma == 0.3
    assert spec_differences(flat_ladder, ladder.to_dict()) == []
    assert spec_differences(flat_vae, spec.to_dict()) == []


def test_a_residual_model_whose_network_outputs_zero_returns_its_input_exactly() -> None:
    """A residual (noise-predicting) point-mass model, as DnCNN: the repair is the input minus the network's
    output; the objectives train it unchanged."""
    model = vr.autoencoder(arch="unet", image_shape=(1, None, None), hidden=(8, 16), latent_dim=8,
                           likelihood="gaussian", sigma=0.1, residual=True)
    assert model.residual and build(model.spec).residual
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(2, 1, 19, 23)
    assert torch.equal(model.repair(x), x)  # f = 0: the input itself
    torch.nn.init.normal_(last.weight, std=0.1)
    q = model.encode(x)
    f = model.decoder(q.mean)
    torch.testing.assert_close(model.reconstruct(x), x - f)  # otherwise x - f(x)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    for objective in (vr.Reconstruction(), vr.objectives.SURE(0.1), vr.objectives.BlindSpot()):
        result = objective(model, noisy, x if isinstance(objective, vr.Reconstruction) else noisy)
        result.loss.backward()
        assert torch.isfinite(result.loss) and last.weight.grad is not None
        model.zero_grad()
    with pytest.raises(ValueError, match="residual=True is a point-mass model's"):
        ModelSpec(kind="vae", residual=True)
    with pytest.raises(ValueError, match="needs a Gaussian or Poisson-Gaussian likelihood"):
        vr.autoencoder(residual=True)  # Bernoulli
    with pytest.raises(ValueError, match="pass residual_of=x"):
        model.decode(q.mean)
