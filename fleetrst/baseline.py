"""Compare a run with an earlier one (its baseline): what is new, what is gone, what changed.

Everything here works on summary dicts (summary.json as fleetrst or the Ansible path wrote it) and
is pure but for `load_summary`. Findings of the two runs are matched by identity, not by text:

- kind, network namespace (a finding's ``netns``, null for the host's own: matched by its
  container id, else its name under /run/netns, else its main process' name, since inodes and
  PIDs change when a container restarts) and interface;
- then where: the service port for findings about a local service (``local_dead_service``,
  ``refused``, ``abort``, ``listen_overflow``, ``stray``: the client side of a connection uses
  ephemeral ports and the local address may be any of the host's), the remote endpoint for resets
  the host received, and the local endpoint as written for everything else (a scan's ``ADDR:*``).

Rates are compared with a noise rule (`rate_change`): a rate has changed only when it at least
doubled or halved *and* moved by at least 1 reset/s, so that 0.1/s → 0.3/s is no news but
0.1/s → 5/s is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .analysis import severity_rank
from .errors import FleetrstError

RATE_FACTOR = 2.0
RATE_MIN_DELTA = 1.0  # resets per second
RULE_TEXT = (
    f"a rate changed when it at least doubled or halved and moved by at least "
    f"{RATE_MIN_DELTA:g} reset/s"
)
RATES = ("sent_per_s", "received_per_s")
# Findings about a local service: matched by the service port alone.
SERVICE_KINDS = frozenset({"local_dead_service", "refused", "abort", "listen_overflow", "stray"})
CHANGES = ("new", "still", "gone")


class BaselineError(FleetrstError):
    """A baseline (or a run for a trend) cannot be read; the message names the path."""


# ---------------------------------------------------------------------------------------------
# Reading


def load_summary(path: Path) -> dict[str, Any]:
    """A run's summary from a run directory or its summary.json.

    A run directory without summary.json (collected but not analyzed yet, as the Ansible path
    leaves it) is analyzed in memory; nothing is written into it.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "summary.json").is_file():
            path = path / "summary.json"
        elif (path / "run.json").is_file():
            from .analysis import analyze_run

            try:
                return analyze_run(path)
            except (OSError, ValueError) as exc:
                raise BaselineError(f"{path}: cannot analyze this run directory: {exc}") from exc
        else:
            raise BaselineError(
                f"{path}: not a fleetrst run directory (no summary.json, no run.json)"
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BaselineError(f"{path}: no such file or directory") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list):
        raise BaselineError(f"{path}: not a fleetrst summary (no list of hosts)")
    return data


# ---------------------------------------------------------------------------------------------
# Matching and the noise rule


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[-1] if ":" in endpoint else endpoint


def netns_key(netns: object) -> str | None:
    """A finding's namespace as matched across runs, or None for the host's own."""
    if netns is None or netns == "":
        return None
    if not isinstance(netns, Mapping):
        return _text(netns)
    for prefix, key in (("container", "container"), ("netns", "name"), ("process", "comm"),
                        ("inode", "inode")):
        if netns.get(key):
            return f"{prefix} {_text(netns.get(key))}"
    return "namespace"


