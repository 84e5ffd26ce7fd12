"""Command line: parse arguments, call the library, print, map errors to exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .analysis import analyze_run, severity_rank
from .baseline import BaselineError, apply_baseline, describe, load_summary, regressions
from .collect import DEFAULT_HOST_SCRIPT, Scan, ScanOptions
from .errors import FleetrstError, InventoryError
from .inventory import Inventory, load_inventory
from .netns import CAPTURE_LIMIT as NAMESPACE_CAPTURE_LIMIT
from .netns import DEFAULT_MAX as DEFAULT_MAX_NAMESPACES
from .report import host_verdict, write_reports


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


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def _columns(stream: TextIO) -> int:
    """Width of the terminal behind `stream` (80 if it cannot be told)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


# SGR colours of the severities in the final table (on a terminal, unless NO_COLOR is set).
_SEVERITY_SGR = {"critical": "1;31", "failed": "1;35", "warning": "1;33", "info": "36", "ok": "32"}
_STAGES = ("connected", "armed", "collected")


class Console:
    """Where messages go. On a terminal: one live status line on stderr, redrawn as hosts pass the
    stages, with messages printed above it; elsewhere (CI): plain timestamped lines.

    verbosity -1 (-q) shows only errors and the final table, 1 (-v) adds a line per host and stage.
    Everything that came from a host passes through _clean before it is printed.
    """

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, verbosity: int = 0,
                 tty: bool | None = None, colour: bool | None = None) -> None:
        self.out, self.err, self.verbosity = out, err, verbosity
        self.tty = _isatty(err) if tty is None else tty
        if colour is None:
            colour = _isatty(out) and not os.environ.get("NO_COLOR")
        self.colour = colour
        self._lock = threading.RLock()
        self._line = ""  # what the live status line shows now ("" when none is drawn)
        self.hosts = 0
        self._done = dict.fromkeys(_STAGES, 0)
        self._totals: dict[str, int] = {}
        self._failed: set[str] = set()
        self._left: int | None = None  # seconds left in the window, once it has begun
        self._window_over = False
        self._window_said = False
        self._starts_in = 0

    # --- output ----------------------------------------------------------------------------

    def _write_line(self, text: str, stamp: bool = True) -> None:
        """Print one finished line above the live status line (which is then drawn again);
        `stamp`: with the time in front when there is no terminal."""
        if self.tty and self._line:
            self.err.write("\r\x1b[K" + text + "\n" + self._line)
        elif self.tty or not stamp:
            self.err.write(text + "\n")
        else:
            self.err.write(f"{dt.datetime.now().strftime('%H:%M:%S')} {text}\n")
        self.err.flush()

    def info(self, msg: str, level: int = 0) -> None:
        """A message for verbosity `level` and above (-1: even with -q)."""
        if self.verbosity < level:
            return
        with self._lock:
            self._write_line(_clean(msg))

    def error(self, msg: str) -> None:
        """An error: always shown."""
        self.info(msg, level=-1)

    def warning(self, msg: str) -> None:
        """A warning about the input, always shown, as the one-line errors are:
        `fleetrst: warning: ...`."""
        with self._lock:
            self._write_line(f"fleetrst: warning: {_clean(msg)}", stamp=False)

    def begin(self, hosts: int) -> None:
        """A scan of `hosts` hosts starts: the status line counts against this."""
        with self._lock:
            self.hosts = hosts
            self._redraw()

    def end(self) -> None:
        """Remove the live status line (before the final table, or an error)."""
        with self._lock:
            if self._line:
                self.err.write("\r\x1b[K")
                self.err.flush()
                self._line = ""

    def status_text(self) -> str:
        """The live status line's text: hosts through each stage, the window, failures."""
        total = self.hosts or self._totals.get("preflight", 0)
        parts = [f"connected {self._done['connected']}/{total or '?'}"]
        if "arm" in self._totals or self._done["armed"]:
            ready = self._totals.get("arm", max(0, total - len(self._failed)))
            parts.append(f"armed {self._done['armed']}/{ready}")
        if self._window_over:
            parts.append("window over")
        elif self._left is not None and self._starts_in > 0:
            parts.append(f"window starts in {self._starts_in} s")
        elif self._left is not None:
            parts.append(f"window {self._left} s left")
        if "collect" in self._totals or self._done["collected"]:
            armed = self._totals.get("collect", self._done["armed"])
            parts.append(f"collected {self._done['collected']}/{armed}")
        if self._failed:
            parts.append(f"{len(self._failed)} failed")
        return "fleetrst: " + " | ".join(parts)

    def _redraw(self) -> None:
        if not self.tty or self.verbosity < 0:
            return
        # One character short of the width: a line that wraps cannot be redrawn with \r.
        line = self.status_text()[: max(10, _columns(self.err) - 1)]
        if line != self._line:
            self._line = line
            self.err.write("\r\x1b[K" + line)
            self.err.flush()

    # --- scan progress (called from the scan's worker threads) ---------------------------------

    def progress(self, event: str, data: dict[str, Any]) -> None:
        """Take one progress event of a Scan (collect.Scan's `progress` callback)."""
        with self._lock:
            self._progress(event, data)
            self._redraw()

    def _progress(self, event: str, data: dict[str, Any]) -> None:
        if event == "window":
            self._window(float(data["remaining"]), data.get("start"))
            return
        hr = data.get("host")
        if hr is None:
            return
        name = hr.host.name
        if event == "connected":
            self._done["connected"] += 1
            self.info(f"{name}: connected ({getattr(hr.transport, 'description', 'ssh')})", level=1)
        elif event == "armed":
            self._done["armed"] += 1
            self.info(f"{name}: armed", level=1)
        elif event == "fetched":
            self._window_over = True
            self._done["collected"] += 1
            size = sum(int(f.get("size", 0)) for f in hr.files.values())
            self.info(f"{name}: collected {len(hr.files)} file(s), {size:,} bytes", level=1)
        elif event in ("preflight", "arm", "collect"):
            self._totals[event] = int(data["total"])
            if event == "collect":
                self._window_over = True
            if hr.status == "failed":
                if name not in self._failed:
                    self._failed.add(name)
                    self.error(f"{name}: FAILED: {hr.error}")
            elif event == "preflight":
                self._ready(hr)
            if data["done"] == data["total"]:
                self._stage_done(event, int(data["total"]))

    def _ready(self, hr: Any) -> None:
        name, facts = hr.host.name, hr.facts
        if hr.status == "partial":
            self.info(f"{name}: partial: {hr.error}", level=0)
        ifaces = ", ".join(str(c["interface"]) for c in hr.captures) or "none"
        namespaces = facts.get("network_namespaces")
        more = f", {namespaces} other network namespace(s)" if namespaces else ""
        self.info(f"{name}: ready: kernel {facts.get('kernel') or '?'}, clock offset "
                  f"{hr.offset * 1000:+.1f} ms, capturing on {ifaces}{more}", level=1)

    def _stage_done(self, stage: str, total: int) -> None:
        if self.tty:
            return  # the status line says it
        failed = len(self._failed)
        if stage == "preflight":
            self.info(f"connected: {total - failed}/{total} host(s) ready", level=0)
        elif stage == "arm":
            self.info(f"armed: {self._done['armed']}/{total} host(s)", level=0)
        else:
            self.info(f"collected: {self._done['collected']}/{total} host(s)", level=0)

    def _window(self, remaining: float, start: object) -> None:
        now = time.time()
        to_start = float(start) - now if isinstance(start, (int, float)) else 0.0
        self._starts_in = max(0, math.ceil(to_start))
        left = max(0, math.ceil(remaining))
        if left == self._left:
            return
        self._left = left
        if self.tty:
            return  # the status line counts down
        if not self._window_said:
            self._window_said = True
            begin = dt.datetime.fromtimestamp(now + max(0.0, to_start))
            end = dt.datetime.fromtimestamp(now + remaining)
            self.info(f"window: capturing from {begin:%H:%M:%S} to {end:%H:%M:%S} "
                      f"({left} s left)", level=0)
        elif left % 10 == 0 and left > 0:
            self.info(f"window: {left} s left", level=0)

    # --- the end ------------------------------------------------------------------------------

    def table(self, summary: dict[str, Any], run_dir: Path) -> None:
        """End the status line, then print the final table of hosts and the report's path."""
        self.end()
        width = _columns(self.out) if _isatty(self.out) else None
        print_table(summary, run_dir, self.out, colour=self.colour, width=width)


