"""Several runs side by side: resets per second per host over the runs, the findings that came
and went between them, worst hosts first. One self-contained HTML page (inline SVG, no script) and
the same data as JSON.

Works on any run directory with a summary.json (fleetrst scan, fleetrst analyze, the Ansible path
once analyzed) and analyzes in memory a run directory that has only its raw files.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from . import __version__
from .baseline import RATES, RULE_TEXT, BaselineError, compare_host, load_summary
from .report import (
    _nice_ceiling,
    _render,
    _safe_relpath,
    display_text,
    fmt_rate,
    fmt_time,
    host_verdict,
    severity_class,
)

# How urgently a host needs reading, by its latest verdict (as on the fleet page).
ATTENTION = {"critical": 5, "failed": 4, "warning": 3, "info": 2, "ok": 1}
PALETTE = 8
_GLOB_CHARS = frozenset("*?[")


# ---------------------------------------------------------------------------------------------
# Finding the runs


def _looks_like_run(path: Path) -> bool:
    if path.is_dir():
        return (path / "summary.json").is_file() or (path / "run.json").is_file()
    return path.is_file() and path.suffix == ".json"


def expand_runs(args: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Run paths from arguments: paths as given, glob patterns expanded (sorted).

    Returns the runs and what patterns matched that is not a run (skipped). A path given as such
    is always kept, so that reading it fails loudly; a pattern that matches no run is an error.
    """
    runs: list[Path] = []
    skipped: list[Path] = []
    seen: set[Path] = set()
    for arg in args:
        if _GLOB_CHARS & set(arg) and not Path(arg).exists():
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(arg)))]
            found = [m for m in matches if _looks_like_run(m)]
            skipped += [m for m in matches if not _looks_like_run(m)]
            if not found:
                raise BaselineError(f"{arg}: matches no run directory")
        else:
            found = [Path(arg).expanduser()]
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(path)
    return runs, skipped


