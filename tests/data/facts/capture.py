"""Regenerate the captured host outputs in this directory (root, Linux; about ten seconds).

Builds two network namespaces joined by a veth pair (198.18.0.1 <-> 198.18.0.2), makes a bounded
number of resets happen on loopback and across the pair, and saves the raw outputs that the host
script collects. Every process started here ends on its own (alarm), and the namespaces are deleted
on the way out. No other address is used.

    sudo python3 tests/data/facts/capture.py [OUTDIR]
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

NS_A = "frt-cap-a"
NS_B = "frt-cap-b"
PR_SET_NAME = 15
LIFETIME_S = 40  # every helper process exits by itself after this

# Comm names chosen to trip parsers: ss cuts the first at ")", the second imitates ss's own syntax.
NAME_WEB = "web) <script>"
NAME_SPOOF = 'a",pid=9,fd=9'
NAME_SVC = 'svc "x", y'
NAME_WORKER = "svc-worker"
ARGV0_WEB = "web-frontend\t--role=<script>\nalert(1)"

SOCKETS_SH = r"""
echo '--- listen'; ss -Hltnp
echo '--- all'; ss -Htanp
echo '--- procs'
pids=$(ss -Htanp | grep -o 'pid=[0-9]*,fd=[0-9]*)' | sed 's/pid=\([0-9]*\).*/\1/' | sort -un)
for p in $pids; do
  [ -r "/proc/$p/comm" ] || continue
  c=$(tr '\t\n' '  ' < "/proc/$p/comm"); c=${c% }
  l=$(tr '\000\t\n' '   ' < "/proc/$p/cmdline"); l=${l% }
  printf '%s\t%s\t%s\n' "$p" "$c" "$l"
