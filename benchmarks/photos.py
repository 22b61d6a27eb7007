"""Set12 under the denoising literature's protocol: noisy input, BM3D, the shipped models; repair time and memory.

    python benchmarks/photos.py [--threads 2] [--bm3d N] [--no-ensemble]

Protocol (``../shared/datasets/README.md``, :mod:`vaerepair.protocol`): each
image read as 8-bit grey, NumPy seed 0 per image, unclipped Gaussian noise of
sigma / 255, the repair clipped and rounded to 8 bits, PSNR with peak 255, mean
over the 12 images; also the repair of the noisy images as 8-bit files hold them
(clipped and rounded before the repair), the self-ensemble (``repair(..., ensemble=8)``), the
non-blind ``grey-sigma`` model told sigma and estimating it (its condition, :class:`vaerepair.models.NoiseLevel`)
and the error of the blind noise-level estimate (:func:`vaerepair.estimate_noise_sigma`).
BM3D's row is the published one (DnCNN paper, TIP 2017);
with PyPI ``bm3d`` installed, ``--bm3d N`` also measures it on the first N
images beside the grey model on the same images. The colour model is measured
on the three LIVE1 photos it held out, with the same protocol in RGB.

Timing: one 512x512 grey repair (median of 5, after a warm-up), one
4000x3000 grey repair and one 4000x3000 colour repair by the colour model, tiled
(tiles of 512), each in a fresh subprocess whose
peak resident memory (``VmHWM``: not ``ru_maxrss``, which a child inherits from its parent), minor page
faults and kernel time are
reported with the baseline of the same process after loading the model. With
PyPI ``bm3d`` (``pip install -e ".[bench]"``), BM3D and the grey model repair
the same noisy 512x512 Set12 image (sigma 25) side by side in this process:
both times (the model's the median of 5), both PSNRs and the time ratio. The last line is
``psnr gap to BM3D on Set12 at sigma 25: X.XX`` (positive: better than BM3D).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import vaerepair as vr
from vaerepair.data import ImageFolder, train_val_split
from vaerepair.protocol import evaluate_protocol, protocol_noise, psnr_8bit, to_8bit

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SET12, LIVE1 = DATASETS / "set12", DATASETS / "live1"
SIGMAS = (15, 25, 50)
PUBLISHED = {"noisy input": (24.70, 20.37, 14.79), "BM3D": (32.37, 29.97, 26.72),
             "DnCNN-S (one model per sigma)": (32.86, 30.44, 27.18)}

def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` of ``/proc/self/status`` where there is one.

    Not ``ru_maxrss``: a child started by ``subprocess`` (``vfork`` then ``exec``) inherits in it the peak of
    the parent's memory it borrowed, so a fresh process would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


TIMING = r"""
import resource, statistics, sys, time, torch, vaerepair as vr
sys.path.insert(0, sys.argv[7])
from photos import peak_rss_mb
torch.set_num_threads(int(sys.argv[1]))
h, w, tile, repeats = (int(v) for v in sys.argv[2:6])
model = vr.pretrained(sys.argv[6])
c = model.image_shape[0]
x = torch.rand(1, c, h, w)
base = peak_rss_mb()
model.repair(torch.rand(1, c, 64, 64))
times = []
start = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(repeats):
    t = time.perf_counter()
    model.repair(x, tile=tile or None)
    times.append(time.perf_counter() - t)
