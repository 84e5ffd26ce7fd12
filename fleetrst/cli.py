"""Command line: parse arguments, call the library, print, map errors to exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .analysis import analyze_run, severity_rank
from .collect import Scan, ScanOptions
from .errors import FleetrstError, InventoryError
from .inventory import load_inventory
from .report import write_reports


class ExitStatus(enum.IntEnum):
    """fleetrst's exit codes (documented in the README)."""

    OK = 0  # every host scanned, no finding at or above --fail-on
    FINDINGS = 1  # some finding at or above --fail-on
    USAGE = 2  # bad arguments or a bad inventory
    HOSTS_FAILED = 3  # some hosts could not be scanned (their reasons are in the report)
    ERROR = 4  # fleetrst itself failed
    INTERRUPTED = 130  # stopped by Ctrl-C / SIGINT; the hosts cleaned up after themselves


def _clean(text: object) -> str:
    """Terminal-safe text: control characters from hosts are shown, never interpreted."""
    s = str(text)
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in s)


class Console:
    """Where messages go; plain timestamped lines unless stderr is a terminal."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, verbosity: int = 0) -> None:
        self.out, self.err, self.verbosity = out, err, verbosity
        self.tty = err.isatty()
        self._last_countdown = -1
        self._failed: set[str] = set()

    def info(self, msg: str, level: int = 0) -> None:
        if self.verbosity < level:
            return
        if self.tty:
            print(_clean(msg), file=self.err, flush=True)
        else:
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            print(f"{stamp} {_clean(msg)}", file=self.err, flush=True)

    def progress(self, event: str, data: dict[str, Any]) -> None:
        hr = data.get("host")
        if event == "window":
            left = int(data["remaining"])
            if left != self._last_countdown and (left % 10 == 0 or left <= 3 or self.tty):
                self._last_countdown = left
                if self.tty and self.verbosity >= 0:
                    print(f"\r  capture window: {left:3d} s left ", end="", file=self.err, flush=True)
                    if left == 0:
                        print(file=self.err)
                else:
                    self.info(f"window: {left} s left", level=0)
            return
        if hr is None:
            return
        name = hr.host.name
        if event in ("preflight", "arm", "collect"):
            if hr.status == "failed":
                if name not in self._failed:
                    self._failed.add(name)
                    self.info(f"{name}: FAILED: {hr.error}", level=-1)
            else:
                self.info(f"{name}: {event} done ({data['done']}/{data['total']})", level=1)
            if data["done"] == data["total"]:
                self.info(f"{event}: {data['total']} host(s)", level=0)
        elif event in ("connected", "armed", "fetched"):
            self.info(f"{name}: {event}", level=1)


def _interfaces(value: str) -> list[str] | None:
    if value in ("", "all"):
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleetrst",
        description="Find out, across a fleet of Linux hosts at once, who sends TCP resets and why.",
    )
    p.add_argument("--version", action="version", version=f"fleetrst {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="capture resets on every host of an inventory and report")
    s.add_argument("inventory", help="Ansible inventory (YAML)")
    s.add_argument("-l", "--limit", help="Ansible-style host pattern (web:&dc1:!web03)")
    s.add_argument("--duration", type=float, default=30.0, metavar="SECONDS", help="capture window (default 30)")
    s.add_argument("-o", "--out", type=Path, metavar="DIR", help="run directory (default ./fleetrst-runs/RUN_ID)")
    s.add_argument("-f", "--forks", type=int, default=50, metavar="N", help="parallel connections (default 50)")
    s.add_argument("--interfaces", default="all", metavar="LIST",
                   help="comma-separated interfaces to capture (default: all that are up, lo included)")
    s.add_argument("--known-hosts", type=Path, default=Path("~/.ssh/known_hosts").expanduser(), metavar="FILE",
                   help="known_hosts file to check host keys against (default ~/.ssh/known_hosts)")
    s.add_argument("--accept-new-host-keys", action="store_true",
                   help="accept and record keys of hosts not yet in known_hosts (changed keys are still refused)")
    s.add_argument("--cap-mb", type=int, default=64, metavar="MB", help="size cap per capture file (default 64)")
    s.add_argument("--remote-tmp", default="/tmp", metavar="DIR", help="where the host side works (default /tmp)")
    s.add_argument("--no-trace", action="store_true", help="do not use tracefs for kernel reset reasons")
    s.add_argument("--fail-on", choices=("info", "warning", "critical"), default="warning",
                   help="exit 1 when a finding reaches this severity (default warning)")
    s.add_argument("-q", "--quiet", action="store_true", help="only errors and the final table")
    s.add_argument("-v", "--verbose", action="count", default=0, help="more progress detail")
    s.set_defaults(func=cmd_scan)

    a = sub.add_parser("analyze", help="analyze a run directory again and render its reports")
    a.add_argument("run_dir", type=Path)
    a.add_argument("--fail-on", choices=("info", "warning", "critical"), default="warning")
    a.add_argument("-q", "--quiet", action="store_true")
    a.add_argument("-v", "--verbose", action="count", default=0)
    a.set_defaults(func=cmd_analyze)

    d = sub.add_parser("demo", help="build a demo fleet on this machine (root), scan it, remove it")
    d.add_argument("--hosts", type=int, default=5, help="number of demo hosts (default 5)")
    d.add_argument("--duration", type=float, default=10.0, metavar="SECONDS")
    d.add_argument("--seed", type=int, help="seed for ports, names and scenario placement")
    d.add_argument("-o", "--out", type=Path, metavar="DIR", help="run directory")
    d.add_argument("--keep", action="store_true", help="leave the demo fleet up (remove it with `fleetrst lab down`)")
    d.add_argument("-q", "--quiet", action="store_true")
    d.add_argument("-v", "--verbose", action="count", default=0)
    d.set_defaults(func=cmd_demo)

    from .lab import register_cli

    register_cli(sub)
    return p


def _exit_for(summary: dict[str, Any], fail_on: str) -> ExitStatus:
    hosts = summary.get("hosts", [])
    if any(h.get("status") == "failed" for h in hosts):
        return ExitStatus.HOSTS_FAILED
    for h in hosts:
        if any(severity_rank(f.get("severity")) >= severity_rank(fail_on) for f in h.get("findings", [])):
            return ExitStatus.FINDINGS
    return ExitStatus.OK


def print_table(summary: dict[str, Any], run_dir: Path, out: TextIO) -> None:
    """The final table: one line per host with its verdict."""
    hosts = summary.get("hosts", [])
    width = min(40, max([4] + [len(_clean(h["name"])) for h in hosts]))
    print(f"{'HOST':<{width}}  {'STATUS':<8} {'SENT/s':>7} {'RECV/s':>7}  VERDICT", file=out)
    for h in hosts:
        r = h.get("resets") or {}
        sev = h.get("verdict", {}).get("severity", "")
        text = _clean(h.get("verdict", {}).get("text", ""))
        print(f"{_clean(h['name'])[:width]:<{width}}  {h['status']:<8} {r.get('sent_per_s', 0):>7.1f} "
              f"{r.get('received_per_s', 0):>7.1f}  [{sev}] {text}", file=out)
    print(f"\nreport: {run_dir / 'index.html'}", file=out)


def _finish(run_dir: Path, fail_on: str, console: Console, quiet: bool) -> ExitStatus:
    summary = analyze_run(run_dir)
    write_reports(run_dir, summary, fail_on=fail_on)
    print_table(summary, run_dir, console.out)
    return _exit_for(summary, fail_on)


def cmd_scan(args: argparse.Namespace, console: Console) -> ExitStatus:
    inv = load_inventory(Path(args.inventory))
    hosts = inv.select(args.limit)
    if args.duration <= 0 or args.duration > 3600:
        raise InventoryError("--duration must be between 0 and 3600 seconds")
    opts = ScanOptions(
        duration=args.duration, out=args.out, forks=max(1, args.forks),
        interfaces=_interfaces(args.interfaces), known_hosts=args.known_hosts.expanduser(),
        accept_new_host_keys=args.accept_new_host_keys, cap_mb=max(1, args.cap_mb),
        remote_tmp=args.remote_tmp, trace=not args.no_trace, inventory=str(args.inventory), limit=args.limit,
    )
    scan = Scan(hosts, opts, progress=console.progress)
    console.info(f"fleetrst {__version__}: run {scan.run_id}, {len(hosts)} host(s), {opts.duration:g} s window")
    try:
        run_dir = scan.run()
    except KeyboardInterrupt:
        console.info("interrupted: hosts released; they remove their captures themselves", level=-1)
        try:
            summary = analyze_run(scan.out)
            write_reports(scan.out, summary, fail_on=args.fail_on)
        except Exception as e:  # noqa: BLE001 - best effort after an interrupt
            console.info(f"partial reports not written: {e}", level=-1)
        else:
            console.info(f"partial report: {scan.out / 'index.html'}", level=-1)
        return ExitStatus.INTERRUPTED
    return _finish(run_dir, args.fail_on, console, args.quiet)


def cmd_analyze(args: argparse.Namespace, console: Console) -> ExitStatus:
    run_dir = args.run_dir
    if not (run_dir / "run.json").exists():
        raise InventoryError(f"{run_dir} is not a fleetrst run directory (no run.json)")
    return _finish(run_dir, args.fail_on, console, args.quiet)


def cmd_demo(args: argparse.Namespace, console: Console) -> ExitStatus:
    from .lab import lab_down, lab_up

    lab_dir = Path(tempfile.mkdtemp(prefix="fleetrst-demo-lab-")) if not args.keep else Path("fleetrst-lab").resolve()
    console.info(f"building a {args.hosts}-host demo fleet in {lab_dir} (network namespaces on 198.18.0.0/24)")
    state = lab_up(lab_dir, hosts=max(3, args.hosts), seed=args.seed)
    console.info(f"lab seed {state.seed}: " + ", ".join(f"{h.name}={h.scenario}" for h in state.hosts))
    try:
        opts = ScanOptions(duration=args.duration, out=args.out, known_hosts=state.known_hosts,
                           inventory=str(state.inventory))
        hosts = load_inventory(state.inventory).select(None)
        scan = Scan(hosts, opts, progress=console.progress)
        console.info(f"scanning: run {scan.run_id}, {opts.duration:g} s window")
        run_dir = scan.run()
        summary = analyze_run(run_dir)
        write_reports(run_dir, summary)
    finally:
        if not args.keep:
            lab_down(lab_dir)
            shutil.rmtree(lab_dir, ignore_errors=True)
            console.info("demo fleet removed")
    print_table(summary, run_dir, console.out)
    # The demo fleet has a dead host and findings by design: that is success here.
    return ExitStatus.OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the `fleetrst` command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if e.code in (0, None) else ExitStatus.USAGE
    verbosity = -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)
    console = Console(out, err, verbosity)
    try:
        if args.command in ("scan", "analyze", "demo"):
            return int(args.func(args, console))
        return int(args.func(args))
    except InventoryError as e:
        print(f"fleetrst: {_clean(e)}", file=err)
        return ExitStatus.USAGE
    except FleetrstError as e:
        print(f"fleetrst: {_clean(e)}", file=err)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        print("fleetrst: interrupted", file=err)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.ERROR


if __name__ == "__main__":
    sys.exit(main())
