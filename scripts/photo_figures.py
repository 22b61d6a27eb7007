"""The before/after crops of the docs ("Repair your own images"): noisy / repaired / clean, shipped models.

    python scripts/photo_figures.py   # writes docs/images/grey_crops.png and docs/images/colour_crops.png

Grey: three Set12 images (test images the grey model never saw) at sigma = 25
under the protocol's noise (NumPy seed 0), 128x128 crops. Colour: a LIVE1
image the colour model held out for validation, at sigma = 25.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

import vaerepair as vr
from vaerepair.data import ImageFolder, train_val_split
from vaerepair.protocol import protocol_noise, psnr_8bit, to_8bit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
OUT = ROOT / "docs" / "images"


def crops(model: vr.LatentVariableModel, image: torch.Tensor, box: tuple[int, int, int]) -> tuple[list, str]:
    """Noisy, repaired and clean crops ``(C, S, S)`` of one 8-bit image and a caption with the PSNRs."""
    noisy = protocol_noise(image, 25)
    repaired = to_8bit(model.repair(noisy[None])[0])
    top, left, side = box
    part = (slice(None), slice(top, top + side), slice(left, left + side))
    caption = f"noisy {psnr_8bit(to_8bit(noisy), image):.2f} dB -> repaired {psnr_8bit(repaired, image):.2f} dB"
    return [noisy.clamp(0, 1)[part], repaired[part].float() / 255, image[part].float() / 255], caption


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    grey = vr.pretrained("grey")
    set12 = ImageFolder(DATA / "set12", mode="L")
    rows, captions = [], []
    for index, box in [(0, (60, 60, 128)), (4, (60, 60, 128)), (7, (250, 250, 128))]:  # cameraman, monarch, lena
        row, caption = crops(grey, set12[index], box)
        rows += row
        captions.append(f"{set12.paths[index].name}: {caption}")
    save_image(rows, OUT / "grey_crops.png", nrow=3, padding=4, pad_value=1.0)
    colour = vr.pretrained("colour")
    live1 = ImageFolder(DATA / "live1", mode="RGB")
    _, held_out = train_val_split(live1, val_fraction=3 / len(live1), seed=0)  # as scripts/train_pretrained.py
    row, caption = crops(colour, held_out[0], (150, 250, 192))
    save_image(row, OUT / "colour_crops.png", nrow=3, padding=4, pad_value=1.0)
    captions.append(f"{held_out.paths[0].name} (held out): {caption}")
    print("\n".join(captions))


if __name__ == "__main__":
    main()
