#!/usr/bin/env python3
"""Record the lab run directories in this directory (root, iproute2, sshd, tcpdump needed).

Each recording builds a lab (fleetrst.lab) of one or two hosts, runs extra traffic where the lab
has no scenario for it, scans the lab with the real CLI over SSH for 5 s, keeps the raw run
directory (reports removed) and writes expected.json from the lab's ground truth. Everything
started here is stopped by PID and every lab taken down, also on failure; traffic goes only to
the lab namespaces (198.18.0.0/24) and their loopbacks, bounded in count and time.

    sudo python3 record_runs.py [NAME ...]        # default: every recording
    sudo python3 record_runs.py --seed N NAME     # reproduce one
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FILTER = "(tcp[tcpflags] & (tcp-rst) != 0) or (ip6 and ip6[6] = 6 and ip6[53] & 4 != 0)"
DURATION = 5
REPORTS = ("report.html", "index.html", "summary.json", "junit.xml")
# name: lab scenarios (in host order), and what else runs during the window.
RECORDINGS: dict[str, dict[str, Any]] = {
    "closed-port": {"scenarios": ["closed_port"]},
    "linger-abort": {"scenarios": ["linger_abort"]},
    "unread-close": {"scenarios": ["unread_close"]},
    "listen-overflow": {"scenarios": ["listen_overflow"]},
    "quiet": {"scenarios": ["quiet"]},
    # The scanner is the other host; it is also captured with `tcpdump -i any`.
    "port-sweep": {"scenarios": ["port_sweep", "closed_port"], "any": "closed_port"},
    # A quiet lab host running stray_traffic(): time-wait resets and bare ACKs to a closed port.
    "stray": {"scenarios": ["quiet"], "stray": True},
}


# --------------------------------------------------------------- extra traffic (inside a netns)

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _bare_ack(raw: socket.socket, sport: int, dport: int, ack: int) -> None:
    """A bare ACK from 127.0.0.1:sport to 127.0.0.1:dport, where no socket is: answered [R]."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, ack, 5 << 4, 0x10, 1024, 0, 0)
    lo = socket.inet_aton("127.0.0.1")
    pseudo = lo + lo + struct.pack("!BBH", 0, 6, len(seg))
    seg = seg[:16] + struct.pack("!H", _csum(pseudo + seg)) + seg[18:]
    raw.sendto(seg, ("127.0.0.1", 0))


