"""Reading a big reset capture: fleetrst against tshark, tcpdump, dpkt and scapy, side by side.

    python3 bench/bench_analysis.py [-n 1000000] [--link en10mb,sll2] [--scapy-n 20000]
                                    [--big 10000000] [--dir DIR] [--json OUT]

For each link type it writes a capture of `-n` resets (bench/gen_pcap.py, seed 1) and has every
tool parse it and classify it the same simple way: resets per local endpoint (source address and
port) and kind — stray without ACK, refusal for seq 0/window 0/no options, else abort. Each tool
runs in a process of its own, one after the other, so that its CPU time and peak RSS are its own
(os.wait4). tcpdump only prints (to /dev/null); tshark's fields go through a pipe to the same
classifier. scapy reads a smaller capture of the same kind (`--scapy-n`), its rate scaled. Every
tool's counts are checked against fleetrst's. Rates are packets per CPU second (one core; the
machine may be shared) and per wall second; ratios are to dpkt, measured in the same run.
`--big N` also reads an N-packet capture with fleetrst alone, for its peak memory.
Tools that are not installed are listed as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

Key = tuple[str, int, str]

TSHARK_FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "tcp.flags", "tcp.seq_raw",
                 "tcp.window_size_value", "tcp.hdr_len"]


def kind(flags: int, seq: int, window: int, options_len: int) -> str:
    """The classification every tool does: the design notes' packet rules."""
    if not flags & 0x10:
        return "stray"
    return "refusal" if seq == 0 and window == 0 and options_len == 0 else "abort"


# ------------------------------------------------------------------ workers (one process each)

def w_fleetrst(path: str, ifnames: dict[int, str]) -> tuple[int, Counter[Key]]:
    from fleetrst.fastpcap import aggregate_resets
    agg = aggregate_resets(path, ifnames=ifnames)
    out: Counter[Key] = Counter()
    for e, n in agg.endpoints().items():
        out[(e.src, e.sport, e.cls)] += n
    return agg.info.packets, out


def w_fleetrst_iter(path: str, ifnames: dict[int, str]) -> tuple[int, Counter[Key]]:
    from fleetrst.pcap import PcapInfo, iter_resets
    info = PcapInfo()
    out: Counter[Key] = Counter()
    for p in iter_resets(path, ifnames=ifnames, info=info):
        out[(p.src, p.sport, kind(p.flags, p.seq, p.window, p.options_len))] += 1
    return info.packets, out


def w_dpkt(path: str, ifnames: dict[int, str]) -> tuple[int, Counter[Key]]:
    import dpkt
    out: Counter[Key] = Counter()
    n = 0
    ntop, af4, af6 = socket.inet_ntop, socket.AF_INET, socket.AF_INET6
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = dpkt.sll2.SLL2 if reader.datalink() == 276 else dpkt.ethernet.Ethernet
        for _ts, buf in reader:
            n += 1
            ip = link(buf).data
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.flags & 4:
                continue
            src = ntop(af4 if isinstance(ip, dpkt.ip.IP) else af6, ip.src)
            out[(src, tcp.sport, kind(tcp.flags, tcp.seq, tcp.win, tcp.off * 4 - 20))] += 1
    return n, out


def w_scapy(path: str, ifnames: dict[int, str]) -> tuple[int, Counter[Key]]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader
    out: Counter[Key] = Counter()
    n = 0
    for pkt in PcapReader(path):
        n += 1
        if TCP not in pkt:
            continue
        tcp = pkt[TCP]
        if not int(tcp.flags) & 4:
            continue
        src = pkt[IP].src if IP in pkt else pkt[IPv6].src
        out[(src, tcp.sport, kind(int(tcp.flags), tcp.seq, tcp.window, tcp.dataofs * 4 - 20))] += 1
    return n, out


