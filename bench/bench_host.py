"""What one window costs the host: CPU of tcpdump and of the host-side script, disk per reset.

    sudo python3 bench/bench_host.py [--window 10] [--rate 10000] [--small-cap-mb 1] [--json OUT]

Builds a one-host lab (fleetrst.lab), then runs `fleetrst scan` of it twice with a `--window`
second window; during each window a generator inside the host's namespace connects to a closed
port on 127.0.0.1 as fast as it can, at most `--rate` times a second, from the window's start to
its end only (and never more than rate x window connections). Every refused connect is one reset
on `lo` (`--generators` processes share the rate). The first scan uses the default size cap (64 MB per interface), the second
`--small-cap-mb`, small enough to be hit, to show what the report says then.

While the scans run, every process of the host's network namespace is sampled every 0.1 s
(/proc/PID/stat): the CPU seconds of each tcpdump, and of the host script (`capture.sh run`, its
own time plus what its helpers used: everything it reaped, less tcpdump). Bytes on disk per
captured reset come from the fetched capture files and the resets fleetrst read in them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CLOSED_PORT = 9  # nothing listens on discard in a lab host
TICK = os.sysconf("SC_CLK_TCK")

GENERATOR = r"""
import socket, sys, time
start, end, rate, port = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
limit = int(rate * (end - start)) + 1
while time.time() < start:
    time.sleep(min(0.05, max(0.0, start - time.time())))
n, t0 = 0, time.time()
while n < limit:
    now = time.time()
    if now >= end:
        break
    if n > rate * (now - t0):  # ahead of the rate: wait a little
        time.sleep(0.0005)
        continue
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        pass
    finally:
        s.close()
    n += 1
print(n, time.time() - t0)
"""


def netns_inode(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


class HostSampler(threading.Thread):
    """CPU seconds of tcpdump and of the host script's `run` shell in one network namespace."""

    def __init__(self, ns_link: str) -> None:
        super().__init__(daemon=True)
        self.ns = ns_link
        self.stop = threading.Event()
        self.tcpdump: dict[int, float] = {}  # pid -> last CPU seconds seen
        self.script: dict[int, tuple[float, float]] = {}  # pid -> (own, reaped children)

    def run(self) -> None:
        while not self.stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                try:
                    if os.readlink(f"/proc/{pid}/ns/net") != self.ns:
                        continue
                    stat = Path(f"/proc/{pid}/stat").read_text()
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                own = (int(fields[11]) + int(fields[12])) / TICK
                kids = (int(fields[13]) + int(fields[14])) / TICK
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                if name == "tcpdump":
                    self.tcpdump[pid] = own
                elif any(c.endswith(b"capture.sh") for c in cmd) and b"run" in cmd:
                    self.script[pid] = (own, kids)
            self.stop.wait(0.1)


