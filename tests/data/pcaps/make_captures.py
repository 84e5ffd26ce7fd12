#!/usr/bin/env python3
"""Rebuild the reset captures in this directory (root, tcpdump, dumpcap, editcap, tshark needed).

Runs entirely inside two network namespaces of its own (removed at the end, also on failure);
traffic goes only to loopback and 198.18.0.0/24 and is bounded in count and time.
Usage: sudo python3 make_captures.py        (the tests only read the files it writes)
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NS_A, NS_B = "frstpcap-a", "frstpcap-b"
A_IP, B_IP = "198.18.0.1", "198.18.0.2"
FILTER = "(tcp[tcpflags] & (tcp-rst) != 0) or (ip6 and ip6[6] = 6 and ip6[53] & 4 != 0)"
TCPDUMP = ["tcpdump", "-n", "-s", "128", "--immediate-mode", "-U", "-w", "-"]


# ---------------------------------------------------------------- traffic (runs inside a netns)

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def stray_ack(src: str, sport: int, dst: str, dport: int) -> None:
    """Send a bare ACK to a port without a socket: the kernel answers [R] with seq = our ack."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, 123456789, 5 << 4, 0x10, 1024, 0, 0)
    s, d = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    if fam == socket.AF_INET:
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = s + d + struct.pack("!I3xB", len(seg), 6)
    seg = seg[:16] + struct.pack("!H", _csum(pseudo + seg)) + seg[18:]
    with socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_TCP) as raw:
        if fam == socket.AF_INET:
            raw.bind((src, 0))
        else:
            raw.bind((src, 0, 0, 0))
        raw.sendto(seg, (dst, 0))


def refused(host: str, port: int, n: int) -> None:
    """Connect n times to a closed port: each SYN is answered [R.] seq 0 win 0."""
    for _ in range(n):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except ConnectionRefusedError:
            pass
        time.sleep(0.02)


def poke(host: str, port: int) -> None:
    """Connect, send a few bytes and wait for the server's abort."""
    with socket.create_connection((host, port), timeout=3) as c:
        c.sendall(b"hello\n")
        try:
            c.recv(100)
        except ConnectionResetError:
            pass
    time.sleep(0.02)


def serve(specs: list[str]) -> None:
    """Listen on addr/port/mode specs; per connection: 'linger' = SO_LINGER {1,0} close after
    reading; 'unread' = close with the client's bytes still unread. Exits after 10 s."""
    socks: dict[socket.socket, str] = {}
    for spec in specs:
        addr, port, mode = spec.rsplit("/", 2)
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen(8)
        socks[s] = mode
    print("ready", flush=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ready, _, _ = select.select(list(socks), [], [], 0.2)
        for ls in ready:
            conn, _ = ls.accept()
            conn.settimeout(2)
            if socks[ls] == "linger":
                conn.recv(100)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                time.sleep(0.1)  # let the client's bytes arrive, then leave them unread
            conn.close()


def traffic(scenario: str) -> None:
    """The client side of one scenario, run inside its namespace."""
    if scenario in ("lo4", "lo6"):
        host = "127.0.0.1" if scenario == "lo4" else "::1"
        srv = subprocess.Popen([sys.executable, __file__, "serve", f"{host}/7300/linger",
                                f"{host}/7301/unread"], stdout=subprocess.PIPE, text=True)
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        refused(host, 7211, 3)
        poke(host, 7300)
        poke(host, 7301)
        stray_ack(host, 40000, host, 7212)
        srv.terminate()
        srv.wait()
    elif scenario == "b-to-a":
        refused(A_IP, 7211, 2)
        poke(A_IP, 7300)
        poke(A_IP, 7301)
        stray_ack(B_IP, 40001, A_IP, 7212)
    elif scenario == "a-to-b":
        refused(B_IP, 7411, 1)
        poke(B_IP, 7400)
        refused("127.0.0.1", 7211, 2)
        refused("::1", 7211, 1)
    time.sleep(0.1)


# ---------------------------------------------------------------- orchestration (root namespace)

def sh(*args: str, ns: str | None = None,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, timeout=30, env=env)


def setup() -> None:
    teardown()
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "link", "add", "fra0", "netns", NS_A, "type", "veth", "peer", "frb0", "netns", NS_B)
    for ns, dev, ip in ((NS_A, "fra0", A_IP), (NS_B, "frb0", B_IP)):
        sh("ip", "addr", "add", f"{ip}/24", "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    time.sleep(0.5)  # ::1 and the links settle


def teardown() -> None:
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)


STARTED: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []


def start_capture(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start a capture writing to stdout into NAME, and wait until it listens."""
    with open(os.path.join(HERE, name), "wb") as out:  # the child keeps its own copy
        p = subprocess.Popen(["timeout", "30", *argv], stdout=out, stderr=subprocess.PIPE)
    STARTED.append(p)
    assert p.stderr is not None
    seen = ""
    for _ in range(5):
        line = p.stderr.readline().decode()
        seen += line
        if "listening" in line or "Capturing" in line:
            return p
    raise RuntimeError(f"{name}: {seen}")


def start_server(ns: str, *specs: str) -> subprocess.Popen[str]:
    """Start the abort server inside NS and wait until it listens."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "serve", *specs],
                         stdout=subprocess.PIPE, text=True)
    STARTED.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def stop_capture(p: subprocess.Popen[bytes]) -> None:
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)  # `timeout` passes it on to tcpdump, which flushes and exits
    p.wait(timeout=10)


FIELDS = ["frame.time_epoch", "frame.interface_name", "sll.ifindex", "sll.pkttype", "ip.src",
          "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
          "tcp.ack_raw", "tcp.flags", "tcp.window_size_value", "tcp.hdr_len", "tcp.len", "vlan.id"]