def w_tshark(path: str, ifnames: dict[int, str]) -> tuple[int, Counter[Key]]:
    cmd = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "separator=,"]
    for fld in TSHARK_FIELDS:
        cmd += ["-e", fld]
    out: Counter[Key] = Counter()
    n = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            n += 1
            s4, s6, sport, flags, seq, win, hlen = line.rstrip("\n").split(",")
            if not sport or not int(flags, 16) & 4:
                continue
            out[(s4 or s6, int(sport), kind(int(flags, 16), int(seq), int(win), int(hlen) - 20))] += 1
    return n, out


WORKERS = {"fleetrst": w_fleetrst, "fleetrst-iter": w_fleetrst_iter, "dpkt": w_dpkt,
           "scapy": w_scapy, "tshark": w_tshark}
NEEDS = {"dpkt": "dpkt", "scapy": "scapy", "tshark": "tshark", "tcpdump": "tcpdump"}


def worker(tool: str, path: str, ifnames_file: str | None, out: str) -> None:
    from fleetrst.pcap import ifnames_from_ip_link
    ifnames = ifnames_from_ip_link(Path(ifnames_file).read_text()) if ifnames_file else {}
    n, counts = WORKERS[tool](path, ifnames)
    Path(out).write_text(json.dumps({"packets": n,
                                     "counts": sorted([*k, v] for k, v in counts.items())}))


# ------------------------------------------------------------------ the parent

def installed(tool: str) -> bool:
    need = NEEDS.get(tool)
    if need is None:
        return True
    if need in ("tshark", "tcpdump"):
        return shutil.which(need) is not None
    import importlib.util
    return importlib.util.find_spec(need) is not None


def measure(cmd: list[str], tmp: Path) -> dict[str, float]:
    """Run `cmd`, return its wall time, CPU time (its waited-for children included), peak RSS.

    Through GNU time where it is installed: a process keeps the peak RSS of the one that
    started it (the high-water mark survives exec), and time's is small, this script's is not.
    """
    gnu = Path("/usr/bin/time")
    report = tmp / "time.txt"
    if gnu.exists():
        cmd = [str(gnu), "-f", "%U %S %M", "-o", str(report), *cmd]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} exited {os.waitstatus_to_exitcode(status)}")
    if gnu.exists():
        user, sys_, rss = report.read_text().split()[-3:]
        return {"wall_s": wall, "cpu_s": float(user) + float(sys_), "rss_mb": int(rss) / 1024}
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def run_tool(tool: str, path: Path, ifnames: Path | None, tmp: Path) -> dict[str, Any]:
    if tool == "tcpdump":
        m = measure(["tcpdump", "-nr", str(path)], tmp)
        return {**m, "packets": None, "counts": None}
    out = tmp / f"{tool}-{path.stem}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, str(path),
           "--out", str(out)]
    if ifnames:
        cmd += ["--ifnames", str(ifnames)]
    m = measure(cmd, tmp)
    doc = json.loads(out.read_text())
    return {**m, "packets": doc["packets"], "counts": doc["counts"]}


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {load:.1f} at start")


def rows_for(link: str, n: int, scapy_n: int, tools: list[str], d: Path,
             log: Any) -> Iterator[dict[str, Any]]:
    import gen_pcap
    path = d / f"resets-{link}-{n}.pcap"
    if not path.exists():
        gen_pcap.generate(path, n, link=link, seed=1)
    small = d / f"resets-{link}-{scapy_n}.pcap"
    if not small.exists():
        gen_pcap.generate(small, scapy_n, link=link, seed=1)
    ifnames = d / "ip-link.txt"
    ifnames.write_text(gen_pcap.IP_LINK)
    ifn = ifnames if link == "sll2" else None
    ref: dict[Path, Any] = {}
    for tool in ["fleetrst"] + [t for t in tools if t != "fleetrst"]:
        if not installed(tool):
            yield {"link": link, "tool": tool, "missing": True}
            continue
        f = small if tool == "scapy" else path
        log(f"  {link}: {tool} on {f.name} ...")
        r = run_tool(tool, f, ifn, d)
        if tool == "fleetrst":
            ref[path] = r["counts"]
        if f not in ref:
            ref[f] = run_tool("fleetrst", f, ifn, d)["counts"]
        r["same"] = None if r["counts"] is None else r["counts"] == ref[f]
        r.update(link=link, tool=tool, n=scapy_n if tool == "scapy" else n, file=f.name,
                 bytes=f.stat().st_size)
        r.pop("counts", None)
        yield r