def scan_with_load(lab: Any, window: float, rate: float, cap_mb: int | None,
                   work: Path, generators: int) -> dict[str, Any]:
    host = lab.hosts[0]
    ns_pid = next(int(p["pid"]) for p in json.loads((Path(lab.directory) / "lab.json")
                                                     .read_text())["processes"]
                  if p.get("role") == "sshd" and p.get("host") == host.name)
    sampler = HostSampler(netns_inode(ns_pid))
    sampler.start()
    out = work / "run"
    cmd = [sys.executable, "-m", "fleetrst", "scan", str(lab.inventory), "--known-hosts",
           str(lab.known_hosts), "--duration", f"{window:g}", "-o", str(out), "-q"]
    if cap_mb:
        cmd += ["--cap-mb", str(cap_mb)]
    scan = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    gens: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 120
        while not gens and scan.poll() is None and time.monotonic() < deadline:
            run = out / "run.json"
            try:
                w = json.loads(run.read_text()).get("window") or {}
            except (OSError, ValueError):
                w = {}
            if w.get("start"):
                import datetime as dt
                start = dt.datetime.fromisoformat(w["start"].replace("Z", "+00:00")).timestamp()
                gens = [subprocess.Popen(
                    ["ip", "netns", "exec", host.namespace, sys.executable, "-c", GENERATOR,
                     f"{start:.3f}", f"{start + window:.3f}", str(rate / generators),
                     str(CLOSED_PORT)], stdout=subprocess.PIPE, text=True)
                    for _ in range(generators)]
            else:
                time.sleep(0.05)
        text, _ = scan.communicate(timeout=300)
    finally:
        if scan.poll() is None:
            scan.kill()
        outs = []
        for gen in gens:
            try:
                outs.append(gen.communicate(timeout=window + 30)[0])
            except subprocess.TimeoutExpired:
                gen.kill()
                outs.append(gen.communicate()[0])
        sampler.stop.set()
        sampler.join()
    done = [(o.split() + ["0", "0"])[:2] for o in outs]
    sent = str(sum(int(n) for n, _ in done))
    took = str(max((float(t) for _, t in done), default=0.0))
    summary = json.loads((out / "summary.json").read_text())
    (h,) = summary["hosts"]
    if h["status"] == "failed":
        raise SystemExit(f"bench_host: the scan of {h['name']} failed: {h.get('error')}")
    hdir = out / host.name
    meta = json.loads((hdir / "host.json").read_text())
    pcaps = {n: f["size"] for n, f in meta["files"].items() if n.startswith("rst-")}
    from fleetrst.fastpcap import aggregate_resets
    resets = {n: aggregate_resets(hdir / n).info.resets for n in pcaps}
    tcpdump_cpu = sum(sampler.tcpdump.values())
    own, kids = (sum(x[0] for x in sampler.script.values()),
                 sum(x[1] for x in sampler.script.values()))
    captured = sum(resets.values())
    return {
        "cap_mb": cap_mb or 64, "window_s": window, "generated": int(sent),
        "generated_per_s": round(int(sent) / float(took), 0) if float(took) else 0,
        "captured": captured, "counters_out_rsts": h["counters"].get("OutRsts", {}).get("delta"),
        "tcpdump_cpu_s": round(tcpdump_cpu, 2), "tcpdump_processes": len(sampler.tcpdump),
        "script_cpu_s": round(own + max(0.0, kids - tcpdump_cpu), 2),
        "files": pcaps, "resets_per_file": resets,
        "bytes_per_reset": round(sum(pcaps[n] for n in pcaps if resets[n]) / captured, 1)
        if captured else None,
        "cap_notes": [w for w in h.get("warnings", []) + h.get("problems", [])
                      if "cap" in w] + [n for n in meta.get("notes", []) if "cap" in n],
        "exit_codes": (hdir / "exit-codes.txt").read_text() if (hdir / "exit-codes.txt").exists()
        else None,
        "scan_rc": scan.returncode, "scan_output": text[-2000:],
    }


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               "?")
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"load average {os.getloadavg()[0]:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10_000.0)
    ap.add_argument("--small-cap-mb", type=int, default=1)
    ap.add_argument("--generators", type=int, default=3, help="generator processes, sharing --rate")
    ap.add_argument("--keep", help="keep the run directories in this directory")
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_host needs root (network namespaces)", file=sys.stderr)
        return 2
    from fleetrst.lab import lab_down, lab_up
    base = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="fleetrst-host-"))
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        lab = lab_up(base / "lab", 1, seed=1, scenarios=["quiet"], ttl=900)
        try:
            for cap in (None, a.small_cap_mb):
                work = base / f"cap-{cap or 64}"
                work.mkdir()
                rows.append(scan_with_load(lab, a.window, a.rate, cap, work, a.generators))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "scan_output"}),
                      file=sys.stderr, flush=True)
        finally:
            lab_down(base / "lab")
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"machine: {machine()}\n")
    print("| size cap | resets made (/s) | resets captured | OutRsts | tcpdump CPU s | "
          "host script CPU s | bytes on disk per reset | files | what the report says |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        files = ", ".join(f"{n} {s:,} B" for n, s in sorted(r["files"].items()))
        notes = "; ".join(r["cap_notes"]) or "–"
        print(f"| {r['cap_mb']} MB | {r['generated']:,} ({r['generated_per_s']:,.0f}) | "
              f"{r['captured']:,} | {r['counters_out_rsts']} | {r['tcpdump_cpu_s']} | "
              f"{r['script_cpu_s']} | {r['bytes_per_reset']} | {files} | {notes} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
