"""``python -m modelgate.cli_stage STAGE``: the DVC stage entry point's old name.

Ledgers recorded before the stages moved to ``flows/cli_stage.py`` run this from their committed
``dvc.yaml`` (``modelgate audit reproduce`` of an old run). It hands over to ``modelgate stage``,
which the intake side registers (an entry point), so the core imports nothing from it.
"""

from __future__ import annotations

import sys

from modelgate.cli import main

if __name__ == "__main__":
    main(["stage", *sys.argv[1:]], prog_name="modelgate")
