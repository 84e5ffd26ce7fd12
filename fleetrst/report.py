"""Render a run's summary: one HTML page per host, the fleet index, summary.json and JUnit XML.

Everything in the summary is untrusted text (host names come from inventories, process names and
command lines from the hosts). Pages are Jinja2 with autoescape on, control characters are shown
as visible placeholders, links are URL-quoted, and charts are SVG built here from numbers only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape

from .baseline import fleet_view, host_view
from .netns import label as netns_label

SEVERITIES = ("ok", "info", "warning", "critical", "failed")
FINDING_SEVERITIES = ("info", "warning", "critical")

# Counters the on-call engineer reads first; the rest follow alphabetically.
_COUNTER_ORDER = (
    "OutRsts",
    "AttemptFails",
    "EstabResets",
    "TCPAbortOnData",
    "TCPAbortOnClose",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPAbortOnLinger",
    "TCPAbortFailed",
    "ListenOverflows",
    "ListenDrops",
    "TCPChallengeACK",
    "PAWSEstab",
    "TCPSynRetrans",
)
_MAX_PEERS_SHOWN = 8
_MAX_MATRIX_NODES = 40
_MAX_HOVER_BUCKETS = 600
_PALETTE_SIZE = 8


# How urgently a host's row needs reading: a host that could not be scanned may hide anything,
# so it comes right after the critical ones.
_ATTENTION = {"critical": 5, "failed": 4, "warning": 3, "info": 2, "ok": 1}


def severity_rank(severity: str | None) -> int:
    """Rank a severity: ok 0 < info 1 < warning 2 < critical 3 < failed 4; unknown ranks as 0."""
    try:
        return SEVERITIES.index(str(severity).lower())
    except ValueError:
        return 0


# ---------------------------------------------------------------------------------------------
# Untrusted text

# C0/C1 controls except \t and \n, DEL, zero-width and bidi controls (they make one name look like
# another), and lone surrogates (they cannot be encoded to UTF-8 at all).
_UNSAFE_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
# What XML 1.0 cannot carry at all, even as a character reference.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _placeholder(match: re.Match[str]) -> str:
    # Python-style escapes (ESC shows as \x1b): familiar to engineers, and unlike the U+2400
    # control pictures they need no particular font to be seen.
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def display_text(value: object) -> str:
    """Return `value` as text with control characters (but \\n and \\t) made visible."""
    return _UNSAFE_CHARS.sub(_placeholder, "" if value is None else str(value))


def xml_text(value: object) -> str:
    """Return `value` as text with the characters XML 1.0 forbids removed."""
    return _XML_FORBIDDEN.sub("", "" if value is None else str(value))


def _finalize(value: Any) -> Any:
    # Every {{ }} output passes here before autoescaping. Markup (escaped text from filters such as
    # join, or SVG built below) is cleaned too: the placeholders contain nothing HTML-special.
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, Markup):
        return Markup(display_text(str(value)))
    if isinstance(value, str):
        return display_text(value)
    return value


def _safe_relpath(value: object) -> PurePosixPath | None:
    """A relative path that stays inside its base directory, or None."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        return None
    return path


def _href(path: PurePosixPath | None) -> str | None:
    """URL for a relative path, each segment percent-quoted (a name may hold ?, #, %, <, ...)."""
    if path is None:
        return None
    return "/".join(quote(part, safe="") for part in path.parts)


def host_href(host: Mapping[str, Any]) -> str | None:
    """The index's link to a host's report, or None when its report path is missing or unsafe."""
    return _href(_safe_relpath(host.get("report")))


# ---------------------------------------------------------------------------------------------
# Numbers and formatting


def _absent(value: object) -> bool:
    return value is None or value == "" or isinstance(value, jinja2.Undefined)


def _num(value: object) -> float:
    """A finite float from anything; what is not a number counts as 0."""
    if isinstance(value, (jinja2.Undefined, bool)):
        return 0.0
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _fmt(value: float) -> str:
    """A coordinate for SVG: short, and never anything but a number."""
    return f"{value:.1f}".removesuffix(".0")


