"""One host folder into its summary entry, and a run directory into the summary."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..facts import KEY_COUNTERS, counter_deltas
from ..pcap import format_tcpdump_line
from .classify import annotate, classify, endpoint
from .hostfiles import CLOCK_SLACK_S, HostFiles, captured_interfaces, load_host, read_packets
from .links import link_hosts
from .namespaces import (
    analyze_namespaces,
    load_namespaces,
    place,
    read_cost,
    read_namespace_packets,
)
from .severity import alarms, order, raise_for_alarms, rate_level, worst_average


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from ..collect import iso
    return iso(ts)


def _real(ts: float | None, facts: dict[str, Any]) -> float | None:
    """A time read on the host's clock, on the orchestrator's clock instead."""
    offset = facts.get("clock_offset_s")
    if ts is None or not isinstance(offset, (int, float)):
        return ts
    return ts - offset


def _classification(hf: HostFiles) -> str:
    """Which rules decided: kernel reasons where the host traced them, else the packet alone."""
    return "kernel reasons + packet rules" if hf.trace_reasons else "packet rules"


def analyze_host(directory: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Analyze one host folder into its summary entry (see summary.schema.json)."""
    hf = load_host(directory)
    meta = hf.meta
    name = meta.get("name", directory.name)
    status = meta.get("status", "failed")
    base: dict[str, Any] = {
        "name": name,
        "address": meta.get("address", ""),
        "status": status,
        "error": meta.get("error"),
        "warnings": list(meta.get("notes", [])) + hf.notes,
        "report": f"{directory.name}/report.html",
        "findings": [],
    }
    if status == "failed" or hf.start is None or hf.end is None:
        if status != "failed":
            base["status"] = "failed"
            base["error"] = base["error"] or "no counters were collected"
        base["verdict"] = {"severity": "failed", "text": f"failed: {base['error']}"}
        return base

    seconds = float((hf.end.time or 0) - (hf.start.time or 0)) if hf.start.time and hf.end.time else 0.0
    if seconds <= 0:
        seconds = float(run.get("window", {}).get("seconds") or 1.0)
    # The counters' times are on the inner side of their reading (capture.sh), so that every
    # reset between them is in the counters' deltas too.
    lo, hi = hf.start.time or 0.0, hf.end.time or 0.0
    counters = counter_deltas(hf.start, hf.end, KEY_COUNTERS)
    raw, pcaps, problems = read_packets(hf, lo, hi)
    # Containers and pods: each namespace's packets, and the kernel's reasons placed among them.
    nss = load_namespaces(directory, hf)
    read_namespace_packets(nss, lo, hi)
    trace_notes = place(hf, raw, nss, (lo, hi))
    packets = annotate(hf, raw)
    findings = classify(hf, packets, seconds, counters)

    n_sent = sum(1 for x in packets if x.sent)
    n_recv = len(packets) - n_sent
    out_rsts = int(counters.get("OutRsts", {}).get("delta", 0))
    captured_ifaces = captured_interfaces(hf)
    if not captured_ifaces and out_rsts > 0:
        findings.append({
            "severity": rate_level(out_rsts / seconds), "kind": "counters_only", "interface": "*",
            "local": "", "peers": [], "count": out_rsts, "per_s": round(out_rsts / seconds, 3),
            "reason": None, "process": None,
            "summary": f"OutRsts rose by {out_rsts} ({out_rsts / seconds:.1f}/s) but nothing was captured "
                       f"on this host ({meta.get('error') or 'no capture'})",
            "next_step": "Give fleetrst root (become) and tcpdump on this host to see who sends them.",
            "evidence": {"samples": [], "counters": {"OutRsts": out_rsts}, "basis": "counters"},
        })
    elif captured_ifaces and out_rsts > n_sent * 1.5 + 3:
        capped = [str(pc["interface"]) for pc in pcaps if pc.get("capped")]
        problems.append(
            f"OutRsts rose by {out_rsts} but {n_sent} sent resets were captured: "
            + (f"the capture of {', '.join(capped)} hit its size cap (--cap-mb)" if capped else
               "the rest left through interfaces or network namespaces that were not captured")
        )

    by_iface: dict[str, dict[str, int]] = {i: {"sent": 0, "received": 0} for i in captured_ifaces}
    ports: dict[str, Counter[str]] = defaultdict(Counter)
    peers: dict[str, Counter[str]] = defaultdict(Counter)
    buckets = max(1, round(seconds))
    series: dict[str, list[int]] = {}
    t0 = hf.start.time or 0.0
    for x in packets:
        d = "sent" if x.sent else "received"
        iface = x.p.ifname or "?"
        by_iface.setdefault(iface, {"sent": 0, "received": 0})[d] += 1
        local = endpoint(x.p.src, x.p.sport) if x.sent else endpoint(x.p.dst, x.p.dport)
        peer = x.p.dst if x.sent else x.p.src
        ports[local][d] += 1
        peers[peer][d] += 1
        b = min(buckets - 1, max(0, int(x.p.ts - t0)))
        series.setdefault(f"{iface} {d}", [0] * buckets)[b] += 1
    top_ports = sorted(ports.items(), key=lambda kv: -(kv[1]["sent"] + kv[1]["received"]))[:10]
    top_peers = sorted(peers.items(), key=lambda kv: -(kv[1]["sent"] + kv[1]["received"]))[:10]
    sent_series = [sum(v[i] for k, v in series.items() if k.endswith(" sent")) for i in range(buckets)]
    # The counter covers what the captures missed; the captures show bursts inside the window.
    sent_avg = max(out_rsts / seconds, worst_average(sent_series))
    failed = max(0.0, counters.get("AttemptFails", {}).get("per_s") or 0.0)
    host_alarms = alarms(sent_avg, failed)
    raise_for_alarms(findings, host_alarms)
    for f in findings:
        f["netns"] = None  # the host's own namespace
    ns_findings, ns_summary = analyze_namespaces(nss, seconds)
    findings += ns_findings
    order(findings)

    facts = dict(meta.get("facts", {}))
    captured = set(captured_ifaces)
    facts["interfaces"] = [
        {"name": i.name, "index": idx, "up": i.up, "captured": i.name in captured,
         "addresses": hf.addrs.get(i.name, []),
         "skip_reason": None if i.name in captured else ("down" if not i.up else "not selected")}
        for idx, i in sorted(hf.links.items())
    ]
    missing = []
    facts["classification"] = _classification(hf)
    if hf.trace is None:
        missing.append("no kernel reset reasons (tcp:tcp_send_reset tracing unavailable): "
                       "classification used the packet rules")
    elif facts["classification"] == "packet rules":
        missing.append("this kernel's tcp:tcp_send_reset has no reason field: classification used "
                       "the packet rules")
    elif hf.trace.lost:
        missing.append(f"the trace buffer overwrote {hf.trace.lost} events: some reasons are unknown")
    offset = facts.get("clock_offset_s")
    if isinstance(offset, (int, float)) and abs(offset) > CLOCK_SLACK_S:
        problems.append(f"this host's clock is {offset:+.1f} s off the orchestrator's: its window was "
                        "scheduled on its own clock (the same real interval as the other hosts'), and "
                        "times here are the orchestrator's")
    facts["missing"] = missing + problems
    host = dict(base)
    host.update({
        # On the orchestrator's clock, like every other host's: the host's own may be off.
        "window": {"start": _iso(_real(hf.start.time, facts)), "end": _iso(_real(hf.end.time, facts)),
                   "seconds": round(seconds, 3)},
        "facts": facts,
        "counters": counters,
        "alarms": host_alarms,
        "resets": {"sent": n_sent, "received": n_recv, "sent_per_s": round(n_sent / seconds, 3),
                   "received_per_s": round(n_recv / seconds, 3), "by_interface": by_iface},
        "top_ports": [{"local": k, "sent": v["sent"], "received": v["received"]} for k, v in top_ports],
        "top_peers": [{"peer": k, "sent": v["sent"], "received": v["received"]} for k, v in top_peers],
        "timeline": {"bucket_s": 1.0, "start": _iso(_real(t0, facts)),
                     "series": [{"label": k, "values": v} for k, v in sorted(series.items())]},
        "findings": findings,
        "samples": [format_tcpdump_line(x.p) for x in packets[:20]],
        "pcaps": pcaps,
    })
    if nss.present or nss.items:
        host["namespaces"] = ns_summary
    cost = read_cost(directory)
    if cost:
        host["cost"] = cost
    host["warnings"] = host["warnings"] + problems + trace_notes
    host["verdict"] = verdict(host)
    return host