def finding_key(finding: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The identity of a finding across runs: (kind, netns, interface, where)."""
    kind = _text(finding.get("kind"))
    local = _text(finding.get("local"))
    if kind in SERVICE_KINDS:
        where = "port " + _port(local)
    elif kind.startswith("received_"):
        peers = finding.get("peers")
        first = peers[0] if isinstance(peers, list) and peers else None
        where = "from " + _text(first) if first is not None else "at " + local
    else:
        where = local
    return (kind, _text(netns_key(finding.get("netns"))), _text(finding.get("interface")), where)


def _rate(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def rate_change(before: object, after: object) -> str:
    """ "up", "down" or "same" by the noise rule; "unknown" when either rate is missing."""
    old, new = _rate(before), _rate(after)
    if old is None or new is None:
        return "unknown"
    if abs(new - old) < RATE_MIN_DELTA:
        return "same"
    low, high = sorted((old, new))
    if high < RATE_FACTOR * low:
        return "same"
    return "up" if new > old else "down"


def _findings(host: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if host is None:
        return []
    return [f for f in host.get("findings") or [] if isinstance(f, Mapping)]


def _by_count(finding: Mapping[str, Any]) -> tuple[int, float]:
    return (-severity_rank(finding.get("severity")), -(_rate(finding.get("per_s")) or 0.0))


def match_findings(
    current: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """Pairs (current, baseline) by `finding_key`: (f, None) is new, (None, f) is gone.

    Two findings of one key in a run (one port on two addresses, say) pair up worst with worst.
    """
    now: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    then: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for f in current:
        now[finding_key(f)].append(f)
    for f in baseline:
        then[finding_key(f)].append(f)
    pairs: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
    for key in list(now) + [k for k in then if k not in now]:
        a = sorted(now.get(key, []), key=_by_count)
        b = sorted(then.get(key, []), key=_by_count)
        for i in range(max(len(a), len(b))):
            pairs.append((a[i] if i < len(a) else None, b[i] if i < len(b) else None))
    return pairs


def _brief(finding: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": _text(finding.get("kind")),
        "severity": _text(finding.get("severity")) or "info",
        "interface": _text(finding.get("interface")),
        "netns": netns_key(finding.get("netns")),
        "local": _text(finding.get("local")),
        "summary": _text(finding.get("summary")),
    }


def _scanned(host: Mapping[str, Any] | None) -> bool:
    return host is not None and host.get("status") != "failed"


def _reset_rate(host: Mapping[str, Any] | None, name: str) -> float | None:
    if host is None or host.get("status") == "failed":
        return None
    resets = host.get("resets")
    return _rate(resets.get(name)) if isinstance(resets, Mapping) else None


# ---------------------------------------------------------------------------------------------
# Comparing


def compare_host(
    current: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One host's comparison: status, rates and findings marked new, still or gone.

    Findings are compared only when the host was scanned now; when the baseline lacks the host
    or could not scan it, every finding of this run counts as new.
    """
    before = baseline.get("status") if baseline is not None else None
    after = current.get("status") if current is not None else None
    rates: dict[str, dict[str, Any]] = {}
    for name in RATES:
        old, new = _reset_rate(baseline, name), _reset_rate(current, name)
        rates[name] = {"before": old, "after": new, "change": rate_change(old, new)}
    entries: list[dict[str, Any]] = []
    compared = _scanned(current)
    if compared:
        old_findings = _findings(baseline) if _scanned(baseline) else []
        for now, then in match_findings(_findings(current), old_findings):
            source = now if now is not None else then
            assert source is not None
            entry = _brief(source)
            entry["change"] = "new" if then is None else "gone" if now is None else "still"
            entry["per_s"] = _rate(now.get("per_s")) if now is not None else None
            entry["per_s_before"] = _rate(then.get("per_s")) if then is not None else None
            entry["severity_before"] = (
                (_text(then.get("severity")) or None) if then is not None else None
            )
            entry["rate_change"] = (
                rate_change(entry["per_s_before"], entry["per_s"])
                if entry["change"] == "still"
                else None
            )
            entries.append(entry)
    order = {c: i for i, c in enumerate(CHANGES)}
    entries.sort(key=lambda e: (order[e["change"]], -severity_rank(e["severity"])))
    return {
        "in_baseline": baseline is not None,
        "compared": compared,
        "status": {
            "before": before,
            "after": after,
            "changed": baseline is not None and before != after,
        },
        "rates": rates,
        "counts": {c: sum(1 for e in entries if e["change"] == c) for c in CHANGES},
        "findings": entries,
    }


def _hosts(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    hosts: dict[str, Mapping[str, Any]] = {}
    for host in summary.get("hosts") or []:
        if isinstance(host, Mapping) and host.get("name") is not None:
            hosts.setdefault(str(host["name"]), host)
    return hosts


def _run_ref(summary: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    run = summary.get("run") if isinstance(summary.get("run"), Mapping) else {}
    assert isinstance(run, Mapping)
    window = run.get("window") if isinstance(run.get("window"), Mapping) else {}
    assert isinstance(window, Mapping)
    return {
        "source": source,
        "id": _text(run.get("id")) or None,
        "start": window.get("start"),
        "seconds": window.get("seconds"),
    }


def compare(
    current: Mapping[str, Any], baseline: Mapping[str, Any], source: str | None = None
) -> dict[str, Any]:
    """The fleet's comparison with a baseline summary, with each host's (in ``hosts``)."""
    now, then = _hosts(current), _hosts(baseline)
    per_host = {name: compare_host(host, then.get(name)) for name, host in now.items()}
    new: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    for name, result in per_host.items():
        for entry in result["findings"]:
            if entry["change"] in ("new", "gone"):
                (new if entry["change"] == "new" else gone).append({"host": name, **entry})
    changed = [
        {"host": name, **entry}
        for name, result in per_host.items()
        for entry in result["findings"]
        if entry["change"] == "still"
        and (
            entry["rate_change"] in ("up", "down") or entry["severity_before"] != entry["severity"]
        )
    ]
    for entries in (new, gone, changed):
        entries.sort(key=lambda e: -severity_rank(e["severity"]))
    rate_changes = [
        {"host": name, "rate": rate, **values}
        for name, result in per_host.items()
        for rate, values in result["rates"].items()
        if values["change"] in ("up", "down")
    ]
    rate_changes.sort(key=lambda r: -abs((r["after"] or 0.0) - (r["before"] or 0.0)))
    missing = [
        {"host": name, "status": host.get("status"), "findings": len(_findings(host))}
        for name, host in then.items()
        if name not in now
    ]
    return {
        "against": _run_ref(baseline, source),
        "rule": {"factor": RATE_FACTOR, "min_delta_per_s": RATE_MIN_DELTA, "text": RULE_TEXT},
        "counts": {c: sum(r["counts"][c] for r in per_host.values()) for c in CHANGES},
        "hosts_added": [name for name in now if name not in then],
        "hosts_missing": missing,
        "status_changes": [
            {"host": name, "before": r["status"]["before"], "after": r["status"]["after"]}
            for name, r in per_host.items()
            if r["status"]["changed"]
        ],
        "rate_changes": rate_changes,
        "new": new,
        "gone": gone,
        "changed": changed,
        "hosts": per_host,
    }


def apply_baseline(
    summary: dict[str, Any], baseline: Mapping[str, Any], source: str | None = None
) -> dict[str, Any]:
    """Write the comparison into `summary` (``baseline`` at the top and on each host, and each
    current finding's ``baseline``: new or still); returns the fleet section."""
    result = compare(summary, baseline, source)
    per_host = result.pop("hosts")
    for host in summary.get("hosts") or []:
        if not isinstance(host, dict) or str(host.get("name")) not in per_host:
            continue
        section = per_host[str(host["name"])]
        host["baseline"] = {"against": result["against"], **section}
        if section["compared"]:
            then = _hosts(baseline).get(str(host["name"]))
            old = _findings(then) if _scanned(then) else []
            for now, before in match_findings(_findings(host), old):
                if isinstance(now, dict):
                    now["baseline"] = "new" if before is None else "still"
    summary["baseline"] = result
    return result


def regressions(summary: Mapping[str, Any], fail_on: str) -> list[tuple[str, Mapping[str, Any]]]:
    """New findings (marked by `apply_baseline`) at or above `fail_on`, as (host, finding)."""
    out = []
    for host in summary.get("hosts") or []:
        if not isinstance(host, Mapping) or host.get("status") == "failed":
            continue
        for f in _findings(host):
            if f.get("baseline") == "new" and severity_rank(f.get("severity")) >= severity_rank(
                fail_on
            ):
                out.append((str(host.get("name")), f))
    return out


def describe(section: Mapping[str, Any]) -> list[str]:
    """Plain lines for a terminal or a CI log: the counts, then each new and gone finding."""
    against = section.get("against") or {}
    counts = section.get("counts") or {}
    head = (
        f"baseline {against.get('id') or against.get('source') or '?'}: "
        f"{counts.get('new', 0)} new, {counts.get('gone', 0)} gone, {counts.get('still', 0)} still"
    )
    added = section.get("hosts_added") or []
    missing = [m.get("host") for m in section.get("hosts_missing") or []]
    if added:
        head += f"; hosts added: {', '.join(map(str, added))}"
    if missing:
        head += f"; hosts missing: {', '.join(map(str, missing))}"
    lines = [head]
    for change in section.get("status_changes") or []:
        lines.append(f"  {change['host']}: status {change['before']} -> {change['after']}")
    for r in section.get("rate_changes") or []:
        what = "sent" if r["rate"] == "sent_per_s" else "received"
        lines.append(
            f"  {r['host']}: resets {what} {r['before']:.2f}/s -> {r['after']:.2f}/s ({r['change']})"
        )
    for word, entries in (("NEW ", section.get("new") or []), ("gone", section.get("gone") or [])):
        for e in entries:
            lines.append(
                f"  {word} {e['host']}: [{e['severity']}] {e['kind']} {e['interface']} {e['local']}"
            )
    for e in section.get("changed") or []:
        rates = f"{e['per_s_before'] or 0:.2f}/s -> {e['per_s'] or 0:.2f}/s"
        lines.append(
            f"  still {e['host']}: [{e['severity']}] {e['kind']} {e['interface']} {e['local']} {rates}"
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Views for the report templates


def fleet_view(section: object, hrefs: Mapping[str, str | None]) -> dict[str, Any] | None:
    """The fleet page's baseline box: the section plus links to host pages (by host name)."""
    if not isinstance(section, Mapping):
        return None

    def linked(entries: Any) -> list[dict[str, Any]]:
        rows = [dict(e) for e in entries or [] if isinstance(e, Mapping)]
        for row in rows:
            row["href"] = hrefs.get(_text(row.get("host")))
        return rows

    return {
        "scope": "fleet",
        "against": section.get("against") or {},
        "rule": section.get("rule") or {},
        "counts": section.get("counts") or {},
        "added": linked({"host": name} for name in section.get("hosts_added") or []),
        "missing": linked(section.get("hosts_missing")),
        "status_changes": linked(section.get("status_changes")),
        "rate_changes": linked(section.get("rate_changes")),
        "new": linked(section.get("new")),
        "gone": linked(section.get("gone")),
        "changed": linked(section.get("changed")),
    }


def host_view(host: Mapping[str, Any]) -> dict[str, Any] | None:
    """The host page's baseline box, or None when the run was not compared."""
    section = host.get("baseline")
    if not isinstance(section, Mapping):
        return None
    return {"scope": "host", "rule": {"text": RULE_TEXT}, **section}