def fmt_rate(value: object) -> str:
    """Resets per second as a person reads it: 2.0/s, 0.03/s, 120/s."""
    if _absent(value):
        return "—"
    rate = _num(value)
    if rate == 0:
        return "0/s"
    if abs(rate) < 0.1:
        return f"{rate:.2f}/s"
    if abs(rate) < 100:
        return f"{rate:.1f}/s"
    return f"{rate:,.0f}/s"


def fmt_int(value: object) -> str:
    """An integer with thousands separators, or a dash when absent."""
    if _absent(value):
        return "—"
    number = _num(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def fmt_bytes(value: object) -> str:
    """A byte count in B, KiB, MiB or GiB."""
    size = _num(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def fmt_seconds(value: object) -> str:
    """A duration: 30 s, 2 min 5 s."""
    if _absent(value):
        return "—"
    seconds = _num(value)
    if seconds < 120:
        return f"{seconds:g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def fmt_time(value: object) -> str:
    """An ISO-8601 instant as 'YYYY-MM-DD HH:MM:SS UTC'; anything else as given."""
    if not isinstance(value, str) or not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_offset(value: object) -> str:
    """A clock offset in ms with its sign."""
    if _absent(value):
        return "unknown"
    return f"{_num(value) * 1000:+.1f} ms"


def severity_class(value: object) -> str:
    """A CSS class for a severity; unknown values get a neutral class (never the raw text)."""
    severity = str(value).lower()
    return f"sev-{severity}" if severity in SEVERITIES else "sev-unknown"


# ---------------------------------------------------------------------------------------------
# Charts: inline SVG, built from numbers. Text labels are escaped here because the result is
# Markup and autoescape will not touch it again.


@dataclass(frozen=True)
class Chart:
    """An SVG chart and its legend entries (label, colour class) for the HTML around it."""

    svg: Markup
    legend: tuple[tuple[str, str], ...] = ()


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= value (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _label(value: object, limit: int = 32) -> str:
    text = display_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timeline_chart(timeline: Mapping[str, Any] | None) -> Chart | None:
    """Stacked step areas of resets per second, one band per series of the host's timeline."""
    if not isinstance(timeline, Mapping):
        return None
    bucket = _num(timeline.get("bucket_s")) or 1.0
    raw_series = [s for s in timeline.get("series") or [] if isinstance(s, Mapping)]
    series = [
        (
            display_text(s.get("label", "")),
            [max(_num(v), 0.0) / bucket for v in s.get("values") or []],
        )
        for s in raw_series
    ]
    buckets = max((len(values) for _, values in series), default=0)
    if buckets == 0:
        return None
    totals = [sum(values[i] for _, values in series if i < len(values)) for i in range(buckets)]
    top = _nice_ceiling(max(totals))

    width, height, left, right, upper, lower = 720, 216, 56, 14, 14, 36
    plot_w, plot_h = width - left - right, height - upper - lower

    def x(i: float) -> float:
        return left + plot_w * i / buckets

    def y(rate: float) -> float:
        return upper + plot_h * (1 - rate / top)

    parts = [
        (
            f'<svg class="chart" data-chart="timeline" data-points="{buckets}" '
            f'data-series="{len(series)}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="resets per second over the window" preserveAspectRatio="xMidYMid meet">'
        )
    ]
    for tick in (0, top / 2, top):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_fmt(y(tick))}" '
            f'y2="{_fmt(y(tick))}"/><text class="axis" x="{left - 6}" y="{_fmt(y(tick) + 4)}" '
            f'text-anchor="end">{escape(_short_count(tick, precise=True))}</text>'
        )
    span = buckets * bucket
    for k in range(6):
        seconds = span * k / 5
        parts.append(
            f'<text class="axis" x="{_fmt(x(buckets * k / 5))}" y="{height - 8}" '
            f'text-anchor="{"start" if k == 0 else "end" if k == 5 else "middle"}">'
            f"{escape(f'{seconds:g} s')}</text>"
        )
    base = [0.0] * buckets
    for index, (_, values) in enumerate(series):
        tops = [base[i] + (values[i] if i < len(values) else 0.0) for i in range(buckets)]
        edge = []
        for i in range(buckets):
            edge += [(x(i), y(tops[i])), (x(i + 1), y(tops[i]))]
        floor = []
        for i in reversed(range(buckets)):
            floor += [(x(i + 1), y(base[i])), (x(i), y(base[i]))]
        points = " ".join(f"{_fmt(px)},{_fmt(py)}" for px, py in edge + floor)
        line = " ".join(f"{_fmt(px)},{_fmt(py)}" for px, py in edge)
        colour = f"c{index % _PALETTE_SIZE}"
        parts.append(f'<polygon class="area {colour}" points="{points}"/>')
        parts.append(f'<polyline class="line {colour}" points="{line}"/>')
        base = tops
    if buckets <= _MAX_HOVER_BUCKETS:
        # Invisible columns whose <title> gives exact numbers on hover, without any script.
        for i in range(buckets):
            detail = "; ".join(
                f"{label}: {fmt_rate(values[i] if i < len(values) else 0)}"
                for label, values in series
            )
            when = f"{i * bucket:g}–{(i + 1) * bucket:g} s"
            parts.append(
                f'<rect class="hover" x="{_fmt(x(i))}" y="{upper}" '
                f'width="{_fmt(plot_w / buckets)}" '
                f'height="{plot_h}"><title>{escape(when + ": " + detail)}</title></rect>'
            )
    parts.append(
        f'<line class="axis-line" x1="{left}" x2="{width - right}" '
        f'y1="{_fmt(y(0))}" y2="{_fmt(y(0))}"/>'
    )
    parts.append("</svg>")
    legend = tuple(
        (label or "(unnamed)", f"c{index % _PALETTE_SIZE}")
        for index, (label, _) in enumerate(series)
    )
    return Chart(Markup("".join(parts)), legend)


def bar_chart(items: Sequence[Any] | None, key: str, kind: str) -> Chart | None:
    """Horizontal bars of resets sent and received per item (a local port or a peer)."""
    rows = [item for item in items or [] if isinstance(item, Mapping)]
    if not rows:
        return None
    data = [
        (display_text(r.get(key, "")), _num(r.get("sent")), _num(r.get("received"))) for r in rows
    ]
    top = max((sent + received for _, sent, received in data), default=0.0) or 1.0
    # Narrow viewBox, label above its bar: these charts sit in half-width cards or on phones, and
    # an address or a long peer name must stay readable there.
    width, row_h, value_w = 460, 44, 150
    bar_w = width - value_w
    height = row_h * len(data) + 4
    parts = [
        (
            f'<svg class="chart" data-chart="{escape(kind)}" data-points="{len(data)}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(kind)}" '
            f'preserveAspectRatio="xMidYMin meet">'
        )
    ]
    for index, (label, sent, received) in enumerate(data):
        top_y = 4 + index * row_h
        sent_w = bar_w * sent / top
        recv_w = bar_w * received / top
        parts.append(
            f'<text class="label mono" x="0" y="{top_y + 13}">'
            f"{escape(_label(label, 44))}<title>{escape(label)}</title></text>"
        )
        parts.append(
            f'<rect class="bar track" x="0" y="{top_y + 20}" width="{bar_w}" height="16"/>'
            f'<rect class="bar sent" x="0" y="{top_y + 20}" width="{_fmt(sent_w)}" height="16"/>'
            f'<rect class="bar received" x="{_fmt(sent_w)}" y="{top_y + 20}" '
            f'width="{_fmt(recv_w)}" height="16"/>'
        )
        parts.append(
            f'<text class="value" x="{bar_w + 8}" y="{top_y + 33}">'
            f"{escape(f'{sent:,.0f} sent · {received:,.0f} recv')}</text>"
        )
    parts.append("</svg>")
    return Chart(Markup("".join(parts)), (("sent", "sent"), ("received", "received")))


def link_matrix(links: Sequence[Any] | None) -> Chart | None:
    """A who-resets-whom grid: one row per sender, one column per receiver, shade by count."""
    cells: dict[tuple[str, str], float] = {}
    details: dict[tuple[str, str], list[str]] = {}
    for link in links or []:
        if not isinstance(link, Mapping):
            continue
        pair = (display_text(link.get("from", "")), display_text(link.get("to", "")))
        count = _num(link.get("count"))
        cells[pair] = cells.get(pair, 0.0) + count
        details.setdefault(pair, []).append(
            f"{fmt_int(count)} {display_text(link.get('kind', ''))}"
            + (f" port {fmt_int(link.get('port'))}" if link.get("port") is not None else "")
        )
    senders = sorted({a for a, _ in cells})
    receivers = sorted({b for _, b in cells})
    if not cells or len(senders) > _MAX_MATRIX_NODES or len(receivers) > _MAX_MATRIX_NODES:
        return None
    # Room for the labels as drawn (about 7 units a character, column labels at 50 degrees).
    cell = 44
    label_w = 16 + 7 * max(len(_label(name, 22)) for name in senders)
    head_h = 20 + int(5.4 * max(len(_label(name, 20)) for name in receivers))
    width = label_w + cell * len(receivers) + 40
    height = head_h + cell * len(senders) + 10
    top = max(cells.values()) or 1.0
    # Natural size (width/height) so that a small matrix is not blown up; CSS shrinks it on phones.
    parts = [
        (
            f'<svg class="chart matrix" data-chart="links" data-points="{len(cells)}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="who resets whom" preserveAspectRatio="xMinYMin meet">'
        )
    ]
    for col, name in enumerate(receivers):
        cx = label_w + col * cell + cell / 2
        parts.append(
            f'<text class="label mono" '
            f'transform="translate({_fmt(cx + 4)},{head_h - 6}) rotate(-50)">'
            f"{escape(_label(name, 20))}<title>{escape(name)}</title></text>"
        )
    for row, name in enumerate(senders):
        cy = head_h + row * cell
        parts.append(
            f'<text class="label mono" x="{label_w - 8}" y="{_fmt(cy + cell / 2 + 4)}" '
            f'text-anchor="end">{escape(_label(name, 22))}<title>{escape(name)}</title></text>'
        )
        for col, receiver in enumerate(receivers):
            pair_count = cells.get((name, receiver))
            x0 = label_w + col * cell
            if pair_count is None:
                parts.append(
                    f'<rect class="cell empty" x="{x0 + 1}" y="{cy + 1}" width="{cell - 2}" '
                    f'height="{cell - 2}"/>'
                )
                continue
            # Shade on a log scale: one busy pair must not wash out all the others.
            level = (
                1 + min(3, int(3 * math.log1p(pair_count) / math.log1p(top)))
                if pair_count > 0
                else 0
            )
            title = f"{name} → {receiver}: " + ", ".join(details[(name, receiver)])
            ink = "cell-value dark" if level >= 3 else "cell-value"
            parts.append(
                f'<rect class="cell i{level}" x="{x0 + 1}" y="{cy + 1}" width="{cell - 2}" '
                f'height="{cell - 2}"><title>{escape(title)}</title></rect>'
                f'<text class="{ink}" x="{_fmt(x0 + cell / 2)}" y="{_fmt(cy + cell / 2 + 4)}" '
                f'text-anchor="middle">{escape(_short_count(pair_count))}</text>'
            )
    parts.append("</svg>")
    return Chart(Markup("".join(parts)))


def _short_count(count: float, precise: bool = False) -> str:
    """A count in few characters (1.2k); precise keeps fractions below 1000 (axis ticks: 2.5)."""
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    if count >= 1000:
        return f"{count / 1000:.1f}k".replace(".0k", "k")
    return f"{count:g}" if precise else f"{count:.0f}"


# ---------------------------------------------------------------------------------------------
# Views: the summary's dicts, tolerated as they come, plus what the templates should not compute.


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def worst_finding(host: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The host's most severe finding (the first of equals: findings come most important first)."""
    findings = [f for f in _list(host.get("findings")) if isinstance(f, Mapping)]
    if not findings:
        return None
    return max(findings, key=lambda f: severity_rank(f.get("severity")), default=None)


def host_verdict(host: Mapping[str, Any]) -> dict[str, str]:
    """The host's verdict, or one derived from its status and findings when the summary has none."""
    verdict = _dict(host.get("verdict"))
    severity = str(verdict.get("severity") or "").lower()
    text = verdict.get("text")
    if host.get("status") == "failed":
        severity = severity or "failed"
        text = text or f"Scan failed: {host.get('error') or 'unknown error'}"
    if not severity:
        worst = worst_finding(host)
        severity = str(worst.get("severity")) if worst else "ok"
    if not text:
        worst = worst_finding(host)
        text = str(worst.get("summary")) if worst and worst.get("summary") else "No reset findings."
    return {"severity": severity, "text": str(text)}


def _counter_rows(counters: object) -> list[dict[str, Any]]:
    table = _dict(counters)
    known = [name for name in _COUNTER_ORDER if name in table]
    rest = sorted(name for name in table if name not in _COUNTER_ORDER)
    rows = []
    for name in known + rest:
        values = _dict(table[name])
        rows.append({"name": name, **values, "moved": _num(values.get("delta")) != 0})
    return rows


def _finding_view(finding: Mapping[str, Any]) -> dict[str, Any]:
    peers = [p for p in _list(finding.get("peers"))]
    evidence = _dict(finding.get("evidence"))
    return {
        **finding,
        "sev_class": severity_class(finding.get("severity")),
        "peers_shown": peers[:_MAX_PEERS_SHOWN],
        "peers_more": max(0, len(peers) - _MAX_PEERS_SHOWN),
        "process": _dict(finding.get("process")) or None,
        "netns_label": netns_label(_dict(finding.get("netns")), with_pid=False)
        if _dict(finding.get("netns")) else None,
        "samples": _list(evidence.get("samples")),
        "evidence_counters": sorted(_dict(evidence.get("counters")).items()),
    }


_SHOWN_FACTS = frozenset(
    ("kernel", "hostname", "tcpdump", "tracefs", "clock_offset_s", "interfaces", "missing")
)


def _extra_facts(facts: object) -> list[tuple[str, object]]:
    """Facts a newer collector added that the page has no place for yet: shown as they are."""
    return sorted(
        (str(key), value)
        for key, value in _dict(facts).items()
        if key not in _SHOWN_FACTS and isinstance(value, (str, int, float, bool))
    )


# A host page lists at most this many namespaces one by one; quiet ones only as a count.
_MAX_NAMESPACES_SHOWN = 200


def _namespaces_view(namespaces: object) -> dict[str, Any] | None:
    """The host's network namespaces as the page shows them: those that sent or received resets,
    had findings or were captured, busiest first; the quiet rest as a count."""
    data = _dict(namespaces)
    if not data:
        return None
    items = [_dict(i) for i in _list(data.get("items")) if isinstance(i, Mapping)]
    shown = []
    for item in items:
        resets = _dict(item.get("resets"))
        busy = _num(item.get("sent")) > 0 or _num(resets.get("received")) > 0
        if not (busy or item.get("captured") or _num(item.get("findings")) > 0):
            continue
        cmdline = display_text(item.get("cmdline") or "")
        shown.append({
            **item,
            "label": netns_label(item, with_pid=False),
            "resets": resets,
            "cmdline_short": cmdline if len(cmdline) <= 80 else cmdline[:79] + "…",
            "pcaps": _pcap_views(item.get("pcaps")),
        })
    shown.sort(key=lambda i: (-_num(i.get("sent")), -_num(i["resets"].get("received")),
                              not i.get("captured"), _num(i.get("inode"))))
    return {
        **data,
        "total": len(items),
        "rows": shown[:_MAX_NAMESPACES_SHOWN],
        "quiet": len(items) - len(shown),
        "cut": max(0, len(shown) - _MAX_NAMESPACES_SHOWN),
        "only_counted": sum(1 for i in items if not i.get("captured")),
    }


def _cost_view(cost: object) -> dict[str, str] | None:
    """What the run cost the host, as the page prints it (numbers only, whatever the summary held)."""
    data = _dict(cost)
    if not data:
        return None

    def sec(key: str, digits: int = 3) -> str:
        return f"{_num(data.get(key)):.{digits}f} s"

    return {
        "cpu": sec("cpu_s", 2),
        "script": f"{_num(data.get('script_user_s')):.2f} user + {_num(data.get('script_sys_s')):.2f} sys",
        "children": f"{_num(data.get('children_user_s')):.2f} user + "
                    f"{_num(data.get('children_sys_s')):.2f} sys",
        "start_counters": sec("start_counters_s"), "start_sockets": sec("start_sockets_s"),
        "end_counters": sec("end_counters_s"), "end_sockets": sec("end_sockets_s"),
        "choose": sec("choose_s"),
        "start_late": sec("start_late_s") if "start_late_s" in data else "",
        "start_captures": sec("start_captures_s") if "start_captures_s" in data else "",
        "counted": fmt_int(data.get("namespaces_counted")),
        "captured": fmt_int(data.get("namespaces_captured")),
        "tcpdumps": fmt_int(data.get("tcpdumps")),
    }


def _pcap_views(pcaps: object) -> list[dict[str, Any]]:
    views = []
    for pcap in _list(pcaps):
        if isinstance(pcap, Mapping):
            views.append({**pcap, "href": _href(_safe_relpath(pcap.get("file")))})
    return views


def _index_href(report: object) -> str:
    """From a host page back to index.html, however deep the report sits in the run directory."""
    path = _safe_relpath(report)
    depth = len(path.parts) - 1 if path else 1
    return "../" * depth + "index.html"


def _host_context(run: Mapping[str, Any], host: Mapping[str, Any]) -> dict[str, Any]:
    verdict = host_verdict(host)
    findings = [_finding_view(f) for f in _list(host.get("findings")) if isinstance(f, Mapping)]
    window = _dict(host.get("window")) or _dict(run.get("window"))
    return {
        "run": run,
        "host": host,
        "verdict": verdict,
        "verdict_class": severity_class(verdict["severity"]),
        "status_class": f"status-{host.get('status')}"
        if host.get("status") in ("ok", "partial", "failed")
        else "status-unknown",
        "failed": host.get("status") == "failed",
        "findings": findings,
        "window": window,
        "facts": _dict(host.get("facts")),
        "extra_facts": _extra_facts(host.get("facts")),
        "resets": _dict(host.get("resets")),
        "by_interface": sorted(_dict(_dict(host.get("resets")).get("by_interface")).items()),
        "counters": _counter_rows(host.get("counters")),
        "alarms": [a for a in _list(host.get("alarms")) if isinstance(a, Mapping)],
        "timeline": timeline_chart(_dict(host.get("timeline")) or None),
        "ports_chart": bar_chart(_list(host.get("top_ports")), "local", "ports"),
        "peers_chart": bar_chart(_list(host.get("top_peers")), "peer", "peers"),
        "samples": _list(host.get("samples")),
        "pcaps": _pcap_views(host.get("pcaps")),
        "namespaces": _namespaces_view(host.get("namespaces")),
        "cost": _cost_view(host.get("cost")),
        "warnings": _list(host.get("warnings")),
        "index_href": _index_href(host.get("report")),
        "baseline": host_view(host),
    }


def _index_context(summary: Mapping[str, Any]) -> dict[str, Any]:
    run = _dict(summary.get("run"))
    rows: list[dict[str, Any]] = []
    for position, host in enumerate(
        h for h in _list(summary.get("hosts")) if isinstance(h, Mapping)
    ):
        verdict = host_verdict(host)
        resets = _dict(host.get("resets"))
        worst = worst_finding(host)
        findings = _list(host.get("findings"))
        top = findings[0] if findings and isinstance(findings[0], Mapping) else worst
        rows.append(
            {
                "host": host,
                "href": host_href(host),
                "verdict": verdict,
                "verdict_class": severity_class(verdict["severity"]),
                "rank": severity_rank(verdict["severity"]),
                "attention": _ATTENTION.get(verdict["severity"], 0),
                "sent": resets.get("sent_per_s"),
                "received": resets.get("received_per_s"),
                "top": top,
                "position": position,
            }
        )
    # Worst first, then the busiest: the rows that need a person come to the top.
    rows.sort(key=lambda r: (-r["attention"], -_num(r["sent"]), r["position"]))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]["severity"]] = counts.get(row["verdict"]["severity"], 0) + 1
    worst_rank = max((r["rank"] for r in rows if r["verdict"]["severity"] != "failed"), default=0)
    attention = [r for r in rows if r["rank"] >= severity_rank("warning") and r["rank"] < 4]
    failed = [r for r in rows if r["verdict"]["severity"] == "failed"]
    hrefs = {display_text(r["host"].get("name")): r["href"] for r in rows}
    links = sorted(
        (dict(link) for link in _list(summary.get("links")) if isinstance(link, Mapping)),
        key=lambda link: -_num(link.get("count")),
    )
    for link in links:
        link["from_href"] = hrefs.get(display_text(link.get("from")))
        link["to_href"] = hrefs.get(display_text(link.get("to")))
    fleet_severity = SEVERITIES[worst_rank] if rows else "ok"
    if not attention and failed and len(failed) == len(rows):
        fleet_severity = "failed"
    return {
        "run": run,
        "rows": rows,
        "counts": [
            (s, counts[s], severity_class(s))
            for s in sorted(counts, key=lambda s: -_ATTENTION.get(s, 0))
        ],
        "attention": attention,
        "failed": failed,
        "fleet_severity": fleet_severity,
        "fleet_class": severity_class(fleet_severity),
        "links": links,
        "matrix": link_matrix(links),
        "baseline": fleet_view(summary.get("baseline"), hrefs),
    }


