"""Batch sources: the in-memory source, the DataLoader source and the patch source."""

from __future__ import annotations

import pytest
import torch

import vaerepair as vr
from vaerepair.training import LoaderSource, PatchSource, TensorSource
from vaerepair.training.patches import dihedral_coordinates
from vaerepair.training.sources import SourceContext

IMAGES = (torch.rand(90, 1, 12, 12, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)


def _fit(train, epochs: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    model = vr.variational_autoencoder((1, 12, 12), latent_dim=3, hidden=(16,))
    vr.Trainer(model, vr.ELBO(), vr.GaussianNoise(0.2), epochs=epochs, batch_size=32, device="cpu",
               progress=False).fit(train)
    return model


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_source_trains_exactly_like_the_in_memory_source(workers: int) -> None:
    reference = _fit(vr.ImageDataset(IMAGES))
    loaded = _fit(LoaderSource(vr.ImageDataset(IMAGES), num_workers=workers))
    for a, b in zip(reference.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_loader_source_refuses_what_it_sets_itself() -> None:
    with pytest.raises(ValueError, match="batch_size is set by the source"):
        LoaderSource(vr.ImageDataset(IMAGES), batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        LoaderSource(vr.ImageDataset(IMAGES[:0]))


def _bind(source, batch_size: int = 16, seed: int = 0, image_shape=None):
    source.setup(SourceContext(torch.device("cpu"), torch.float32, batch_size, seed, None, image_shape=image_shape))
    return source


def _sized(n: int = 5, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = [(13, 29), (40, 17), (9, 9), (64, 48), (20, 21)][:n]
    return [torch.randint(0, 256, (2, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]


def _is_transformed_crop(patch: torch.Tensor, images: list[torch.Tensor]) -> bool:
    """Whether ``patch`` (C, P, P) is one of the 8 flips/rotations of some crop of some image."""
    p = patch.shape[-1]
    variants = [patch.rot90(k, (1, 2)) for k in range(4)]
    variants += [v.flip(2) for v in variants]
    for im in images:
        windows = im.unfold(1, p, 1).unfold(2, p, 1)  # (C, H-p+1, W-p+1, p, p)
        for v in variants:
            if (windows == v[:, None, None]).flatten(3).all(-1).all(0).any():
                return True
    return False


@pytest.mark.parametrize("augment", [False, True])
def test_patches_are_crops_of_the_images_and_reproducible(augment: bool) -> None:
    images = _sized()
    a, b = _bind(PatchSource(images, 8, augment=augment)), _bind(PatchSource(images, 8, augment=augment))
    x, y = a.draw(40), b.draw(40)
    assert x.shape == (40, 2, 8, 8) and x.dtype == torch.uint8 and torch.equal(x, y)
    assert all(_is_transformed_crop(patch, images) for patch in x)
    if not augment:  # without augmentation a patch is a crop as it stands
        windows = [im.unfold(1, 8, 1).unfold(2, 8, 1) for im in images]
        assert all(any((w == patch[:, None, None]).flatten(3).all(-1).all(0).any() for w in windows) for patch in x)
    other = _bind(PatchSource(images, 8, augment=augment), seed=1).draw(40)
    assert not torch.equal(x, other)


def test_dihedral_coordinates_are_the_eight_symmetries() -> None:
    patch = torch.arange(16).view(1, 4, 4)
    rows, cols = dihedral_coordinates(4, torch.arange(8))
    got = {tuple(patch[0][rows[t], cols[t]].flatten().tolist()) for t in range(8)}
    expected = {tuple(v.flatten().tolist()) for k in range(4) for v in (patch[0].rot90(k), patch[0].rot90(k).flip(1))}
    assert got == expected and len(got) == 8


def test_patch_positions_are_uniform_over_the_set() -> None:
    # a 2x2 patch has 81 positions in a 10x10 image and 9 in a 4x4 one: the small image gets 9 / 90 of them
    images = [torch.zeros(1, 10, 10, dtype=torch.uint8), torch.full((1, 4, 4), 255, dtype=torch.uint8)]
    patches = _bind(PatchSource(images, 2)).draw(20000)
    share = float((patches[:, 0, 0, 0] == 255).float().mean())
    assert share == pytest.approx(9 / 90, abs=0.01)


def test_patch_training_resumes_exactly_mid_epoch() -> None:
    images = _sized()
    first = _bind(PatchSource(images, 8, patches_per_epoch=100))
    batches = [b.target for b in first]
    assert len(batches) == 7 and sum(len(b) for b in batches) == 100  # 6 x 16 + 4
    again = _bind(PatchSource(images, 8, patches_per_epoch=100))
    iterator = iter(again)
    for _ in range(3):
        next(iterator)
    state = again.state_dict()
    resumed = _bind(PatchSource(images, 8, patches_per_epoch=100), seed=5)
    resumed.load_state_dict(state)
    rest = [b.target for b in resumed]
    assert len(rest) == 4 and all(torch.equal(a, b) for a, b in zip(batches[3:], rest, strict=True))


def test_patch_source_trains_a_model_on_images_of_many_sizes() -> None:
    torch.manual_seed(0)
    model = vr.autoencoder((2, 8, 8), latent_dim=8, hidden=(64,), likelihood="gaussian", sigma=0.1, link="sigmoid")
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.1), epochs=3, batch_size=32, device="cpu",
                         progress=False)
    history = trainer.fit(PatchSource(_sized(), 8, patches_per_epoch=256, augment=True))
    assert len(history) == 3 and history["train_loss"][-1] < history["train_loss"][0]


def test_patch_source_explains_bad_input() -> None:
    with pytest.raises(ValueError, match=r"image 2 of size 9x9 is smaller than the 10x10 patch"):
        PatchSource(_sized(), 10)
    with pytest.raises(ValueError, match="image 1 has 3 channels, image 0 has 2"):
        PatchSource([torch.zeros(2, 9, 9), torch.zeros(3, 9, 9)], 4)
    with pytest.raises(ValueError, match="the model takes images of shape"):
        _bind(PatchSource(_sized(), 8), image_shape=(2, 12, 12))


def test_tensor_source_drop_last() -> None:
    source = _bind(TensorSource(IMAGES, drop_last=True), batch_size=32)
    assert source.steps_per_epoch() == 2 and [len(b.target) for b in source] == [32, 32]
