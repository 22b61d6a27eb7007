"""The ``vaerepair`` command line: ``train | demo | sweep | evaluate | denoise | models | fetch``.

One module per subcommand (:mod:`~vaerepair.cli.train`, :mod:`~vaerepair.cli.demo`, :mod:`~vaerepair.cli.sweep`,
:mod:`~vaerepair.cli.evaluate`, :mod:`~vaerepair.cli.denoise`, :mod:`~vaerepair.cli.models`,
:mod:`~vaerepair.cli.fetch`), each with ``add_arguments(parser)`` and ``run(args)``; the parser in
:mod:`~vaerepair.cli.parser`, option types in :mod:`~vaerepair.cli.arguments`, models, objectives and Trainers
built from arguments in :mod:`~vaerepair.cli.build` (whatever the data source), and ``main`` in
:mod:`~vaerepair.cli.main`.
"""

from vaerepair.cli.main import main
from vaerepair.cli.parser import build_parser

__all__ = ["main", "build_parser"]