# ---------------------------------------------------------------------------------------------
# Templates


class _TemplateDir(Protocol):
    def joinpath(self, child: str, /) -> Any: ...


def _template_root() -> _TemplateDir:
    """The installed fleetrst.report_templates package, else report_templates/ in the checkout."""
    try:
        return importlib.resources.files("fleetrst.report_templates")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "report_templates"


_NAME = re.compile(r"^_?[a-z][a-z0-9_.-]*$")  # _name: a partial that pages include


def _read(name: str) -> str:
    if not _NAME.match(name):
        raise jinja2.TemplateNotFound(name)
    try:
        return str(_template_root().joinpath(name).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise jinja2.TemplateNotFound(name) from exc


def _asset(name: str) -> Markup:
    """A CSS or JS file of the template package, to inline (pages must work offline)."""
    return Markup(_read(name))


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_read),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,  # a missing key renders empty, it does not raise
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        rate=fmt_rate,
        int=fmt_int,
        bytes=fmt_bytes,
        seconds=fmt_seconds,
        time=fmt_time,
        offset=fmt_offset,
        sev=severity_class,
    )
    env.globals.update(asset=_asset)
    return env


def _render(template: str, context: dict[str, Any], script: str | None = None) -> str:
    # The page may run only its own inline script: a CSP hash of it, no other source at all.
    # Anything that slipped past escaping could neither run nor fetch.
    script_text = _read(script) if script else ""
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; " + (
        f"script-src {_csp_hash(script_text)}" if script else "script-src 'none'"
    )
    return (
        _environment()
        .get_template(template)
        .render(**context, csp=csp, script=Markup(script_text) if script else None)
    )