def _interfaces(value: str) -> list[str] | None:
    if value in ("", "all"):
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}"
_NAMESPACE_ITEM = re.compile(rf"{_NAME_PART}(/{_NAME_PART})?")


def _namespaces_spec_ok(spec: str) -> bool:
    """all, host, or a list of inodes, names (as under /run/netns), container or pod ids, and
    container or pod names (a pod's as namespace/name or name)."""
    spec = spec.strip()
    if spec in ("all", "host"):
        return True
    items = [x.strip() for x in spec.split(",")]
    return bool(items) and all(_NAMESPACE_ITEM.fullmatch(x) for x in items)


def _baseline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", type=Path, metavar="PATH",
                   help="compare with an earlier run (its directory or its summary.json)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 and fail in JUnit only for findings new since --baseline that reach --fail-on")


def _load_baseline(args: argparse.Namespace) -> tuple[dict[str, Any], str] | None:
    """The --baseline summary and its path as given; read before a scan, so a typo costs no window."""
    if args.fail_on_regression and args.baseline is None:
        raise InventoryError("--fail-on-regression needs --baseline PATH (an earlier run)")
    return None if args.baseline is None else (load_summary(args.baseline), str(args.baseline))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleetrst",
        description="Find out, across a fleet of Linux hosts at once, who sends TCP resets and why.",
    )
    p.add_argument("--version", action="version", version=f"fleetrst {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="capture resets on every host of an inventory and report")
    s.add_argument("inventory", help="Ansible inventory: YAML, INI, or a dynamic source (script, plugin config)")
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
    s.add_argument("--remote-tmp", default="/tmp", choices=("/tmp", "/var/tmp"),
                   help="where the host side works (default /tmp)")
    s.add_argument("--host-script", default=DEFAULT_HOST_SCRIPT, metavar="PATH",
                   help="root-owned copy of the host script that sudoers allows (default %(default)s; "
                        "used when present and identical to `fleetrst host-script`)")
    s.add_argument("-K", "--ask-become-pass", action="store_true", help="ask once for the sudo password")
    s.add_argument("--become-password-file", type=Path, metavar="FILE",
                   help="read the sudo password from the first line of FILE")
    s.add_argument("--no-trace", action="store_true", help="do not use tracefs for kernel reset reasons")
    s.add_argument("--namespaces", default="all", metavar="all|host|LIST",
                   help="network namespaces (containers, pods) to capture inside: all (default: up to "
                        "--max-namespaces, those sending the most resets first), host (only count "
                        "them), or a comma-separated list of inodes, /run/netns names, container or pod "
                        "ids (prefixes) or names (a pod as NAMESPACE/NAME or NAME); every "
                        "namespace's counters are read in any case")
    s.add_argument("--max-namespaces", type=int, default=DEFAULT_MAX_NAMESPACES, metavar="N",
                   help=f"capture inside at most N namespaces per host (default "
                        f"{DEFAULT_MAX_NAMESPACES}, at most {NAMESPACE_CAPTURE_LIMIT})")
    s.add_argument("--fail-on", choices=("info", "warning", "critical"), default="warning",
                   help="exit 1 when a finding reaches this severity (default warning)")
    _baseline_options(s)
    s.add_argument("-q", "--quiet", action="store_true", help="only errors and the final table")
    s.add_argument("-v", "--verbose", action="count", default=0, help="more progress detail")
    s.set_defaults(func=cmd_scan)

    hs = sub.add_parser("host-script", help="print the host-side script (to install it for restricted sudo users)")
    hs.set_defaults(func=cmd_host_script)

    a = sub.add_parser("analyze", help="analyze a run directory again and render its reports")
    a.add_argument("run_dir", type=Path)
    a.add_argument("--fail-on", choices=("info", "warning", "critical"), default="warning")
    _baseline_options(a)
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
    from .trend import register_cli as register_trend

    register_trend(sub)
    return p


def _exit_for(summary: dict[str, Any], fail_on: str, regression: bool = False) -> ExitStatus:
    hosts = summary.get("hosts", [])
    if any(h.get("status") == "failed" for h in hosts):
        return ExitStatus.HOSTS_FAILED
    if regression:
        return ExitStatus.FINDINGS if regressions(summary, fail_on) else ExitStatus.OK
    for h in hosts:
        if any(severity_rank(f.get("severity")) >= severity_rank(fail_on) for f in h.get("findings", [])):
            return ExitStatus.FINDINGS
    return ExitStatus.OK


_TABLE_ORDER = {"critical": 5, "failed": 4, "warning": 3, "info": 2, "ok": 1}


def _float(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def print_table(summary: dict[str, Any], run_dir: Path, out: TextIO, *, colour: bool = False,
                width: int | None = None) -> None:
    """The final table: one line per host with its verdict, a tally, and the report's path.

    colour: severities in colour (terminals only); width: cut verdicts to fit a terminal.
    """
    hosts = [h for h in summary.get("hosts", []) if isinstance(h, dict)]
    rows = []
    for h in hosts:
        r = h.get("resets") or {}
        verdict = host_verdict(h)
        rows.append((_clean(h.get("name", "?"))[:40], _clean(h.get("status", "?"))[:8],
                     _float(r.get("sent_per_s")), _float(r.get("received_per_s")),
                     _clean(verdict["severity"])[:8], _clean(verdict["text"])))
    name_w = max([4] + [len(row[0]) for row in rows])
    print(f"{'HOST':<{name_w}}  {'STATUS':<8} {'SENT/s':>7} {'RECV/s':>7}  {'SEVERITY':<8}  VERDICT",
          file=out)
    room = None if width is None else max(20, width - 1 - (name_w + 2 + 9 + 8 + 8 + 2 + 10))
    for name, status, sent, received, sev, text in rows:
        if room is not None and len(text) > room:
            text = text[: room - 3] + "..."
        label = f"{sev:<8}"
        if colour and sev in _SEVERITY_SGR:
            label = f"\x1b[{_SEVERITY_SGR[sev]}m{sev}\x1b[0m" + " " * (8 - len(sev))
        print(f"{name:<{name_w}}  {status:<8} {sent:>7.1f} {received:>7.1f}  {label}  {text}", file=out)
    tally: dict[str, int] = {}
    for row in rows:
        tally[row[4]] = tally.get(row[4], 0) + 1
    order = sorted(tally, key=lambda s: -_TABLE_ORDER.get(s, 0))
    print(f"\n{len(rows)} host(s): " + ", ".join(f"{tally[s]} {s}" for s in order), file=out)
    print(f"report: {run_dir / 'index.html'}", file=out)


def _finish(run_dir: Path, fail_on: str, console: Console, quiet: bool,
            baseline: tuple[dict[str, Any], str] | None = None, regression: bool = False) -> ExitStatus:
    summary = analyze_run(run_dir)
    if baseline is not None:
        apply_baseline(summary, *baseline)
    write_reports(run_dir, summary, fail_on=fail_on, regression=regression)
    console.table(summary, run_dir)
    for line in describe(summary["baseline"]) if baseline is not None else []:
        print(_clean(line), file=console.out)
    return _exit_for(summary, fail_on, regression)


def _become_password(args: argparse.Namespace) -> str | None:
    """The sudo password, asked once or read from a file; it only ever travels on stdin."""
    if args.become_password_file:
        try:
            return args.become_password_file.read_text().splitlines()[0]
        except (OSError, IndexError) as e:
            raise InventoryError(f"cannot read a password from {args.become_password_file}") from e
    if args.ask_become_pass:
        import getpass

        return getpass.getpass("BECOME password: ")
    return None


def cmd_host_script(args: argparse.Namespace) -> int:
    """Print the host script, for installing it root-owned where sudoers allows it."""
    from importlib import resources

    sys.stdout.write(resources.files("fleetrst.remote").joinpath("capture.sh").read_text())
    return 0


def _load_inventory(path: Path, console: Console) -> Inventory:
    """The inventory, its warnings printed (they never stop a scan)."""
    inv = load_inventory(path)
    for warning in inv.warnings:
        console.warning(warning)
    return inv


def cmd_scan(args: argparse.Namespace, console: Console) -> ExitStatus:
    inv = _load_inventory(Path(args.inventory), console)
    hosts = inv.select(args.limit)
    if args.duration <= 0 or args.duration > 3600:
        raise InventoryError("--duration must be between 0 and 3600 seconds")
    if not 0 <= args.max_namespaces <= NAMESPACE_CAPTURE_LIMIT:
        raise InventoryError(f"--max-namespaces must be between 0 and {NAMESPACE_CAPTURE_LIMIT}")
    if not _namespaces_spec_ok(args.namespaces):
        raise InventoryError("--namespaces takes all, host, or a comma-separated list of inodes, "
                             "namespace names, container or pod ids or names")
    baseline = _load_baseline(args)
    opts = ScanOptions(
        duration=args.duration, out=args.out, forks=max(1, args.forks),
        interfaces=_interfaces(args.interfaces), known_hosts=args.known_hosts.expanduser(),
        accept_new_host_keys=args.accept_new_host_keys, cap_mb=max(1, args.cap_mb),
        remote_tmp=args.remote_tmp, trace=not args.no_trace, inventory=str(args.inventory), limit=args.limit,
        host_script=args.host_script, become_password=_become_password(args),
        namespaces=args.namespaces.strip(), max_namespaces=args.max_namespaces,
    )
    scan = Scan(hosts, opts, progress=console.progress)
    console.info(f"fleetrst {__version__}: run {scan.run_id}, {len(hosts)} host(s), {opts.duration:g} s window")
    console.begin(len(hosts))
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
        console.end()
        return ExitStatus.INTERRUPTED
    return _finish(run_dir, args.fail_on, console, args.quiet, baseline, args.fail_on_regression)


def cmd_analyze(args: argparse.Namespace, console: Console) -> ExitStatus:
    run_dir = args.run_dir
    if not (run_dir / "run.json").exists():
        raise InventoryError(f"{run_dir} is not a fleetrst run directory (no run.json)")
    baseline = _load_baseline(args)
    return _finish(run_dir, args.fail_on, console, args.quiet, baseline, args.fail_on_regression)


def cmd_demo(args: argparse.Namespace, console: Console) -> ExitStatus:
    from .lab import lab_down, lab_up

    lab_dir = Path(tempfile.mkdtemp(prefix="fleetrst-demo-lab-")) if not args.keep else Path("fleetrst-lab").resolve()
    console.info(f"building a {args.hosts}-host demo fleet in {lab_dir} (network namespaces on 198.18.0.0/24)")
    state = lab_up(lab_dir, hosts=max(3, args.hosts), seed=args.seed)
    console.info(f"lab seed {state.seed}: " + ", ".join(f"{h.name}={h.scenario}" for h in state.hosts))
    try:
        opts = ScanOptions(duration=args.duration, out=args.out, known_hosts=state.known_hosts,
                           inventory=str(state.inventory))
        hosts = _load_inventory(state.inventory, console).select(None)
        scan = Scan(hosts, opts, progress=console.progress)
        console.info(f"scanning: run {scan.run_id}, {opts.duration:g} s window")
        console.begin(len(hosts))
        run_dir = scan.run()
        summary = analyze_run(run_dir)
        write_reports(run_dir, summary)
    finally:
        if not args.keep:
            lab_down(lab_dir)
            shutil.rmtree(lab_dir, ignore_errors=True)
            console.info("demo fleet removed")
    console.table(summary, run_dir)
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
        if args.command in ("scan", "analyze", "demo", "trend"):
            return int(args.func(args, console))
        return int(args.func(args))
    except (InventoryError, BaselineError) as e:
        console.end()
        print(f"fleetrst: {_clean(e)}", file=err)
        return ExitStatus.USAGE
    except FleetrstError as e:
        console.end()
        print(f"fleetrst: {_clean(e)}", file=err)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        console.end()
        print("fleetrst: interrupted", file=err)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.ERROR
    except Exception:  # noqa: BLE001 - a bug in fleetrst: its own exit code, never findings' (1)
        console.end()
        traceback.print_exc(file=err)
        print("fleetrst: internal error (the traceback above says where)", file=err)
        return ExitStatus.ERROR


if __name__ == "__main__":
    sys.exit(main())