end = resource.getrusage(resource.RUSAGE_SELF)
faults, kernel = (end.ru_minflt - start.ru_minflt) / repeats, (end.ru_stime - start.ru_stime) / repeats
print(statistics.median(times), base, peak_rss_mb(), faults, kernel)
"""


def timing(threads: int, h: int, w: int, tile: int, repeats: int,
           model: str = "grey") -> tuple[float, float, float, float, float]:
    """Median seconds, MB after loading, peak MB, minor page faults and kernel seconds per repair."""
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", TIMING, str(threads), str(h), str(w), str(tile), str(repeats), model,
                          here], check=True, capture_output=True, text=True).stdout.split()
    seconds, base, peak, faults, kernel = (float(v) for v in out)
    return seconds, base, peak, faults, kernel


def bm3d_speed(model: torch.nn.Module, images: list[torch.Tensor], names: list[str]) -> str | None:
    """BM3D and ``model`` on the same noisy 512x512 image (sigma 25), side by side: times, PSNRs, ratio."""
    try:
        import bm3d  # type: ignore[import-not-found]
    except ImportError:
        return None
    index = next(i for i, im in enumerate(images) if tuple(im.shape[-2:]) == (512, 512))
    clean = images[index]
    noisy = protocol_noise(clean, 25)
    start = time.perf_counter()
    estimate = bm3d.bm3d(noisy[0].double().numpy(), sigma_psd=25 / 255)
    bm3d_seconds = time.perf_counter() - start
    bm3d_psnr = psnr_8bit(to_8bit(torch.from_numpy(np.asarray(estimate))[None]), clean)
    model.repair(noisy[None])  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        repaired = model.repair(noisy[None])
        times.append(time.perf_counter() - start)
    ours = statistics.median(times)
    return (f"512x512 grey repair ({names[index]}, sigma 25), side by side: vaerepair grey {ours:.2f} s "
            f"(median of 5), {psnr_8bit(to_8bit(repaired[0]), clean):.2f} dB; PyPI bm3d {bm3d_seconds:.2f} s, "
            f"{bm3d_psnr:.2f} dB\ntime ratio (vaerepair / BM3D, 512x512): {ours / bm3d_seconds:.3f}")


def bm3d_row(images: list[torch.Tensor]) -> dict[int, float] | None:
    try:
        import bm3d  # type: ignore[import-not-found]
    except ImportError:
        return None
    row = {}
    for sigma in SIGMAS:
        psnrs = []
        for clean in images:
            noisy = protocol_noise(clean, sigma)[0].double().numpy()
            estimate = bm3d.bm3d(noisy, sigma_psd=sigma / 255)
            psnrs.append(psnr_8bit(to_8bit(torch.from_numpy(np.asarray(estimate))[None]), clean))
        row[sigma] = statistics.mean(psnrs)
    return row


def bm3d_colour_row(images: list[torch.Tensor]) -> tuple[dict[int, float], float] | None:
    """PyPI ``bm3d_rgb`` under the protocol on RGB ``images`` ``(3, H, W)``: mean PSNR per sigma, and seconds
    per image (mean over all runs)."""
    try:
        import bm3d
    except ImportError:
        return None
    row, seconds = {}, []
    for sigma in SIGMAS:
        psnrs = []
        for clean in images:
            noisy = protocol_noise(clean, sigma).permute(1, 2, 0).double().numpy()  # (H, W, 3)
            start = time.perf_counter()
            estimate = bm3d.bm3d_rgb(noisy, sigma_psd=sigma / 255)
            seconds.append(time.perf_counter() - start)
            repaired = torch.from_numpy(np.ascontiguousarray(estimate)).permute(2, 0, 1)
            psnrs.append(psnr_8bit(to_8bit(repaired), clean))
        row[sigma] = statistics.mean(psnrs)
    return row, statistics.mean(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bm3d", type=int, default=0, help="measure BM3D on the first N images (PyPI bm3d)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-ensemble", action="store_true", help="leave out the ensemble=8 row (8x the repairs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set12 = ImageFolder(SET12, mode="L")
    images = list(set12)
    rows: dict[str, tuple[float, ...]] = {}
    names = [p.name for p in set12.paths]
    grey = vr.pretrained("grey")
    results = [evaluate_protocol(grey.repair, images, s, names=names) for s in SIGMAS]
    rows["vaerepair grey (blind, 0-55)"] = tuple(float(r["psnr"]) for r in results)  # type: ignore[arg-type]
    measured_noisy = tuple(float(r["psnr_input"]) for r in results)  # type: ignore[arg-type]
    # the noisy image as a user's file holds it: clipped to [0, 1] and rounded to 8 bits before the repair (the
    # protocol's input PSNR is already that of the 8-bit noisy image)
    rows["vaerepair grey, on the noisy 8-bit files"] = tuple(float(evaluate_protocol(  # type: ignore[arg-type]
        lambda x: grey.repair(to_8bit(x).float() / 255), images, s)["psnr"]) for s in SIGMAS)
    if not args.no_ensemble:  # the 8 flips and rotations averaged: 8x the repair time
        rows["vaerepair grey, ensemble=8"] = tuple(float(evaluate_protocol(  # type: ignore[arg-type]
            lambda x: grey.repair(x, ensemble=8), images, s)["psnr"]) for s in SIGMAS)
    if "grey-sigma" in {m.name for m in vr.pretrained()}:  # the non-blind model: told sigma, or estimating it
        told = vr.pretrained("grey-sigma")
        rows["vaerepair grey-sigma, sigma given (non-blind)"] = tuple(float(evaluate_protocol(  # type: ignore[arg-type]
            lambda x, s=s: told.repair(x, told.condition.levels(x, s / 255)), images, s)["psnr"]) for s in SIGMAS)
        rows["vaerepair grey-sigma, sigma estimated (--noise-sigma auto)"] = tuple(float(evaluate_protocol(  # type: ignore[arg-type]
            lambda x: told.repair(x, told.condition.levels(x)), images, s)["psnr"]) for s in SIGMAS)
        rows["vaerepair grey-sigma, sigma given, on the noisy 8-bit files"] = tuple(float(evaluate_protocol(  # type: ignore[arg-type]
            lambda x, s=s: told.repair(to_8bit(x).float() / 255, told.condition.levels(x, s / 255)), images,
            s)["psnr"]) for s in SIGMAS)
    # the blind noise-level estimate (vr.estimate_noise_sigma) on the protocol's noisy images, 0..255 units
    estimates = {s: [float(vr.estimate_noise_sigma(protocol_noise(im, s)[None])) * 255 for im in images]
                 for s in SIGMAS}
    per_image = results[1]["images"]

    print(f"Set12 (12 grey images), PSNR in dB, protocol of ../shared/datasets/README.md, {args.threads} threads")
    print("| method | sigma 15 | sigma 25 | sigma 50 |\n|---|---|---|---|")
    print("| noisy input (measured) | " + " | ".join(f"{v:.2f}" for v in measured_noisy) + " |")
    for name, values in {**PUBLISHED, **rows}.items():
        tag = " (published)" if name in PUBLISHED else ""
        print(f"| {name}{tag} | " + " | ".join(f"{v:.2f}" for v in values) + " |")

    print("\nblind noise-level estimate (median of |Haar diagonal| / 0.6745) on the same noisy images: " + "; ".join(
        f"sigma {s}: mean {statistics.mean(e):.2f}, mean abs error {statistics.mean(abs(v - s) for v in e):.2f}, "
        f"worst {max(e, key=lambda v: abs(v - s)):.2f}" for s, e in estimates.items()))

    # the colour model: on the LIVE1 photos it held out (Set12 is grey; a grey image repeated in three channels
    # would carry noise equal in every channel, which is not colour noise), independent noise per channel
    live1 = ImageFolder(LIVE1, mode="RGB")
    _, held_out = train_val_split(live1, val_fraction=3 / len(live1), seed=0)  # as scripts/train_pretrained.py
    colour = [evaluate_protocol(vr.pretrained("colour").repair, list(held_out), s) for s in SIGMAS]
    print(f"\nLIVE1, the 3 colour photos the colour model held out ({', '.join(p.name for p in held_out.paths)}), "
          "same protocol in RGB (noise drawn for (3, H, W)):")
    print("| | sigma 15 | sigma 25 | sigma 50 |\n|---|---|---|---|")
    for key, label in (("psnr_input", "noisy input"), ("psnr", "vaerepair colour (blind, 0-55)")):
        print(f"| {label} | " + " | ".join(f"{float(r[key]):.2f}" for r in colour) + " |")  # type: ignore[arg-type]
    colour_bm3d = bm3d_colour_row(list(held_out))
    if colour_bm3d is None:
        print("colour BM3D not measured: pip install -e '.[bench]' (PyPI bm3d)")
    else:
        measured_rgb, rgb_seconds = colour_bm3d
        print("| BM3D (PyPI bm3d_rgb, measured, sigma given) | "
              + " | ".join(f"{measured_rgb[s]:.2f}" for s in SIGMAS) + " |")
        print("colour gap to BM3D (vaerepair colour - bm3d_rgb): " + " / ".join(
            f"{float(r['psnr']) - measured_rgb[s]:+.2f}" for r, s in zip(colour, SIGMAS, strict=True))  # type: ignore[arg-type]
              + f" at sigma 15 / 25 / 50; bm3d_rgb {rgb_seconds:.1f} s per photo")

    if args.bm3d:
        first = images[: args.bm3d]
        measured = bm3d_row(first)
        if measured is None:
            print("\nBM3D not measured: pip install bm3d")
        else:
            ours = [evaluate_protocol(grey.repair, first, s)["psnr"] for s in SIGMAS]
            print(f"\nside by side on the first {args.bm3d} images: BM3D measured "
                  + " / ".join(f"{measured[s]:.2f}" for s in SIGMAS) + ", vaerepair grey "
                  + " / ".join(f"{v:.2f}" for v in ours))

    print("\nper image at sigma 25 (grey): " + ", ".join(f"{r['name']} {r['psnr']:.2f}" for r in per_image))
    speed = bm3d_speed(grey, images, names)
    print("\n" + (speed or "BM3D's time not measured: pip install -e '.[bench]' (PyPI bm3d)"))
    t512, base512, peak512, _, _ = timing(args.threads, 512, 512, 0, 5)
    t12, base12, peak12, faults12, kernel12 = timing(args.threads, 3000, 4000, 512, 1)
    print(f"\nrepair time on {args.threads} CPU threads (grey model): 512x512 {t512:.2f} s (median of 5), peak "
          f"memory {peak512:.0f} MB (process after loading: {base512:.0f} MB); 4000x3000 tiled (512) {t12:.1f} s, "
          f"peak memory {peak12:.0f} MB (after loading: {base12:.0f} MB), {faults12 / 1e6:.2f} million minor page "
          f"faults, {kernel12:.1f} s in the kernel")
    tc, basec, peakc, faultsc, kernelc = timing(args.threads, 3000, 4000, 512, 1, "colour")
    print(f"colour model, 4000x3000 RGB tiled (512): {tc:.1f} s, peak memory {peakc:.0f} MB (after loading: "
          f"{basec:.0f} MB), {faultsc / 1e6:.2f} million minor page faults, {kernelc:.1f} s in the kernel")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "t512": t512, "t4000x3000": t12, "peak512_mb": peak512,
                                         "peak4000x3000_mb": peak12, "faults4000x3000": faults12,
                                         "t4000x3000_colour": tc, "peak4000x3000_colour_mb": peakc,
                                         "kernel_s4000x3000": kernel12, "speed": speed}, indent=1))
    gap = rows["vaerepair grey (blind, 0-55)"][1] - PUBLISHED["BM3D"][1]
    print(f"psnr gap to BM3D on Set12 at sigma 25: {gap:.2f}")


if __name__ == "__main__":
    main()
