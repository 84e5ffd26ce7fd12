"""One window on many lab hosts: `fleetrst scan` against `ansible-playbook playbooks/capture.yml`.

    sudo python3 bench/bench_fleet.py [--hosts 50,200] [--window 10] [--forks-ansible default,N]
                                      [--no-ansible] [--json OUT] [--keep DIR]

For each N it builds a lab of N hosts (fleetrst.lab: network namespaces on 198.18.0.0/24, each
with its own sshd; mostly `quiet`, one `closed_port` in 25), then runs, one after the other:

- `fleetrst scan` of the lab's inventory with a `--window` second window, as a subprocess
  (`-v`, its stderr lines time-stamped here as they come);
- if playbooks/capture.yml and ansible-playbook are there, the same capture through Ansible
  (pipelining and ControlPersist on, as its README advises) at the default forks (5) and at
  forks = N.

and reports for each: total wall time and the time beyond the window; when the window started
after the command did and how long the command ran after it ended; the spread of the window's
start across hosts (each host's own "started" time, less its measured clock offset); peak RSS of
the orchestrator (largest process, from GNU time) and of its whole process tree (sampled every
0.5 s); CPU seconds; SSH connections per host (ESTABLISHED sockets on port 22 in each host's
namespace, sampled every 0.25 s: the most at once, and how many different ones were seen);
and how many hosts came back ok. The lab is taken down at the end, also on failure.

The lab hosts share this machine's /root: unless --machine-rc is given, their sshds are told to
start commands without this machine's ~/.bashrc (see plain_shells), which a real host's shell
would not read either.
Needs root. A lab of more than 61 hosts needs the whole 198.18.0.0/24: the script waits (up to
--wait-pool seconds) for other labs to go.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "playbooks" / "capture.yml"
CLOSED_EVERY = 25


def stamp(t: float) -> float:
    return round(t, 3)


# ------------------------------------------------------------------ sampling while a run goes on

def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_rss_kb(root: int) -> int:
    kids = children_map()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def ssh_peers(pid: int) -> set[str]:
    """Remote ends of the ESTABLISHED TCP connections to port 22 in `pid`'s network namespace."""
    out = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and f[1].endswith(":0016"):
                out.add(f[2])
    return out