def oracle(name: str, made_with: str, ns: str, iplink: str | None = None) -> None:
    """Write NAME.json: the records as tshark reads them, and tcpdump's own lines."""
    path = os.path.join(HERE, name)
    ifnames: dict[int, str] = {}
    if iplink:
        with open(os.path.join(HERE, iplink)) as lines_in:
            for line in lines_in:
                idx, nm = line.split(":")[:2]
                ifnames[int(idx)] = nm.strip().split("@")[0]
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for fld in FIELDS:
        cmd += ["-e", fld]
    rows = sh(*cmd).stdout.splitlines()
    recs = []
    for row in rows:
        v = dict(zip(FIELDS, row.split("\t")))
        six = bool(v["ipv6.src"])
        ifindex = int(v["sll.ifindex"]) if v["sll.ifindex"] else None
        recs.append({
            "ts": v["frame.time_epoch"],
            # tshark says "unknown" where the pcapng interface block has no name
            "ifname": (v["frame.interface_name"] if v["frame.interface_name"] not in ("", "unknown")
                       else ifnames.get(ifindex or -1)),
            "ifindex": ifindex,
            "pkttype": int(v["sll.pkttype"]) if v["sll.pkttype"] else None,
            "family": 6 if six else 4,
            "src": v["ipv6.src"] if six else v["ip.src"],
            "sport": int(v["tcp.srcport"]),
            "dst": v["ipv6.dst"] if six else v["ip.dst"],
            "dport": int(v["tcp.dstport"]),
            "seq": int(v["tcp.seq_raw"]),
            "ack": int(v["tcp.ack_raw"] or 0),  # tshark leaves it out when ACK is not set
            "flags": int(v["tcp.flags"], 16) & 0xFF,
            "window": int(v["tcp.window_size_value"]),
            "options_len": int(v["tcp.hdr_len"]) - 20,
            "payload_len": int(v["tcp.len"]),
            "vlan": int(v["vlan.id"]) if v["vlan.id"] else None,
        })
    lines = []
    if name.endswith(".pcap"):
        env = dict(os.environ, TZ="UTC")
        lines = sh("tcpdump", "-n", "-S", "-r", path, ns=ns, env=env).stdout.splitlines()
    doc = {"file": name, "made_with": made_with, "records": recs, "tcpdump_utc": lines}
    with open(path + ".json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main() -> None:
    in_a = ["ip", "netns", "exec", NS_A]
    made: list[tuple[str, str, str | None]] = []  # file, how it was made, `ip -o link` file
    try:
        setup()
        # Run 1: IPv4 resets on lo, captured at once in microseconds and in nanoseconds.
        caps = [start_capture("lo.pcap", in_a + TCPDUMP + ["-i", "lo", FILTER]),
                start_capture("lo-nano.pcap", in_a + TCPDUMP
                              + ["--time-stamp-precision=nano", "-i", "lo", FILTER])]
        sh(sys.executable, __file__, "traffic", "lo4", ns=NS_A)
        for c in caps:
            stop_capture(c)
        made += [("lo.pcap", "tcpdump -i lo; traffic lo4", None),
                 ("lo-nano.pcap", "tcpdump --time-stamp-precision=nano -i lo; same packets", None)]

        # Run 2: IPv6 resets on ::1.
        c = start_capture("lo6.pcap", in_a + TCPDUMP + ["-i", "lo", FILTER])
        sh(sys.executable, __file__, "traffic", "lo6", ns=NS_A)
        stop_capture(c)
        made.append(("lo6.pcap", "tcpdump -i lo; traffic lo6", None))

        # Run 3: two namespaces joined by a veth pair, captured four ways at once in A.
        with open(os.path.join(HERE, "any-iplink.txt"), "w") as f:
            f.write(sh("ip", "-o", "link", ns=NS_A).stdout)
        srv_a = start_server(NS_A, f"{A_IP}/7300/linger", f"{A_IP}/7301/unread")
        srv_b = start_server(NS_B, f"{B_IP}/7400/linger")
        caps = [start_capture("veth.pcap", in_a + TCPDUMP + ["-i", "fra0", FILTER]),
                start_capture("any-sll2.pcap", in_a + TCPDUMP + ["-i", "any", FILTER]),
                start_capture("any-sll.pcap", in_a + TCPDUMP + ["-y", "LINUX_SLL", "-i", "any",
                                                                FILTER]),
                start_capture("dumpcap.pcapng", in_a + ["dumpcap", "-i", "lo", "-i", "fra0",
                                                        "-s", "128", "-f", FILTER, "-w", "-"])]
        sh(sys.executable, __file__, "traffic", "b-to-a", ns=NS_B)
        sh(sys.executable, __file__, "traffic", "a-to-b", ns=NS_A)
        for c in caps:
            stop_capture(c)
        for srv in (srv_a, srv_b):
            srv.terminate()
            srv.wait()
        made += [("veth.pcap", "tcpdump -i fra0 (EN10MB); traffic b-to-a, a-to-b", None),
                 ("any-sll2.pcap", "tcpdump -i any (LINUX_SLL2); same packets", "any-iplink.txt"),
                 ("any-sll.pcap", "tcpdump -y LINUX_SLL -i any; same packets", None),
                 ("dumpcap.pcapng", "dumpcap -i lo -i fra0 -s 128 -f FILTER; same packets", None)]

        for name, _how, iplink in list(made):
            if name.endswith(".pcap"):
                sh("editcap", "-F", "pcapng", os.path.join(HERE, name),
                   os.path.join(HERE, name + "ng"))
                made.append((name + "ng", f"editcap -F pcapng {name}", iplink))
        for name, how, iplink in made:
            oracle(name, how, NS_A, iplink)
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        teardown()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "traffic":
        traffic(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2:])
    else:
        main()
