"""Writes the checkpoints of this folder with vaerepair at commit eeac904 (before the latent path).

Run from a checkout of eeac904: PYTHONPATH=src python write.py OUT; tests/test_ladder.py loads them.
"""

import sys

import torch

import vaerepair as vr

out = sys.argv[1]
torch.manual_seed(0)
data = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
expected = {}
for name, model in [
    ("vae", vr.variational_autoencoder((1, 8, 8), latent_dim=2, hidden=(8,))),
    ("flow", vr.flow_vae(2, (1, 8, 8), latent_dim=2, hidden=(8,))),
    ("noise", vr.noise_model_vae(sigma=0.3, widths=(4, 8), latent_channels=2, repair_samples=3)),
]:
    trainer = vr.Trainer(model, vr.ELBO(), None if name == "noise" else vr.GaussianNoise(0.2), epochs=1,
                         batch_size=8, progress=False, checkpoint_dir=f"{out}/{name}")
    trainer.fit(vr.data.NoisyImages(data) if name == "noise" else data)
    expected[name] = vr.load_model(f"{out}/{name}/last.pt").repair(x, n_samples=0)
torch.save({"x": x, **expected}, f"{out}/expected.pt")