def render_host(run: Mapping[str, Any], host: Mapping[str, Any]) -> str:
    """The HTML page of one host: verdict, findings, charts, counters, packets, captures, facts."""
    return _render("host.html.j2", _host_context(_dict(run), host))


def render_index(summary: Mapping[str, Any]) -> str:
    """The fleet page: one sortable row per host and who resets whom."""
    return _render("index.html.j2", _index_context(summary), script="sort.js")


# ---------------------------------------------------------------------------------------------
# JUnit


def _findings_text(findings: Iterable[Mapping[str, Any]]) -> str:
    lines = []
    for finding in findings:
        line = f"[{finding.get('severity')}] {finding.get('summary') or finding.get('kind')}"
        if finding.get("next_step"):
            line += f"\n    next step: {finding.get('next_step')}"
        lines.append(line)
    return "\n".join(lines)


def junit_xml(summary: Mapping[str, Any], fail_on: str = "warning", regression: bool = False) -> str:
    """JUnit XML: one testcase per host; a failure at a finding >= fail_on, an error if it failed.

    fail_on is info, warning or critical, or "never" to report findings without failing.
    With regression, only findings new since the baseline (``baseline: new``) can fail a host.
    """
    if fail_on == "never":
        threshold = math.inf
    elif fail_on in FINDING_SEVERITIES:
        threshold = severity_rank(fail_on)
    else:
        raise ValueError(f"fail_on must be one of {', '.join(FINDING_SEVERITIES)} or never")
    run = _dict(summary.get("run"))
    hosts = [h for h in _list(summary.get("hosts")) if isinstance(h, Mapping)]
    suite = ET.Element("testsuite", name="fleetrst")
    failures = errors = 0
    for host in hosts:
        seconds = _num(_dict(host.get("window")).get("seconds"))
        case = ET.SubElement(
            suite,
            "testcase",
            classname="fleetrst.scan",
            name=xml_text(host.get("name")),
            time=f"{seconds:.3f}",
        )
        findings = [f for f in _list(host.get("findings")) if isinstance(f, Mapping)]
        if host.get("status") == "failed":
            errors += 1
            message = xml_text(host.get("error") or "host failed")
            error = ET.SubElement(case, "error", message=message, type="HostError")
            error.text = message
        else:
            failing = [
                f
                for f in findings
                if severity_rank(f.get("severity")) >= threshold
                and (not regression or f.get("baseline") == "new")
            ]
            if failing:
                failures += 1
                worst = max(failing, key=lambda f: severity_rank(f.get("severity")))
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=xml_text(
                        ("new since the baseline: " if regression else "")
                        + str(worst.get("summary") or worst.get("kind"))
                    ),
                    type=xml_text(worst.get("severity")),
                )
                failure.text = xml_text(_findings_text(failing))
        out = ET.SubElement(case, "system-out")
        out.text = xml_text(
            "\n".join(filter(None, [host_verdict(host)["text"], _findings_text(findings)]))
        )
    suite.set("tests", str(len(hosts)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    if run.get("started"):
        suite.set("timestamp", xml_text(run.get("started")))
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


# ---------------------------------------------------------------------------------------------
# Files


def _write(path: Path, text: str) -> None:
    # backslashreplace: a lone surrogate in some host's text must not lose the whole run's output.
    path.write_text(text, encoding="utf-8", errors="backslashreplace")


def write_reports(
    run_dir: Path, summary: Mapping[str, Any], fail_on: str = "warning", regression: bool = False
) -> None:
    """Write summary.json, each host's report.html, index.html and junit.xml into run_dir.

    A host whose report path is missing, absolute or climbs out of run_dir gets no page.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write(
        run_dir / "summary.json",
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n",
    )
    run = _dict(summary.get("run"))
    for host in _list(summary.get("hosts")):
        if not isinstance(host, Mapping):
            continue
        relative = _safe_relpath(host.get("report"))
        if relative is None:
            continue
        target = run_dir.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, render_host(run, host))
    _write(run_dir / "index.html", render_index(summary))
    _write(run_dir / "junit.xml", junit_xml(summary, fail_on, regression))
