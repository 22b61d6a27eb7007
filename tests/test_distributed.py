"""Data-parallel training with torch.distributed: two CPU processes (gloo, launched by torchrun) against one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from vaerepair.testing.models import small_model
from vaerepair.training.distributed import Distributed

SCRIPT = Path(__file__).with_name("ddp_script.py")


def _torchrun(out: Path, mode: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
               str(out), mode]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final.pt", weights_only=True)


def _two_and_one(tmp_path: Path, suffix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The final weights of the two-process run (mode ``ddp<suffix>``) and of one process (``single<suffix>``)."""
    ddp = _torchrun(tmp_path / "ddp", "ddp" + suffix)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "single"), "single" + suffix],
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    return _weights(tmp_path / "ddp"), _weights(tmp_path / "single")


def test_two_processes_train_like_one_and_resume_exactly(tmp_path: Path) -> None:
    a, b = _two_and_one(tmp_path)
    for k in a:  # the same global batches (shares of 16 and 15 images), gradients summed: equal up to rounding
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    h_ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    h_one = json.loads((tmp_path / "single" / "history.json").read_text())
    assert h_ddp["world_size"] == 2 and h_one["world_size"] == 1
    for r_ddp, r_one in zip(h_ddp["records"], h_one["records"], strict=True):
        for key in ("train_loss", "val_loss", "val_psnr"):
            assert abs(r_ddp[key] - r_one[key]) <= 1e-4 * abs(r_one[key])

    # SIGTERM to rank 0 only: both processes stop at the same step boundary, rank 0 writes last.pt ...
    stopped = _torchrun(tmp_path / "run", "ddp-stop-at-5")
    assert stopped.returncode != 0
    state = torch.load(tmp_path / "run" / "ckpt" / "last.pt", weights_only=True)
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (2, 1) and len(state["rng_ranks"]) == 2
    # ... and the resumed two-process run ends exactly where the uninterrupted one did
    resumed = _torchrun(tmp_path / "run", "ddp-resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = _weights(tmp_path / "run")
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_an_objective_that_differentiates_inside_its_loss_trains_under_ddp_as_in_one_process(tmp_path: Path) -> None:
    # the Fisher divergence takes autograd.grad(..., create_graph=True) with respect to z and the images inside
    # DDP's forward; only the final backward reaches the parameters, so DDP's bucketed all-reduce sees each once
    a, b = _two_and_one(tmp_path, "-fisher")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    h = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert h["world_size"] == 2 and {"train_fisher_z", "val_laplacian"} <= set(h["records"][-1])
    initial = small_model("mlp", "gaussian", "gaussian", (1, 12, 12), seed=0).state_dict()
    assert any(not torch.allclose(a[k], initial[k]) for k in a)  # it trained


def test_shards_cover_the_batch_once() -> None:
    for n in (1, 5, 31, 32):
        for world in (1, 2, 3):
            parts = [Distributed(rank, world).shard(n) for rank in range(world)]
            assert all(Distributed(rank, world).enabled == (world > 1) for rank in range(world))
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1
