"""Every Python code block of README.md and docs/*.md runs, with small budgets where a block trains.

The blocks of one page run in order in one namespace (a page's later blocks use
its earlier ones), in a temporary working directory. Training is cut down,
not skipped: every ``Trainer`` trains for one epoch on at most 256 images, an
evaluation uses 64 images and 10 importance samples, and ``compile`` is off
(it needs a C compiler; the compiled step has its own tests). Every name a block
uses is defined on its page: only the folder of photographs ``my_photos/`` that
a page reads is made by :func:`_reader_session`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vaerepair.data import ImageDataset, NoisyImages
from vaerepair.training import PatchSource, Trainer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def _shrink(data: Any, n: int) -> Any:
    if isinstance(data, (ImageDataset, NoisyImages, torch.Tensor)):
        return data[:n]
    if isinstance(data, list):
        return data[:4]
    if isinstance(data, PatchSource):
        data.patches_per_epoch = min(data.patches_per_epoch, 64)
    return data


@pytest.fixture
def small_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    init, fit, evaluate = Trainer.__init__, Trainer.fit, Trainer.evaluate

    def small_init(self: Trainer, *args: Any, **kwargs: Any) -> None:
        kwargs.update(epochs=min(kwargs.get("epochs", 10), 1), compile=False, progress=False)
        init(self, *args, **kwargs)

    def small_fit(self: Trainer, train: Any, val: Any = None, resume: Any = None) -> Any:
        return fit(self, _shrink(train, 256), _shrink(val, 64), resume)

    def small_evaluate(self: Trainer, data: Any, corruption: Any = None, seed: Any = None,
                       iwae_k: int | None = None) -> Any:
        return evaluate(self, _shrink(data, 64), corruption, seed, min(iwae_k, 10) if iwae_k else iwae_k)

    monkeypatch.setattr(Trainer, "__init__", small_init)
    monkeypatch.setattr(Trainer, "fit", small_fit)
    monkeypatch.setattr(Trainer, "evaluate", small_evaluate)


def _reader_session(folder: Path) -> dict[str, Any]:
    """The files the pages assume the reader has (a folder of photographs); no Python names."""
    photos = folder / "my_photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(60, 70), (52, 64), (80, 50), (64, 64), (70, 90)] * 2):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(photos / f"p{i}.png")
    return {}


def test_every_page_with_python_code_is_collected() -> None:
    with_code = {p.name for p in PAGES if _blocks(p)}
    assert {"README.md", "quickstart.md", "callbacks.md", "testing.md", "repair-your-own-images.md",
            "repair-without-clean-images.md"} <= with_code


@pytest.mark.usefixtures("fashion_mnist_available", "small_budgets")
@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_the_code_blocks_of_a_page_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}", **_reader_session(tmp_path)}
    for i, code in enumerate(_blocks(page)):
        try:
            exec(compile(code, f"{page.name} block {i}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{page.name}, code block {i} failed: {type(err).__name__}: {err}\n{code}") from err
    # pages that define test functions (testing.md) get them run too
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            value()
