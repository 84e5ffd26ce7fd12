#!/usr/bin/env python3
"""Record netns-closed-port/: the host script on a host with containers (root needed, ~15 s).

Runs the real capture.sh (preflight, then `run` for a 4 s window with kernel reasons) on a
throwaway host made of namespaces (tests/nsharness.py): a PID, mount and network namespace of its
own, with network namespaces nested in it as a container runtime makes them. Its files are stored
as `fleetrst scan` stores them (collect.local_name: a namespace's nsINODE.FILE in netns/INODE/),
with a host.json as the scan writes it, and expected-netns.json from what was started:

- the host's own namespace: a client connects twice a second to 127.0.0.1:7211, where nothing
  listens;
- namespace "app" (unnamed, its process in a cgroup named like a Docker container's): a client
  connects five times a second to 127.0.0.1:7211 of its own lo, where nothing listens either;
- namespace "blue" (named under /run/netns): a client connects once a second to 127.0.0.1:7300;
- namespace "idle" (named, no process, lo down).

Captures inside at most one namespace (nsmax=1): "app" sent the most resets since preflight, so
"blue" is only counted. tracefs sees every namespace of the machine, and other tests ran
meanwhile: the trace keeps only the events that name one of the ports above. Everything started
ends with the throwaway host's PID namespace; every client is bounded in count and time.

    sudo python3 record_netns.py
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for nsharness
sys.path.insert(0, str(HERE.parents[2]))  # the checkout, for fleetrst

from nsharness import Nested, NestedHost, client

from fleetrst.collect import local_name

NAME = "netns-closed-port"
DURATION = 4
PORTS = (7211, 7300)


def main() -> None:
    container = secrets.token_hex(32)
    nested = [
        Nested(client("appcli", 7211, 100, 0.2), cgroup=f"system.slice/docker-{container}.scope"),
        Nested(client("bluecli", 7300, 25, 1.0), named="blue"),
    ]
    host = NestedHost(nested, named_empty=("idle",), on_host=(client("hostcli", 7211, 50, 0.5),))
    with host:
        started = time.time()
        r = host.run(f"{DURATION} 131072 10 1 ns=all nsmax=1 -- lo lo")
        finished = time.time()
    if not r.dir_gone or "tcpdump" in r.leftovers:
        raise SystemExit(f"the host script left something behind: {r.leftovers}")
    out = HERE / NAME
    shutil.rmtree(out, ignore_errors=True)
    hdir = out / "host0"
    for name, data in r.files.items():
        if name == "owner.pid":
            continue
        if name == "tcp_send_reset.trace":
            data = _only_ours(data)
        path = hdir / local_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    times = {ln.split()[0]: float(ln.rpartition("=")[2]) for ln in r.lines
             if ln.split()[:1] in (["armed"], ["started"], ["ended"], ["done"])}
    kv = dict(ln.split("=", 1) for ln in r.preflight.splitlines() if "=" in ln and not ln.startswith("-"))
    host_json = {
        "name": "host0", "address": "198.18.0.250", "port": 22, "user": "root", "connection": "ssh",
        "status": "ok", "error": None, "notes": [],
        "facts": {"hostname": kv.get("hostname"), "kernel": kv.get("kernel"), "uid": kv.get("uid"),
                  "tcpdump": kv.get("tcpdump_version"), "tracefs": kv.get("tracefs") or None,
                  "clock_offset_s": 0.0, "rtt_s": 0.0,
                  "network_namespaces": sum(1 for ln in r.preflight.split("--- netns")[1].splitlines()
                                            if ln.strip()) - 1},
        "become": False, "window_host": times,
        "captures": [{"interface": "lo", "index": 1, "tag": "lo", "cap_bytes": 131072 * 512}],
        "files": {}, "cleanup": "confirmed", "namespaces": {"select": "all", "max": 1},
    }
    (hdir / "host.json").write_text(json.dumps(host_json, indent=2) + "\n")
    iso = time.strftime
    run = {"id": "recorded-" + NAME, "fleetrst_version": "0.1.0", "inventory": "", "limit": None,
           "started": iso("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(started)),
           "finished": iso("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(finished)),
           "window": {"start": iso("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(times.get("started", started))),
                      "end": iso("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(times.get("ended", finished))),
                      "seconds": float(DURATION)},
           "options": {"duration": float(DURATION), "namespaces": "all", "max_namespaces": 1},
           "hosts": [{"name": "host0", "directory": "host0"}]}
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    netns = (hdir / "netns.txt").read_text().splitlines()
    inode = {"app": None, "blue": None, "idle": None}
    for line in netns:
        f = line.split("\t")
        if "appcli" in f[7]:
            inode["app"] = int(f[0])
        elif f[2] in ("blue", "idle"):
            inode[f[2]] = int(f[0])
    expected = {
        "container": container,
        "inodes": inode,
        "host": [{"kind": "local_dead_service", "interface": "lo", "local": "127.0.0.1:7211",
                  "rate": 2.0, "reason": "NO_SOCKET", "process": "hostcli", "netns": None}],
        "namespaces": {
            "app": {"state": "captured", "findings": [
                {"kind": "local_dead_service", "interface": "lo", "local": "127.0.0.1:7211",
                 "rate": 5.0, "reason": "NO_SOCKET", "process": "appcli"}]},
            "blue": {"state": "beyond_max", "findings": [
                {"kind": "counters_only", "rate": 1.0, "why": "beyond --max-namespaces=1"}]},
            "idle": {"state": "beyond_max", "findings": []},
        },
    }
    (out / "expected-netns.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"recorded {out}")


def _only_ours(data: bytes) -> bytes:
    """The trace lines that name one of our ports (and the header and sync markers)."""
    ports = re.compile(r"[:=](" + "|".join(map(str, PORTS)) + r")\b")
    keep = []
    for line in data.decode(errors="replace").splitlines(keepends=True):
        if line.startswith("#") or "fleetrst-sync" in line or ports.search(line):
            keep.append(line)
    return "".join(keep).encode()


if __name__ == "__main__":
    main()
