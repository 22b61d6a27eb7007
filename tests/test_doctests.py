"""The docstring examples run as tests: every ``>>>`` line in the package (``+SKIP`` for ones needing files)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import sys

import pytest
import torch

import vaerepair

MODULES = sorted(m.name for m in pkgutil.walk_packages(vaerepair.__path__, "vaerepair.")
                 if not m.name.endswith("__main__"))


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    package = sys.modules[name.rpartition(".")[0]] if "." in name else vaerepair
    # what a reader of the docstring has: torch, the module and its package's names, vaerepair as vr
    globs = {**vars(package), **vars(module), "torch": torch, "vr": vaerepair}
    return [t for t in doctest.DocTestFinder().find(module, globs=globs) if t.examples
            and t.name.startswith(name)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    torch.manual_seed(0)
    for test in _examples(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_the_package_has_docstring_examples() -> None:
    assert sum(len(_examples(name)) for name in MODULES) >= 30