done
"""

def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


def child(name: str, fork_name: str, *specs: str) -> None:
    """A listener named `name` (prctl), forked if asked so that two processes share its sockets."""
    signal.alarm(LIFETIME_S)
    libc = ctypes.CDLL(None)

    def setname(n: str) -> None:
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(n.encode()), 0, 0, 0)

    setname(name)
    socks = []
    for spec in specs:
        fam, addr, port, dev = spec.split("|")
        v6 = fam.startswith("6")
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(fam == "6only"))
        if dev:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
        s.bind((addr, int(port)))
        s.listen(8)
        socks.append(s)
    if fork_name and os.fork() == 0:
        setname(fork_name)
    else:
        print("ready", flush=True)
    conns: list[socket.socket] = []
    while True:
        ready, _, _ = select.select(socks + conns, [], [])
        for s in ready:
            if s in socks:
                conns.append(s.accept()[0])
            elif not s.recv(4096):
                s.close()
                conns.remove(s)


def spawn(ns: str | None, argv0: str, name: str, fork_name: str, *specs: str) -> subprocess.Popen:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    # `exec -a` sets argv[0], hence the cmdline the procs table shows.
    cmd = prefix + ["bash", "-c", 'exec -a "$0" "$@"', argv0, sys.executable]
    cmd += [__file__, "--child", name, fork_name, *specs]
    # Own process group, so that a forked worker is stopped together with its parent.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        stop(p)
        raise SystemExit(f"{name!r} did not start: {line!r}")
    return p


def stop(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    p.wait()


def counters() -> str:
    t = time.time_ns()
    out = ["# fleetrst counters", f"time={t // 10**9}.{t % 10**9:09d}"]
    for f in ("/proc/net/snmp", "/proc/net/netstat", "/proc/net/snmp6"):
        out.append(f"--- {f}")
        out.append(Path(f).read_text().rstrip("\n"))
    return "\n".join(out) + "\n"


def connect(family: int, addr: tuple) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(addr)
    return s


def refuse(family: int, addr: tuple) -> None:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit(f"{addr} unexpectedly accepted")
    finally:
        s.close()


def inner(out: Path) -> None:
    """Inside NS_A: listeners with hostile names, a bounded set of resets, then the snapshots."""
    signal.alarm(LIFETIME_S)
    kids: list[subprocess.Popen] = []
    keep: list[socket.socket] = []
    try:
        kids.append(spawn(None, ARGV0_WEB, NAME_WEB, "", "4|127.0.0.1|7300|"))
        kids.append(spawn(None, "spoof", NAME_SPOOF, "", "6|::|8080|"))
        kids.append(spawn(None, "sshd: listener", "sshd", "", "4|0.0.0.0|22|", "6only|::|22|"))
        kids.append(spawn(None, "svc --conf /etc/svc x.conf", NAME_SVC, NAME_WORKER,
                          "4|127.0.0.1|5353|lo", "6|::1|7400|lo", "4|198.18.0.1|9000|"))
        (out / "counters-start.txt").write_text(counters())
        for _ in range(5):
            refuse(socket.AF_INET, ("127.0.0.1", 7211))
        for _ in range(3):
            refuse(socket.AF_INET6, ("::1", 7211))
        refuse(socket.AF_INET, ("198.18.0.2", 2223))  # answered by the other namespace

        own = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.bind(("127.0.0.1", 7500))
        own.listen(8)
        keep.append(own)
        linger0 = struct.pack("ii", 1, 0)
        for _ in range(2):  # SO_LINGER {1, 0} close: an abort with a live socket
            c = connect(socket.AF_INET, ("127.0.0.1", 7500))
            a, _ = own.accept()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
            c.close()
            a.close()
        c = connect(socket.AF_INET, ("127.0.0.1", 7500))  # close with unread data
        a, _ = own.accept()
        c.sendall(b"unread")
        time.sleep(0.1)
        a.close()
        c.close()
        c = connect(socket.AF_INET, ("127.0.0.1", 7500))  # leaves CLOSE-WAIT / FIN-WAIT-2
        a, _ = own.accept()
        c.close()
        keep.append(a)

        c = connect(socket.AF_INET, ("127.0.0.1", 7300))  # leaves TIME-WAIT
        c.sendall(b"bye")
        c.shutdown(socket.SHUT_WR)
        c.settimeout(2)
        c.recv(1)
        c.close()

        for fam, addr in (
            (socket.AF_INET, ("127.0.0.1", 7300)),
            (socket.AF_INET, ("127.0.0.1", 8080)),
            (socket.AF_INET6, ("::1", 8080)),
            (socket.AF_INET, ("127.0.0.1", 5353)),
            (socket.AF_INET6, ("::1", 7400)),
            (socket.AF_INET, ("198.18.0.1", 9000)),
            (socket.AF_INET, ("198.18.0.2", 2222)),
        ):
            keep.append(connect(fam, addr))
        # Nothing answers 198.18.0.3 (not assigned anywhere): the SYN never leaves the namespaces.
        syn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        syn.setblocking(False)
        syn.connect_ex(("198.18.0.3", 80))
        keep.append(syn)
        time.sleep(0.3)

        (out / "sockets.txt").write_text(sh("sh", "-c", SOCKETS_SH))
        (out / "ss-listen.txt").write_text(sh("ss", "-Hltnp"))
        (out / "ss-all.txt").write_text(sh("ss", "-Htanp"))
        (out / "counters-end.txt").write_text(counters())
    finally:
        for s in keep:
            s.close()
        for p in kids:
            stop(p)


def outer(out: Path) -> None:
    """Build the namespaces, run `inner` in one of them, record interfaces, delete everything."""
    out.mkdir(parents=True, exist_ok=True)
    peer: subprocess.Popen | None = None
    try:
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "va", "netns", NS_A, "type", "veth", "peer", "vb", "netns", NS_B)
        for ns, dev, addr in ((NS_A, "va", "198.18.0.1/24"), (NS_B, "vb", "198.18.0.2/24")):
            # No link-local IPv6 on the pair: only the 198.18.0.0/24 addresses exist there.
            sh("ip", "-n", ns, "link", "set", dev, "addrgenmode", "none")
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        # A pair inside one namespace: names print as "x@peer" rather than "va@ifN".
        sh("ip", "-n", NS_A, "link", "add", "spare0", "type", "veth", "peer", "spare1")
        # Admin up with its peer down: NO-CARRIER, operational state LOWERLAYERDOWN.
        sh("ip", "-n", NS_A, "link", "set", "spare0", "addrgenmode", "none")
        sh("ip", "-n", NS_A, "link", "set", "spare0", "up")
        sh("ip", "-n", NS_A, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", NS_A, "link", "set", "br0", "addrgenmode", "none")
        sh("ip", "-n", NS_A, "link", "set", "br0", "up")
        sh("ip", "-n", NS_A, "tuntap", "add", "mode", "tun", "name", "tun0")
        peer = spawn(NS_B, "peer", "peer", "", "4|198.18.0.2|2222|")
        subprocess.run(["ip", "netns", "exec", NS_A, sys.executable, __file__, "--inner", str(out)],
                       check=True, timeout=LIFETIME_S + 10)
        for ns, tag in ((NS_A, "a"), (NS_B, "b")):
            (out / f"ip-link-ns-{tag}.txt").write_text(sh("ip", "-n", ns, "-o", "link"))
            (out / f"ip-addr-ns-{tag}.txt").write_text(sh("ip", "-n", ns, "-o", "addr"))
        (out / "counters-host.txt").write_text(counters())
        (out / "ip-link-host.txt").write_text(sh("ip", "-o", "link"))
        (out / "ip-addr-host.txt").write_text(sh("ip", "-o", "addr"))
    finally:
        if peer is not None:
            stop(peer)
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:])
    elif sys.argv[1:2] == ["--inner"]:
        inner(Path(sys.argv[2]))
    else:
        outer(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