class Sampler(threading.Thread):
    """Samples the run's process-tree RSS and the SSH connections of every host."""

    def __init__(self, root: int, sshd: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.root, self.sshd = root, sshd
        self.stop = threading.Event()
        self.tree_kb = 0
        self.most: dict[str, int] = {h: 0 for h in sshd}
        self.seen: dict[str, set[str]] = {h: set() for h in sshd}

    def run(self) -> None:
        last_rss = 0.0
        while not self.stop.is_set():
            for host, pid in self.sshd.items():
                peers = ssh_peers(pid)
                self.most[host] = max(self.most[host], len(peers))
                self.seen[host] |= peers
            if time.monotonic() - last_rss >= 0.5:
                last_rss = time.monotonic()
                self.tree_kb = max(self.tree_kb, tree_rss_kb(self.root))
            self.stop.wait(0.25)


def run_measured(cmd: list[str], env: dict[str, str] | None, sshd: dict[str, int], work: Path,
                 cwd: Path | None = None) -> dict[str, Any]:
    """Run `cmd` under GNU time; its stderr lines time-stamped, its tree and hosts sampled."""
    report = work / "time.txt"
    gnu = Path("/usr/bin/time").exists()  # its own peak RSS is small (see bench_analysis.py)
    full = ["/usr/bin/time", "-f", "%U %S %M", "-o", str(report), *cmd] if gnu else cmd
    lines: list[tuple[float, str]] = []
    t0 = time.time()
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         cwd=cwd, text=True, errors="replace", start_new_session=True)
    sampler = Sampler(p.pid, sshd)
    sampler.start()
    assert p.stdout is not None
    try:
        for line in p.stdout:
            lines.append((time.time(), line.rstrip("\n")))
    except BaseException:
        # stopped: take the run down with us (its own process group), then clean up above
        sampler.stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        raise
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    t1 = time.time()
    sampler.stop.set()
    sampler.join()
    if gnu:
        user, sys_, rss = report.read_text().split()[-3:]
    else:
        user, sys_, rss = str(ru.ru_utime), str(ru.ru_stime), str(ru.ru_maxrss)
    (work / "output.txt").write_text("".join(f"{t - t0:8.3f} {ln}\n" for t, ln in lines))
    most = sorted(sampler.most.values())
    seen = sorted(len(v) for v in sampler.seen.values())
    return {
        "rc": rc, "t0": t0, "t1": t1, "wall_s": t1 - t0, "cpu_s": float(user) + float(sys_),
        "rss_mb": int(rss) / 1024, "tree_rss_mb": sampler.tree_kb / 1024, "lines": lines,
        "ssh_at_once_max": most[-1] if most else 0,
        "ssh_at_once_median": most[len(most) // 2] if most else 0,
        "ssh_seen_median": seen[len(seen) // 2] if seen else 0,
        "ssh_seen_max": seen[-1] if seen else 0,
    }


# ------------------------------------------------------------------ reading the run directory

def iso_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def window_facts(run_dir: Path) -> dict[str, Any]:
    run = json.loads((run_dir / "run.json").read_text())
    starts, counted, statuses = [], [], {"ok": 0, "partial": 0, "failed": 0}
    for h in run["hosts"]:
        path = run_dir / h["directory"] / "host.json"
        if not path.exists():
            statuses["failed"] += 1
            continue
        doc = json.loads(path.read_text())
        statuses[doc.get("status", "failed")] = statuses.get(doc.get("status", "failed"), 0) + 1
        offset = float((doc.get("facts") or {}).get("clock_offset_s") or 0.0)
        started = (doc.get("window_host") or {}).get("started")
        if started:
            starts.append(float(started) - offset)
        # the start counters' own time: when the host began its snapshot of the window's start
        counters = run_dir / h["directory"] / "counters-start.txt"
        if counters.exists():
            for line in counters.read_text().splitlines()[:5]:
                if line.startswith("time="):
                    counted.append(float(line[5:]) - offset)
    w = run.get("window") or {}
    return {
        "window_start": iso_time(w["start"]) if w.get("start") else None,
        "window_end": iso_time(w["end"]) if w.get("end") else None,
        "spread_s": (max(starts) - min(starts)) if starts else None,
        "counters_spread_s": (max(counted) - min(counted)) if counted else None,
        "started_hosts": len(starts), "status": statuses,
    }


def scan_stages(lines: list[tuple[float, str]], t0: float) -> dict[str, float | None]:
    """When the scan's stages ended, from its time-stamped -v lines (seconds after launch)."""
    def first(pattern: str) -> float | None:
        rx = re.compile(pattern)
        for t, ln in lines:
            if rx.search(ln):
                return stamp(t - t0)
        return None

    def last(pattern: str) -> float | None:
        rx = re.compile(pattern)
        found = [t for t, ln in lines if rx.search(ln)]
        return stamp(found[-1] - t0) if found else None

    return {
        "first_connected": first(r": connected \("),
        "last_connected": last(r": connected \("),
        "preflight_done": first(r"connected: \d+/\d+ host\(s\) ready"),
        "armed": first(r"armed: \d+/\d+"),
        "collected": first(r"collected: \d+/\d+"),
    }


# ------------------------------------------------------------------ the runs

def lab_up_waiting(directory: Path, n: int, wait: float) -> Any:
    from fleetrst.errors import LabError
    from fleetrst.lab import lab_up
    scenarios = ["closed_port" if i % CLOSED_EVERY == 0 else "quiet" for i in range(n)]
    deadline = time.monotonic() + wait
    while True:
        try:
            return lab_up(directory, n, seed=1, scenarios=scenarios, ttl=3600)
        except LabError as e:
            if "no free" not in str(e) or time.monotonic() > deadline:
                raise
            print(f"  waiting for 198.18.0.0/24 to be free ({e})", file=sys.stderr, flush=True)
            time.sleep(10)


def plain_shells(lab_dir: Path) -> None:
    """Have the lab's sshds start commands without reading this machine's ~/.bashrc.

    The lab hosts share this machine's /root; its .bashrc may be slow (pyenv: ~0.8 s and a lock
    per shell) and every command a scan runs starts a shell. A real host's shells do not pay
    for this machine's rc files: SHLVL=1 makes bash skip them (as fleetrst.lab already does for
    hosts behind a bastion). sshd rereads its configuration on SIGHUP, under the same PID.
    """
    doc = json.loads((lab_dir / "lab.json").read_text())
    pids = sshd_pids(lab_dir)
    for h in doc["hosts"]:
        config = lab_dir / "hosts" / h["name"] / "sshd_config"
        text = config.read_text()
        if "SetEnv SHLVL=1" not in text:
            config.write_text(text.rstrip("\n") + "\nSetEnv SHLVL=1\n")
            os.kill(pids[h["name"]], signal.SIGHUP)
    deadline = time.monotonic() + 60
    for h in doc["hosts"]:
        while not banner(h["address"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of {h['name']} did not come back after SIGHUP")
            time.sleep(0.1)


def banner(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=0.5) as sock:
            sock.settimeout(2.0)
            ok = sock.recv(64).startswith(b"SSH-")
            sock.sendall(b"SSH-2.0-fleetrst-bench-probe\r\n")
            return ok
    except OSError:
        return False


def sshd_pids(lab_dir: Path) -> dict[str, int]:
    doc = json.loads((lab_dir / "lab.json").read_text())
    return {p["host"]: int(p["pid"]) for p in doc["processes"]
            if p.get("role") == "sshd" and p.get("host") and p["host"] != "bastion"}


def fleetrst_run(lab: Any, lab_dir: Path, window: float, work: Path, forks: int | None,
                 profile: str | None = None) -> dict[str, Any]:
    out = work / "run"
    cmd = [sys.executable, "-m", "fleetrst", "scan", str(lab.inventory), "--known-hosts",
           str(lab.known_hosts), "--duration", f"{window:g}", "-o", str(out), "-v"]
    if forks:
        cmd += ["-f", str(forks)]
    if profile:  # py-spy's samples of every thread (CPU only), as collapsed stacks
        cmd = ["py-spy", "record", "-r", "50", "-f", "raw", "-o", f"{profile}-{lab_dir.name}",
               "--", *cmd]
    r = run_measured(cmd, None, sshd_pids(lab_dir), work)
    r.update(window_facts(out))
    r["stages"] = scan_stages(r.pop("lines"), r["t0"])
    return r


def ansible_playbook() -> str | None:
    found = shutil.which("ansible-playbook")
    beside = Path(sys.executable).parent / "ansible-playbook"
    venv = ROOT / ".venv" / "bin" / "ansible-playbook"
    for cand in (found, beside, venv):
        if cand and Path(cand).is_file():
            return str(cand)
    return None


def ansible_run(lab: Any, lab_dir: Path, window: float, work: Path, forks: int | None,
                tool: str) -> dict[str, Any]:
    from fleetrst.inventory import ansible_env
    out = work / "run"
    control = Path(tempfile.mkdtemp(prefix="frbc-", dir="/tmp"))  # short: socket paths
    env = ansible_env()
    env.update(
        ANSIBLE_PIPELINING="True",
        ANSIBLE_SSH_ARGS=f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={control}/%C",
        ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3" if Path("/usr/bin/python3").exists()
        else "auto_silent",
        ANSIBLE_HOME=str(work / "ansible-home"), ANSIBLE_ASYNC_DIR=str(work / "async"),
        ANSIBLE_REMOTE_TMP=str(work / "remote-tmp"), ANSIBLE_LOCAL_TEMP=str(work / "local-tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_HOST_KEY_CHECKING="True",
    )
    env["PATH"] = f"{Path(tool).parent}:{env.get('PATH', '')}"
    cmd = [tool, "-i", str(lab.inventory), str(PLAYBOOK), "-e", f"fleetrst_out={out}",
           "-e", f"fleetrst_duration={window:g}"]
    if forks:
        cmd += ["-f", str(forks)]
    try:
        r = run_measured(cmd, env, sshd_pids(lab_dir), work, cwd=work)
    finally:
        for sock in control.iterdir():
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "lab"],
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(control, ignore_errors=True)
    r.pop("lines")
    if (out / "run.json").exists():
        r.update(window_facts(out))
    return r


def summarize(name: str, n: int, window: float, r: dict[str, Any]) -> dict[str, Any]:
    ws, we = r.get("window_start"), r.get("window_end")
    return {
        "tool": name, "hosts": n, "rc": r["rc"], "total_s": round(r["wall_s"], 2),
        "beyond_window_s": round(r["wall_s"] - window, 2),
        "before_window_s": round(ws - r["t0"], 2) if ws else None,
        "after_window_s": round(r["t1"] - we, 2) if we else None,
        "spread_s": None if r.get("spread_s") is None else round(r["spread_s"], 3),
        "counters_spread_s": None if r.get("counters_spread_s") is None
        else round(r["counters_spread_s"], 3),
        "started_hosts": r.get("started_hosts"), "status": r.get("status"),
        "cpu_s": round(r["cpu_s"], 1), "rss_mb": round(r["rss_mb"]),
        "tree_rss_mb": round(r["tree_rss_mb"]),
        "ssh_at_once_max": r["ssh_at_once_max"], "ssh_at_once_median": r["ssh_at_once_median"],
        "ssh_seen_median": r["ssh_seen_median"], "ssh_seen_max": r["ssh_seen_max"],
        "stages": r.get("stages"),
    }


def table(rows: list[dict[str, Any]], window: float) -> str:
    out = [("| hosts | tool | total s | beyond window s | before / after window s | "
            "start spread s (started / counters) | ok / partial / failed | CPU s | peak RSS MB (largest / tree) | "
            "SSH conns per host (most at once / seen, median) |"),
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        st = r.get("status") or {}
        spread = " / ".join("–" if r.get(k) is None else f"{r[k]:.2f}"
                            for k in ("spread_s", "counters_spread_s"))
        out.append(
            f"| {r['hosts']} | {r['tool']} | {r['total_s']:.1f} | {r['beyond_window_s']:.1f} | "
            f"{r['before_window_s']} / {r['after_window_s']} | {spread} | "
            f"{st.get('ok', 0)} / {st.get('partial', 0)} / {st.get('failed', 0)} | "
            f"{r['cpu_s']:.0f} | {r['rss_mb']} / {r['tree_rss_mb']} | "
            f"{r['ssh_at_once_median']} / {r['ssh_seen_median']} |")
    return "\n".join(out)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return (f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="50,200", help="lab sizes, comma-separated")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--forks", type=int, default=0, help="fleetrst scan -f (default: its own)")
    ap.add_argument("--forks-ansible", default="default,N",
                    help="Ansible forks to try: numbers, 'default' (5) and 'N' (= hosts)")
    ap.add_argument("--no-ansible", action="store_true")
    ap.add_argument("--py-spy", metavar="PREFIX",
                    help="profile the scan with py-spy (its RSS and CPU then include py-spy's)")
    ap.add_argument("--wait-pool", type=float, default=900.0)
    ap.add_argument("--machine-rc", action="store_true",
                    help="leave the lab hosts' shells reading this machine's ~/.bashrc")
    ap.add_argument("--json", help="write the rows here too")
    ap.add_argument("--keep", help="keep the run directories and outputs in this directory")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_fleet needs root (network namespaces)", file=sys.stderr)
        return 2

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # also when started in the background, where SIGINT comes ignored: the labs come down
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    from fleetrst.lab import lab_down
    tool = None if a.no_ansible or not PLAYBOOK.exists() else ansible_playbook()
    base = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="fleetrst-fleet-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}\n", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        for n in [int(x) for x in a.hosts.split(",")]:
            lab_dir = base / f"lab-{n}"
            t = time.monotonic()
            print(f"  lab of {n} hosts ...", file=sys.stderr, flush=True)
            lab = lab_up_waiting(lab_dir, n, a.wait_pool)
            try:
                if not a.machine_rc:
                    plain_shells(lab_dir)
                print(f"  lab up in {time.monotonic() - t:.0f} s; fleetrst scan ...",
                      file=sys.stderr, flush=True)
                work = base / f"fleetrst-{n}"
                work.mkdir(exist_ok=True)
                r = fleetrst_run(lab, lab_dir, a.window, work, a.forks or None, a.py_spy)
                rows.append(summarize("fleetrst scan", n, a.window, r))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                if tool is None:
                    if not a.no_ansible:
                        print("  ansible-playbook not found: Ansible runs skipped",
                              file=sys.stderr)
                    continue
                for f in a.forks_ansible.split(","):
                    forks = None if f == "default" else n if f == "N" else int(f)
                    label = f"ansible-playbook -f {forks or 5}"
                    print(f"  {label} ...", file=sys.stderr, flush=True)
                    work = base / f"ansible-{n}-{forks or 5}"
                    work.mkdir(exist_ok=True)
                    r = ansible_run(lab, lab_dir, a.window, work, forks, tool)
                    rows.append(summarize(label, n, a.window, r))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            finally:
                lab_down(lab_dir)
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"window {a.window:g} s\n")
    print(table(rows, a.window))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "window": a.window,
                                            "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
