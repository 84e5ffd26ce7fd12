"""fleetrst: find out, across a fleet of Linux hosts at once, who sends TCP resets and why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .collect import ScanOptions


def scan(inventory: str | Path, options: ScanOptions | None = None, limit: str | None = None) -> dict[str, Any]:
    """Scan the inventory's hosts for one window, write the run directory and return its summary."""
    from .analysis import analyze_run
    from .collect import Scan, ScanOptions
    from .inventory import load_inventory
    from .report import write_reports

    opts = options or ScanOptions()
    hosts = load_inventory(Path(inventory)).select(limit)
    run_dir = Scan(hosts, opts).run()
    summary = analyze_run(run_dir)
    write_reports(run_dir, summary)
    return summary