def verdict(host: dict[str, Any]) -> dict[str, str]:
    """One sentence and a severity for the top of the host page."""
    if host.get("status") == "failed":
        return {"severity": "failed", "text": f"failed: {host.get('error')}"}
    findings = host.get("findings") or []
    if not findings:
        secs = host.get("window", {}).get("seconds", 0)
        names = list(host.get("resets", {}).get("by_interface", {}))
        if len(names) > 4:
            ifs = f"{len(names)} interfaces ({', '.join(names[:3])}, ...)"
        else:
            ifs = ", ".join(names) or "no interface"
        extra = f" ({host['error']})" if host.get("error") else ""
        return {"severity": "ok", "text": f"No TCP resets in the {secs:.1f} s window on {ifs}{extra}."}
    top = findings[0]
    more = f" (+{len(findings) - 1} more finding{'s' if len(findings) > 2 else ''})" if len(findings) > 1 else ""
    return {"severity": top["severity"], "text": top["summary"] + more}


def _analyze_one(args: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    directory, run = args
    try:
        return analyze_host(Path(directory), run)
    except Exception as e:  # noqa: BLE001 - one broken host folder must not sink the others
        name = Path(directory).name
        return {"name": name, "address": "", "status": "failed", "findings": [],
                "error": f"analysis failed: {type(e).__name__}: {e}", "report": f"{name}/report.html",
                "verdict": {"severity": "failed", "text": f"analysis failed: {e}"}}


def analyze_run(run_dir: Path, jobs: int | None = None) -> dict[str, Any]:
    """Analyze every host folder of a run directory (in parallel) into the summary dict."""
    run = json.loads((run_dir / "run.json").read_text())
    dirs = [run_dir / h["directory"] for h in run.get("hosts", [])]
    if not dirs:
        dirs = sorted(p.parent for p in run_dir.glob("*/host.json"))
    args = [(str(d), run) for d in dirs]
    jobs = jobs or min(len(args), os.cpu_count() or 1)
    if jobs > 1 and len(args) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            hosts = list(ex.map(_analyze_one, args))
    else:
        hosts = [_analyze_one(a) for a in args]
    links = link_hosts(hosts)
    for h in hosts:
        if h.get("status") != "failed":
            h["verdict"] = verdict(h)
    return {"run": run, "hosts": hosts, "links": links}