def per_s(n: int, seconds: float) -> float:
    """n per second, with time measured no finer than 10 ms (GNU time's resolution): on a tiny
    run, a lower bound rather than a division by zero."""
    return n / max(seconds, 0.01)


def table(rows: list[dict[str, Any]]) -> str:
    base = {r["link"]: per_s(r["n"], r["cpu_s"]) for r in rows
            if r.get("tool") == "dpkt" and not r.get("missing") and not r.get("big")}
    out = [("| link | tool | packets | wall s | CPU s | packets/s (CPU) | packets/s (wall) "
            "| × dpkt (CPU) | peak RSS MB | same counts |"),
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("missing"):
            out.append(f"| {r['link']} | {r['tool']} | not installed | | | | | | | |")
            continue
        rate = per_s(r["n"], r["cpu_s"])
        ratio = f"{rate / base[r['link']]:.1f}" if r["link"] in base else "–"
        note = " (print only)" if r["tool"] == "tcpdump" else ""
        same = {True: "yes", False: "NO", None: "–"}[r["same"]]
        out.append(f"| {r['link']} | {r['tool']}{note} | {r['n']:,} | {r['wall_s']:.2f} | "
                   f"{r['cpu_s']:.2f} | {rate:,.0f} | {per_s(r['n'], r['wall_s']):,.0f} | {ratio} | "
                   f"{r['rss_mb']:.0f} | {same} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--link", default="en10mb,sll2")
    ap.add_argument("--scapy-n", type=int, default=20_000)
    ap.add_argument("--tools", default="fleetrst,fleetrst-iter,dpkt,scapy,tshark,tcpdump")
    ap.add_argument("--big", type=int, default=0, help="also read an N-packet capture (memory)")
    ap.add_argument("--dir", help="where the captures go (default: a temporary directory, "
                                  "removed at the end)")
    ap.add_argument("--json", help="write the rows here too")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--ifnames", help=argparse.SUPPRESS)
    ap.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker, a.path, a.ifnames, a.out)
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tools = a.tools.split(",")
    own = a.dir is None
    d = Path(a.dir or tempfile.mkdtemp(prefix="fleetrst-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {machine()}\n")
        rows: list[dict[str, Any]] = []
        for link in a.link.split(","):
            rows += list(rows_for(link, a.n, a.scapy_n, tools, d, log))
        print(table(rows))
        if a.big:
            import gen_pcap
            big = d / f"resets-en10mb-{a.big}.pcap"
            if not big.exists():
                log(f"  writing {a.big:,} packets ...")
                gen_pcap.generate(big, a.big, link="en10mb", seed=2)
            log("  fleetrst on the big capture ...")
            r = run_tool("fleetrst", big, None, d)
            r.pop("counts")
            r.update(link="en10mb", tool="fleetrst", n=a.big, file=big.name,
                     bytes=big.stat().st_size, big=True)
            rows.append(r)
            print(f"\n{a.big:,} packets ({big.stat().st_size / 1e6:,.0f} MB), fleetrst: "
                  f"{r['cpu_s']:.1f} CPU s, {r['wall_s']:.1f} s wall, "
                  f"{per_s(a.big, r['cpu_s']):,.0f} packets/s (CPU), peak RSS {r['rss_mb']:.0f} MB")
        if a.json:
            Path(a.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    finally:
        if own:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
