"""One JSON line per benchmark run, appended to ``bench/out/<name>.jsonl`` with when and on what it ran."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def append_record(path: Path, bench: str, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Append ``rows`` (and any ``extra`` fields) as one record; the machine line names the torch build."""
    import torch

    record = {
        "bench": bench,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        **extra,
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
