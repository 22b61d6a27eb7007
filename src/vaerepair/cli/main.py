"""``main``: parse, settle the defaults that depend on other options, check the outputs, run the subcommand,
and turn every expected failure into one line on stderr with an exit status."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from vaerepair._io import DirectoryLock, FolderLockedError, write_failure
from vaerepair.cli.build import noisy_only
from vaerepair.cli.common import CLIError, note, prepare_output_file, prepare_output_folder
from vaerepair.cli.parser import COMMANDS, build_parser
from vaerepair.data import DatasetNotFoundError
from vaerepair.training import CheckpointError, NonFiniteLossError, TrainingInterrupted

__all__ = ["main"]

TRAINING = ("train", "demo", "sweep")


def _settle(args: object) -> None:
    """Old spellings (with a note) and the defaults that depend on other options."""
    a = vars(args)
    if a.get("_kind_spelled_model") is not None:
        note(a["command"], f"--model {a['_kind_spelled_model']} names the model kind here as --kind does; it is "
                           "deprecated in train, demo and sweep (--model names a shipped model in evaluate and "
                           "denoise): use --kind")
        a["kind"] = a["_kind_spelled_model"]
    if a.get("_noise_sigma_spelled_sigma") is not None:
        note(a["command"], "--sigma is deprecated in evaluate (in train it is the likelihood's scale): use "
                           "--noise-sigma, the noise levels in 0..255 units as train --noise-sigma")
        if a.get("noise_sigma") is None:
            a["noise_sigma"] = a["_noise_sigma_spelled_sigma"]
    if a["command"] in TRAINING:
        if a["objective"] is None:
            a["objective"] = "elbo"
        if a["corruption"] is None and not (a["command"] == "train" and noisy_only(args)):  # type: ignore[arg-type]
            a["corruption"] = "gaussian:0.5"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaerepair`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    _settle(args)
    stack = ExitStack()
    try:
        for option in ("out", "grid"):  # evaluate's output files, checked before the work
            if args.command == "evaluate" and getattr(args, option) is not None:
                prepare_output_file(getattr(args, option), f"--{option}")
        root = getattr(args, "root", None)
        if root is not None and Path(root).exists() and not Path(root).is_dir():
            raise CLIError(f"--root {root!r} is a file; give the folder that holds (or will hold) the dataset")
        if args.command in TRAINING:  # checked before any training, and locked: one writer
            prepare_output_folder(args.out, "--out")
            stack.enter_context(DirectoryLock(args.out))
        status = COMMANDS[args.command][0].run(args)
        if args.command == "fetch":
            return int(status)
    except (CLIError, DatasetNotFoundError, CheckpointError, FolderLockedError, ValueError, TypeError) as err:
        print(f"vaerepair {args.command}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"vaerepair {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk or a folder gone while pictures or metrics were written
        where = err.filename or "a file"
        kept = "; the checkpoints already written are kept" if args.command in TRAINING else ""
        print(f"vaerepair {args.command}: error: {where}: {write_failure(err, where)}{kept}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        saved = (f"{err.checkpoint} holds the state; continue with the same command and --resume {err.checkpoint}"
                 if err.checkpoint else "nothing was saved")
        print(f"vaerepair {args.command}: {err.signal_name} stopped training at {err.where}; {saved}", file=sys.stderr)
        return 130
    finally:
        stack.close()
    return 0
