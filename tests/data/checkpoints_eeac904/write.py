"""Writes checkpoints with vaerepair at commit eeac904 (before the latent path) for tests/test_ladder.py."""
import sys, torch, vaerepair as vr
out = sys.argv[1]
torch.manual_seed(0)
data = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
expected = {}
for name, model, objective in [
    ("vae", vr.variational_autoencoder((1, 8, 8), latent_dim=2, hidden=(8,)), vr.ELBO()),
    ("flow", vr.flow_vae(2, (1, 8, 8), latent_dim=2, hidden=(8,)), vr.ELBO()),
    ("noise", vr.noise_model_vae(sigma=0.3, widths=(4, 8), latent_channels=2, repair_samples=3), vr.ELBO()),
]:
    trainer = vr.Trainer(model, objective, None if name == "noise" else vr.GaussianNoise(0.2), epochs=1, batch_size=8,
                         progress=False, checkpoint_dir=f"{out}/{name}")
    trainer.fit(vr.data.NoisyImages(data) if name == "noise" else data)
    loaded = vr.load_model(f"{out}/{name}/last.pt")
    expected[name] = loaded.repair(x, n_samples=0)
torch.save({"x": x, **expected}, f"{out}/expected.pt")
