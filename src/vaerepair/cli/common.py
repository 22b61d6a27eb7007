"""What every command shares: the one-line error, output paths checked before the work, deprecated spellings."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "prepare_output_folder", "prepare_output_file", "config_of", "note"]


class CLIError(Exception):
    """An error the CLI reports as one line, without a traceback."""


def prepare_output_folder(path: Path, option: str) -> None:
    """Create ``path`` (a folder) or explain in one line why it cannot be one."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == path else f"is under {str(parent)!r}, which is"
            raise CLIError(f"{option} {str(path)!r} {where} a file, not a folder; choose another {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create {option} {str(path)!r}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {str(path)!r} is not writable; choose another {option}")


def prepare_output_file(path: Path, option: str) -> None:
    """``option FILE``: a file whose folder exists or can be made, not a folder itself (one line otherwise)."""
    if path.is_dir():
        raise CLIError(f"{option} {str(path)!r} is a folder; give a file name such as "
                       f"{str(path / ('out.json' if option == '--out' else 'repaired.png'))!r}")
    if str(path.parent) not in ("", "."):
        prepare_output_folder(path.parent, f"{option}'s folder")


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as JSON values (tuples as lists, paths as strings), for ``metrics.json``."""
    return {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items() if not k.startswith("_")}


def note(command: str, text: str) -> None:
    """A one-line note on stderr (a deprecated spelling that still works)."""
    print(f"vaerepair {command}: note: {text}", file=sys.stderr)
