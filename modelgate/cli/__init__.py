"""The ``modelgate`` command, one thin layer over the Python API.

``main`` is the root group (``main.py``); ``common.py`` is what every command shares (exit codes,
one-line errors, status lines); each other module is one command family, imported only when that
command runs. The intake side's commands (``intake``, ``stage``, ``serve``, ``demo``) live in
``flows/`` and are found by entry point (``modelgate.commands``), so this package imports nothing
from ``flows`` or ``tasks``.
"""

from modelgate.cli.main import main

__all__ = ["main"]