def stray_traffic(name: str, tw_port: int, stray_port: int, seconds: float) -> None:
    """Twice a second: a server closes an idle connection and the client then sends data into
    the server's FIN-WAIT-2 time-wait socket (reset, TCP_TIMEWAIT_SOCKET). Once a second: a bare
    ACK to a closed port (reset without ACK, NO_SOCKET). Bounded by `seconds`."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME: what ss shows
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", tw_port))
    srv.listen(8)
    srv.settimeout(1.0)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    rng = random.Random(tw_port)
    start = time.monotonic()
    for tick in range(int(seconds * 2)):
        time.sleep(max(0.0, start + tick * 0.5 - time.monotonic()))
        cli = socket.create_connection(("127.0.0.1", tw_port), timeout=1.0)
        conn, _ = srv.accept()
        conn.close()  # FIN: the server side ends in FIN-WAIT-2 as a time-wait socket
        try:
            cli.recv(16)  # the FIN
            time.sleep(0.02)
            cli.sendall(b"late data\n")
            cli.recv(16)
        except OSError:
            pass
        cli.close()
        if tick % 2 == 0:
            _bare_ack(raw, rng.randrange(40000, 60000), stray_port, rng.randrange(1, 2**32))
    srv.close()
    raw.close()


# --------------------------------------------------------------- recording (root namespace)

def _expected(host: Any, hosts: list[Any]) -> dict[str, Any]:
    """The ground truth of one lab host, as the findings it must produce (first = the top)."""
    e = host.expected
    by_name = {h.name: h for h in hosts}
    out: dict[str, Any] = {"scenario": host.scenario, "address": host.address, "findings": [],
                           "warning": host.scenario not in ("quiet", "dead")}
    if e.get("kind") == "scan":
        scanner = by_name.get(e.get("scanner_host") or "")
        out["findings"].append({
            "kind": "scan", "interface": e["interface"], "local": f"{e['local_addr']}:*",
            "peer": e["peer"], "reason": e["reason"], "process": None, "ports": e["ports"],
            "peer_host": scanner.name if scanner else None, "rate": e["rate"]})
    elif e.get("kind"):
        out["findings"].append({
            "kind": e["kind"], "interface": e["interface"],
            "local": f"{e['local_addr']}:{e['local_port']}", "peer": e["peer"],
            "reason": e.get("reason"), "process": e.get("process"), "counter": e.get("counter"),
            "client_process": e.get("client_process"), "rate": e["rate"]})
    # The scanner's side of a sweep: refusals received from the scanned host.
    for other in hosts:
        oe = other.expected
        if oe.get("kind") == "scan" and oe.get("scanner_host") == host.name:
            out["findings"].append({
                "kind": "received_refused", "interface": "eth0", "local": host.address,
                "peer": other.address, "reason": None, "process": oe["scanner_process"],
                "ports": oe["ports"], "peer_host": other.name, "rate": oe["rate"]})
    return out


def _netns_popen(ns: str, argv: list[str], stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=stdout,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _keep_own_lines(trace: Path, subnet: str, ports: set[int]) -> None:
    """Keep only the trace lines about this lab (tracefs sees every namespace of the machine, and
    other labs may run meanwhile): events naming an address of its subnet or one of its ports."""
    ours = ipaddress.ip_network(subnet)
    keep = []
    for line in trace.read_text(errors="replace").splitlines(keepends=True):
        if " tcp_send_reset: " in line or " inet_sock_set_state: " in line:
            addrs = {ipaddress.ip_address(a) for a in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", line)}
            named = {int(p) for p in re.findall(r"(?::|port=)(\d+)\b", line)}
            if not (any(a in ours for a in addrs) or named & ports):
                continue
        keep.append(line)
    trace.write_text("".join(keep))


def record(name: str, seed: int) -> None:
    """Make tests/data/runs/NAME from a fresh lab."""
    from fleetrst.lab import lab_down, lab_up

    spec = RECORDINGS[name]
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="fleetrst-record-"))
    procs: list[subprocess.Popen[bytes]] = []
    extra: dict[str, Any] = {}
    try:
        lab = lab_up(work / "lab", len(spec["scenarios"]), seed=seed, scenarios=spec["scenarios"],
                     ttl=90)
        if spec.get("stray"):
            target = lab.hosts[0]
            tw_port, stray_port = rng.sample(range(1025, 32001), 2)
            pname = rng.choice(["sessiond", "rpc-bridge", "feed_relay"]) + f"-{rng.randrange(4096):x}"
            procs.append(_netns_popen(target.namespace, [
                sys.executable, str(Path(__file__).resolve()), "--stray-traffic", pname,
                str(tw_port), str(stray_port), str(DURATION + 9)]))
            extra["stray"] = {"host": target.name, "tw_port": tw_port, "stray_port": stray_port,
                              "process": pname}
        time.sleep(1.0)
        run = work / "run"
        cmd = [sys.executable, "-m", "fleetrst", "scan", str(lab.inventory), "--known-hosts",
               str(lab.known_hosts), "--duration", str(DURATION), "-o", str(run)]
        scan = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert scan.stderr is not None and scan.stdout is not None
        err = []
        for line in scan.stderr:
            err.append(line)
            if spec.get("any") and "window:" in line and "any" not in extra:
                # From before the window starts to a little after it ends, and not much else.
                target = next(h for h in lab.hosts if h.scenario == spec["any"])
                with open(work / "rst-any.pcap", "wb") as out:
                    procs.append(_netns_popen(target.namespace, [
                        "timeout", "-s", "INT", str(DURATION + 3), "tcpdump", "-i", "any", "-n",
                        "-s", "128", "-c", "5000", "--immediate-mode", "-U", "-w", "-", FILTER],
                        stdout=out))
                extra["any"] = target.name
        stdout = scan.stdout.read()
        returncode = scan.wait(60)
        print(stdout, "".join(err)[-3000:])
        for proc in procs:
            _stop(proc)
        done = subprocess.CompletedProcess(cmd, returncode, stdout, "".join(err))
        if done.returncode not in (0, 1) or not (run / "summary.json").exists():
            raise SystemExit(f"scan failed ({done.returncode}): {done.stderr[-2000:]}")
        expected = {h.name: _expected(h, lab.hosts) for h in lab.hosts}
        if "stray" in extra:
            s = extra["stray"]
            expected[s["host"]].update(warning=False, findings=[
                {"kind": "stray", "detail": "time_wait", "interface": "lo",
                 "local": f"127.0.0.1:{s['tw_port']}", "peer": "127.0.0.1",
                 "reason": "TCP_TIMEWAIT_SOCKET", "process": s["process"], "rate": 2.0},
                {"kind": "stray", "detail": "no_socket", "interface": "lo",
                 "local": f"127.0.0.1:{s['stray_port']}", "peer": "127.0.0.1",
                 "reason": "NO_SOCKET", "process": None, "rate": 1.0},
            ])
        dest = HERE / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(run, dest, ignore=shutil.ignore_patterns(*REPORTS))
        ports = {h.expected["local_port"] for h in lab.hosts if "local_port" in h.expected}
        ports |= {extra["stray"]["tw_port"], extra["stray"]["stray_port"]} if "stray" in extra else set()
        for trace in dest.glob("*/tcp_send_reset.trace"):
            _keep_own_lines(trace, lab.subnet, ports)
        if "any" in extra:
            shutil.copy(work / "rst-any.pcap", dest / extra["any"] / "rst-any.pcap")
        (dest / "expected.json").write_text(json.dumps(
            {"seed": seed, "scenarios": spec["scenarios"], "any_capture": extra.get("any"),
             "hosts": expected}, indent=1) + "\n")
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        print(f"{name}: seed {seed}, {size} bytes in {dest}")
    finally:
        for proc in procs:
            _stop(proc)
        lab_down(work / "lab")
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--stray-traffic":
        stray_traffic(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(RECORDINGS)} (default: all)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(RECORDINGS))
    if unknown:
        parser.error(f"unknown recording(s): {', '.join(unknown)}")
    for name in args.names or list(RECORDINGS):
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
        record(name, seed)


if __name__ == "__main__":
    main()