def load_runs(paths: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Each run's summary (see `fleetrst.baseline.load_summary`), with its directory."""
    loaded = []
    for path in paths:
        summary = load_summary(path)
        loaded.append((path if path.is_dir() else path.parent, summary))
    return loaded


# ---------------------------------------------------------------------------------------------
# The trend: pure


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _rate(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _run_info(index: int, source: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    run = _dict(summary.get("run"))
    window = _dict(run.get("window"))
    hosts = [h for h in summary.get("hosts") or [] if isinstance(h, Mapping)]
    return {
        "index": index,
        "id": str(run.get("id") or Path(source).name),
        "source": source,
        "start": window.get("start") if isinstance(window.get("start"), str) else None,
        "seconds": _rate(window.get("seconds")),
        "hosts": len(hosts),
        "failed": sum(1 for h in hosts if h.get("status") == "failed"),
        "findings": sum(len(h.get("findings") or []) for h in hosts if h.get("status") != "failed"),
    }


def build_trend(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The trend over (source, summary) pairs, put in the order of their windows' start.

    Per host: a point per run (status, verdict, rates, findings; null where the run lacks the
    host), the findings that came and went (each run against the host's last scanned state, by the
    baseline's matching rules), and the findings of its latest scan. Hosts come worst first: by
    their latest verdict, then by their peak resets per second.
    """
    starts = [_run_info(0, source, summary)["start"] for source, summary in runs]
    ordered = sorted(
        enumerate(runs), key=lambda item: (starts[item[0]] is None, starts[item[0]] or "", item[0])
    )
    infos = [_run_info(i, source, summary) for i, (_, (source, summary)) in enumerate(ordered)]
    tables: list[dict[str, Mapping[str, Any]]] = []
    names: list[str] = []
    for _, (_, summary) in ordered:
        table: dict[str, Mapping[str, Any]] = {}
        for host in summary.get("hosts") or []:
            if isinstance(host, Mapping) and host.get("name") is not None:
                name = str(host["name"])
                table.setdefault(name, host)
                if name not in names:
                    names.append(name)
        tables.append(table)

    hosts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for name in names:
        points: list[dict[str, Any]] = []
        came_went: list[dict[str, Any]] = []
        last_scanned: Mapping[str, Any] | None = None
        latest: Mapping[str, Any] | None = None
        for index, table in enumerate(tables):
            host = table.get(name)
            if host is None:
                points.append(
                    {
                        "status": None,
                        "severity": None,
                        "sent_per_s": None,
                        "received_per_s": None,
                        "findings": None,
                    }
                )
                continue
            latest = host
            scanned = host.get("status") != "failed"
            resets = _dict(host.get("resets"))
            points.append(
                {
                    "status": str(host.get("status") or "unknown"),
                    "severity": host_verdict(host)["severity"],
                    "sent_per_s": _rate(resets.get("sent_per_s")) if scanned else None,
                    "received_per_s": _rate(resets.get("received_per_s")) if scanned else None,
                    "findings": len(host.get("findings") or []) if scanned else None,
                }
            )
            if not scanned:
                continue
            if last_scanned is not None:
                for entry in compare_host(host, last_scanned)["findings"]:
                    if entry["change"] in ("new", "gone"):
                        event = {"run": index, "host": name, **entry}
                        came_went.append(event)
                        changes.append(event)
            last_scanned = host
        series = {rate: [p[rate] for p in points] for rate in RATES}
        peaks: dict[str, float | None] = {
            rate: max((float(v) for v in values if v is not None), default=None)
            for rate, values in series.items()
        }
        latest_severity = host_verdict(latest)["severity"] if latest is not None else None
        hosts.append(
            {
                "name": name,
                "latest": {
                    "run": max(i for i, p in enumerate(points) if p["status"] is not None),
                    "status": latest.get("status") if latest is not None else None,
                    "severity": latest_severity,
                    "verdict": host_verdict(latest)["text"] if latest is not None else None,
                    "report": latest.get("report") if latest is not None else None,
                },
                "peak": peaks,
                "series": series,
                "points": points,
                "changes": came_went,
                "findings": [
                    {
                        k: f.get(k)
                        for k in (
                            "severity",
                            "kind",
                            "interface",
                            "netns",
                            "local",
                            "per_s",
                            "summary",
                        )
                    }
                    for f in (
                        last_scanned.get("findings") or [] if last_scanned is not None else []
                    )
                    if isinstance(f, Mapping)
                ],
            }
        )
    hosts.sort(
        key=lambda h: (
            -ATTENTION.get(str(h["latest"]["severity"]), 0),
            -((h["peak"]["sent_per_s"] or 0.0) + (h["peak"]["received_per_s"] or 0.0)),
            h["name"],
        )
    )
    changes.sort(key=lambda e: (-e["run"], e["change"] != "new", e["host"]))
    return {
        "fleetrst_version": __version__,
        "generated": datetime.now(timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "rule": RULE_TEXT,
        "runs": infos,
        "hosts": hosts,
        "changes": changes,
    }


# ---------------------------------------------------------------------------------------------
# The page


def _f(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _short_time(value: object) -> str:
    text = fmt_time(value)
    # "2025-11-23 16:05:00 UTC" -> "11-23 16:05"
    return text[5:16] if len(text) >= 16 and text[4] == "-" else text


def series_chart(trend: Mapping[str, Any], rate: str, label: str) -> Markup:
    """A line per host of `rate` over the runs; hosts absent or failed in a run leave a gap."""
    runs = trend.get("runs") or []
    hosts = trend.get("hosts") or []
    count = len(runs)
    width, height, left, right, upper, lower = 720, 260, 56, 16, 14, 40
    plot_w, plot_h = width - left - right, height - upper - lower
    values = [v for h in hosts for v in h["series"][rate] if v is not None]
    top = _nice_ceiling(max(values, default=0.0))

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return upper + plot_h * (1 - v / top)

    parts = [
        (
            f'<svg class="chart trend" data-chart="trend-{escape(rate)}" data-points="{count}" '
            f'data-series="{len(hosts)}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
        )
    ]
    for tick in (0.0, top / 2, top):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y(tick))}" y2="{_f(y(tick))}"/>'
            f'<text class="axis" x="{left - 6}" y="{_f(y(tick) + 4)}" text-anchor="end">'
            f"{escape(fmt_rate(tick))}</text>"
        )
    shown = (
        sorted({round(k * (count - 1) / 5) for k in range(6)}) if count > 1 else [0] * bool(count)
    )
    for i in shown:
        anchor = (
            "middle" if count == 1 else "start" if i == 0 else "end" if i == count - 1 else "middle"
        )
        when = _short_time(runs[i].get("start")) if runs[i].get("start") else runs[i].get("id")
        parts.append(
            f'<text class="axis" x="{_f(x(i))}" y="{height - 12}" text-anchor="{anchor}">'
            f"{escape(display_text(when))}</text>"
        )
    # Worst host last, so that its line is drawn on top of the others.
    for k in reversed(range(len(hosts))):
        host = hosts[k]
        name = display_text(host["name"])
        emphasis = "" if k < PALETTE else " faint"
        path: list[str] = []
        dots: list[str] = []
        pen_down = False
        for i, v in enumerate(host["series"][rate]):
            if v is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{_f(x(i))},{_f(y(v))}")
            pen_down = True
            title = f"{name} · {runs[i].get('id')} ({fmt_time(runs[i].get('start'))}): {fmt_rate(v)} {label}"
            dots.append(
                f'<circle class="dot" cx="{_f(x(i))}" cy="{_f(y(v))}" r="3.5">'
                f"<title>{escape(title)}</title></circle>"
            )
        parts.append(
            f'<g class="series c{k % PALETTE}{emphasis}" data-host="{escape(name)}">'
            f'<path class="line" d="{" ".join(path)}"/>{"".join(dots)}</g>'
        )
    parts.append(
        f'<line class="axis-line" x1="{left}" x2="{width - right}" y1="{_f(y(0))}" y2="{_f(y(0))}"/></svg>'
    )
    return Markup("".join(parts))


def sparkline(host: Mapping[str, Any], top: float) -> Markup:
    """A host's sent and received rates over the runs, in a table cell."""
    width, height, pad = 140, 30, 3
    series = host["series"]
    count = len(series[RATES[0]])
    top = top or 1.0

    def x(i: int) -> float:
        return pad + ((width - 2 * pad) * i / (count - 1) if count > 1 else (width - 2 * pad) / 2)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-hidden="true">'
    ]
    for rate, cls in ((RATES[1], "received"), (RATES[0], "sent")):
        d, pen_down = [], False
        for i, v in enumerate(series[rate]):
            if v is None:
                pen_down = False
                continue
            d.append(f"{'L' if pen_down else 'M'}{_f(x(i))},{_f(y(v))}")
            if not pen_down:
                d.append("l0.01,0")  # a lone point still shows as a dot (round caps)
            pen_down = True
        parts.append(f'<path class="{cls}" d="{" ".join(d)}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def status_strip(host: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> Markup:
    """One square per run, coloured by the host's verdict in that run (grey outline: absent)."""
    size, gap = 12, 3
    points = host["points"]
    width = max(1, len(points) * (size + gap) - gap)
    parts = [
        (
            f'<svg class="strip" viewBox="0 0 {width} {size}" width="{width}" height="{size}" '
            f'role="img" aria-label="verdict per run">'
        )
    ]
    for i, point in enumerate(points):
        severity = point["severity"] or "absent"
        cls = severity if severity in ATTENTION else "absent"
        what = (
            "not in this run" if point["status"] is None else f"{severity} (scan {point['status']})"
        )
        title = f"{runs[i].get('id')} ({fmt_time(runs[i].get('start'))}): {what}"
        parts.append(
            f'<rect class="s-{cls}" x="{i * (size + gap)}" y="0" width="{size}" height="{size}" rx="2">'
            f"<title>{escape(display_text(title))}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _relative_href(page_dir: Path, target: Path) -> str | None:
    """A link from the page's directory to `target`, each segment quoted; None if it is missing."""
    if not target.is_file():
        return None
    try:
        relative = os.path.relpath(target.resolve(), page_dir.resolve())
    except ValueError:
        return None
    return "/".join(
        part if part == ".." else quote(part, safe="") for part in PurePosixPath(relative).parts
    )


def _context(
    trend: Mapping[str, Any], page: Path | None, dirs: Sequence[Path] | None
) -> dict[str, Any]:
    runs = list(trend.get("runs") or [])
    hosts = list(trend.get("hosts") or [])
    page_dir = page.parent if page is not None else None
    run_hrefs: list[str | None] = []
    for i in range(len(runs)):
        directory = dirs[i] if dirs is not None and i < len(dirs) else None
        run_hrefs.append(
            _relative_href(page_dir, directory / "index.html")
            if page_dir is not None and directory is not None
            else None
        )
    spark_top = _nice_ceiling(
        max(
            (v for h in hosts for rate in RATES for v in h["series"][rate] if v is not None),
            default=0.0,
        )
    )
    rows = []
    for k, host in enumerate(hosts):
        latest = host["latest"]
        href = None
        report = _safe_relpath(latest.get("report"))
        if (
            page_dir is not None
            and dirs is not None
            and report is not None
            and latest["run"] < len(dirs)
        ):
            href = _relative_href(page_dir, dirs[latest["run"]].joinpath(*report.parts))
        point = host["points"][latest["run"]]
        rows.append(
            {
                "host": host,
                "href": href,
                "colour": f"c{k % PALETTE}" if k < PALETTE else None,
                "severity": latest["severity"] or "unknown",
                "sev_class": severity_class(latest["severity"]),
                "sent": point["sent_per_s"],
                "received": point["received_per_s"],
                "came": sum(1 for c in host["changes"] if c["change"] == "new"),
                "went": sum(1 for c in host["changes"] if c["change"] == "gone"),
                "spark": sparkline(host, spark_top),
                "strip": status_strip(host, runs),
            }
        )
    by_run: dict[int, list[dict[str, Any]]] = {}
    for change in trend.get("changes") or []:
        by_run.setdefault(int(change["run"]), []).append(change)
    change_groups = [
        {"run": runs[i], "href": run_hrefs[i], "changes": by_run[i]}
        for i in sorted(by_run, reverse=True)
    ]
    worst = rows[0]["severity"] if rows else "ok"
    attention = [r for r in rows if ATTENTION.get(r["severity"], 0) >= ATTENTION["warning"]]
    return {
        "run": {"fleetrst_version": trend.get("fleetrst_version")},
        "trend": trend,
        "runs": [{**r, "href": run_hrefs[i]} for i, r in enumerate(runs)],
        "rows": rows,
        "legend": [(display_text(r["host"]["name"]), r["colour"]) for r in rows if r["colour"]],
        "more_hosts": max(0, len(rows) - PALETTE),
        "sent_chart": series_chart(trend, "sent_per_s", "resets sent per second"),
        "received_chart": series_chart(trend, "received_per_s", "resets received per second"),
        "change_groups": change_groups,
        "worst": worst,
        "worst_class": severity_class(worst),
        "attention": attention,
        "first": runs[0] if runs else {},
        "last": runs[-1] if runs else {},
    }


def render_trend(
    trend: Mapping[str, Any], page: Path | None = None, dirs: Sequence[Path] | None = None
) -> str:
    """The trend page; with `page` (where it will be written) and each run's directory (in the
    trend's run order), it links to the runs' pages."""
    return _render("trend.html.j2", _context(trend, page, dirs))


def write_trend(
    runs: Sequence[tuple[Path, Mapping[str, Any]]], page: Path, json_path: Path | None = None
) -> dict[str, Any]:
    """Build the trend of the loaded runs, write the page and its JSON (default: page.json)."""
    trend = build_trend([(str(directory), summary) for directory, summary in runs])
    by_source = {str(directory): directory for directory, _ in runs}
    dirs = [by_source[r["source"]] for r in trend["runs"]]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_trend(trend, page, dirs), encoding="utf-8", errors="backslashreplace")
    target = json_path if json_path is not None else page.with_suffix(".json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(trend, indent=2, ensure_ascii=False, default=str) + "\n",
        encoding="utf-8",
        errors="backslashreplace",
    )
    return trend


# ---------------------------------------------------------------------------------------------
# Command line


def register_cli(subparsers: Any) -> None:
    """Add `fleetrst trend` to the CLI."""
    t = subparsers.add_parser(
        "trend", help="one page over several runs: resets per host, findings that came and went"
    )
    t.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories or their summary.json; quoted glob patterns are expanded",
    )
    t.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("trend.html"),
        metavar="FILE",
        help="the page to write (default ./trend.html)",
    )
    t.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="where to write the trend as JSON (default: next to the page, .json)",
    )
    t.add_argument("-q", "--quiet", action="store_true")
    t.add_argument("-v", "--verbose", action="count", default=0)
    t.set_defaults(func=cmd_trend)


def cmd_trend(args: argparse.Namespace, console: Any) -> int:
    """`fleetrst trend`: read the runs, write the page and the JSON, print where they are."""
    paths, skipped = expand_runs(args.runs)
    for path in skipped:
        console.info(f"skipped {path}: not a run directory", level=1)
    runs = load_runs(paths)
    json_path = args.json if args.json is not None else args.out.with_suffix(".json")
    trend = write_trend(runs, args.out, json_path)
    print(
        f"trend: {len(trend['runs'])} run(s), {len(trend['hosts'])} host(s), "
        f"{len(trend['changes'])} finding(s) came or went",
        file=console.out,
    )
    print(f"page: {args.out}", file=console.out)
    print(f"json: {json_path}", file=console.out)
    return 0
