"""What a person sees in the terminal: the live status line on a TTY, timestamped lines without
one, -q and -v, the final table, and host text that never reaches the terminal as control codes.

The console is tested on its own with progress events of real HostRun records, then the real CLI
runs against a small namespace lab: in a pseudo-terminal (pty) and with plain pipes.
"""

from __future__ import annotations

import io
import os
import pty
import random
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetrst.cli import Console, print_table
from fleetrst.collect import HostRun
from fleetrst.lab import LabState, lab_down, lab_up
from fleetrst.model import Host
from fleetrst.transport import LocalTransport

STAMP = re.compile(r"^\d\d:\d\d:\d\d ")
HOSTILE_ERROR = "refused \x1b[2J\x1b]0;owned\x07 by \u202eevil"


class FakeTTY(io.StringIO):
    """A terminal for the console: isatty() says yes."""

    def isatty(self) -> bool:
        return True


def _host(name: str, status: str = "ok", error: str | None = None) -> HostRun:
    hr = HostRun(Host(name, "198.18.0.250"), name, "token")
    hr.status, hr.error = status, error
    hr.facts = {"kernel": "6.18.0"}
    hr.captures = [{"interface": "lo", "index": 1, "tag": "lo"}]
    hr.files = {"rst-lo.pcap": {"size": 24, "sha256": "x"}}
    hr.transport = LocalTransport(hr.host)
    return hr


def _feed(console: Console) -> None:
    """A whole scan's events for three hosts, one of which fails to connect with hostile text."""
    ok1, ok2 = _host("web01"), _host("web02")
    bad = _host("db01", "failed", HOSTILE_ERROR)
    console.begin(3)
    console.progress("preflight", {"host": bad, "done": 1, "total": 3})
    for i, hr in enumerate((ok1, ok2)):
        console.progress("connected", {"host": hr})
        console.progress("preflight", {"host": hr, "done": i + 2, "total": 3})
    for i, hr in enumerate((ok1, ok2)):
        console.progress("armed", {"host": hr})
        console.progress("arm", {"host": hr, "done": i + 1, "total": 2})
    start = time.time() + 2
    for remaining in (5.5, 4.2, 3.1, 2.0, 1.0):
        console.progress("window", {"remaining": remaining, "start": start - (5.5 - remaining)})
    for i, hr in enumerate((ok1, ok2)):
        console.progress("fetched", {"host": hr})
        console.progress("collect", {"host": hr, "done": i + 1, "total": 2})


def _summary() -> dict[str, Any]:
    def host(name: str, status: str, severity: str, text: str, sent: float) -> dict[str, Any]:
        return {"name": name, "status": status, "resets": {"sent_per_s": sent, "received_per_s": 0.0},
                "verdict": {"severity": severity, "text": text}, "findings": []}

    return {"hosts": [
        host("web01", "ok", "warning", "caller is \x1b[31mpwn\x07 (pid 9)", 2.0),
        host("web02", "ok", "ok", "No TCP resets.", 0.0),
        host("db01", "failed", "failed", "failed: " + HOSTILE_ERROR, 0.0),
    ]}


def _status_lines(text: str) -> list[str]:
    """The successive states of the live status line (each drawn after \\r and erase-line)."""
    return [part.split("\n")[0] for part in text.split("\r\x1b[K")[1:] if part.startswith("fleetrst: ")]


# --- the console on its own ---------------------------------------------------------------------


def test_tty_draws_one_status_line_and_prints_failures_above_it(fault_table) -> None:
    err = FakeTTY()
    console = Console(io.StringIO(), err, verbosity=0, tty=True, colour=False)
    _feed(console)
    console.end()
    text = err.getvalue()
    states = _status_lines(text)
    assert states[0] == "fleetrst: connected 0/3"
    assert "fleetrst: connected 2/3 | armed 2/2 | 1 failed" in states
    assert any(re.fullmatch(r"fleetrst: .*window starts in \d s.*", s) for s in states)
    assert "fleetrst: connected 2/3 | armed 2/2 | window 2 s left | 1 failed" in states
    assert states[-1] == "fleetrst: connected 2/3 | armed 2/2 | window over | collected 2/2 | 1 failed"
    # The status line is never ended by a newline: only finished messages are.
    lines = text.split("\n")
    assert not any(line.rsplit("\r\x1b[K", 1)[-1].startswith("fleetrst: ") for line in lines[:-1])
    # The failure was printed as it happened, before any host connected, on a line of its own.
    failure = next(line for line in lines if "FAILED" in line)
    assert failure.endswith("db01: FAILED: refused \\x1b[2J\\x1b]0;owned\\x07 by \\u202eevil")
    assert text.index("FAILED") < text.index("connected 1/3")
    assert text.endswith("\r\x1b[K")  # end() leaves a clean line for what follows
    # Nothing from a host reached the terminal as a control sequence.
    assert "\x1b[2J" not in text and "\x07" not in text and "\u202e" not in text
    fault_table.append(("terminal escaping of host content", "control sequences shown escaped",
                        failure.split(": ", 2)[2], "ok"))


def test_quiet_shows_only_errors() -> None:
    err = FakeTTY()
    console = Console(io.StringIO(), err, verbosity=-1, tty=True, colour=False)
    console.info("fleetrst 0.1.0: run x, 3 host(s)")
    _feed(console)
    console.end()
    assert err.getvalue() == "db01: FAILED: refused \\x1b[2J\\x1b]0;owned\\x07 by \\u202eevil\n"


def test_warnings_about_the_input_show_even_with_q_and_keep_their_own_prefix() -> None:
    tty = FakeTTY()
    console = Console(io.StringIO(), tty, verbosity=-1, tty=True, colour=False)
    console.begin(2)
    console.warning("inv.yml:3: unknown variable ansible_prot for group web\x1b[2J")
    assert tty.getvalue() == (
        "fleetrst: warning: inv.yml:3: unknown variable ansible_prot for group web\\x1b[2J\n")
    pipe = io.StringIO()
    console = Console(io.StringIO(), pipe, verbosity=0)
    console.warning("inv.yml:3: x")
    assert pipe.getvalue() == "fleetrst: warning: inv.yml:3: x\n"  # no timestamp: grep-able


def test_without_a_tty_every_line_is_plain_and_timestamped() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, verbosity=0)
    assert not console.tty and not console.colour
    _feed(console)
    lines = err.getvalue().splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    assert "\r" not in err.getvalue() and "\x1b" not in err.getvalue()
    bodies = [line[9:] for line in lines]
    assert bodies[0].startswith("db01: FAILED: refused \\x1b[2J")
    assert "connected: 2/3 host(s) ready" in bodies
    assert "armed: 2/2 host(s)" in bodies
    assert "collected: 2/2 host(s)" in bodies
    window = [b for b in bodies if b.startswith("window:")]
    # One line when the window is set, not one per second (CI logs stay short).
    assert len(window) == 1 and re.fullmatch(
        r"window: capturing from \d\d:\d\d:\d\d to \d\d:\d\d:\d\d \(6 s left\)", window[0])
    assert not any(b.startswith(("web01:", "web02:")) for b in bodies), "per-host lines need -v"


def test_verbose_adds_a_line_per_host_and_stage() -> None:
    err = io.StringIO()
    _feed(Console(io.StringIO(), err, verbosity=1))
    bodies = [line[9:] for line in err.getvalue().splitlines()]
    for name in ("web01", "web02"):
        assert f"{name}: connected (local)" in bodies
        assert f"{name}: ready: kernel 6.18.0, clock offset +0.0 ms, capturing on lo" in bodies
        assert f"{name}: armed" in bodies
        assert f"{name}: collected 1 file(s), 24 bytes" in bodies
    assert sum("FAILED" in b for b in bodies) == 1


def test_table_colours_severities_only_when_asked_and_cleans_host_text(tmp_path: Path) -> None:
    plain, coloured = io.StringIO(), io.StringIO()
    print_table(_summary(), tmp_path, plain)
    print_table(_summary(), tmp_path, coloured, colour=True)
    assert "\x1b" not in plain.getvalue()
    rows = plain.getvalue().splitlines()
    assert rows[0].split() == ["HOST", "STATUS", "SENT/s", "RECV/s", "SEVERITY", "VERDICT"]
    assert rows[1].split()[:5] == ["web01", "ok", "2.0", "0.0", "warning"]
    assert rows[1].endswith("caller is \\x1b[31mpwn\\x07 (pid 9)")
    assert rows[3].split()[:2] == ["db01", "failed"]
    assert rows[-2] == "3 host(s): 1 failed, 1 warning, 1 ok"
    assert rows[-1] == f"report: {tmp_path / 'index.html'}"
    # In colour, the only escape sequences are the severity colours, and the columns still line up.
    sequences = re.findall(r"\x1b\[[0-9;]*m", coloured.getvalue())
    assert sequences == ["\x1b[1;33m", "\x1b[0m", "\x1b[32m", "\x1b[0m", "\x1b[1;35m", "\x1b[0m"]
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured.getvalue()) == plain.getvalue()


def test_table_fits_verdicts_to_the_terminal_width(tmp_path: Path) -> None:
    summary = _summary()
    summary["hosts"][1]["verdict"]["text"] = "x" * 300
    out = io.StringIO()
    print_table(summary, tmp_path, out, width=100)
    rows = out.getvalue().splitlines()
    assert all(len(row) <= 99 for row in rows[:4]), [len(r) for r in rows]
    assert rows[2].endswith("x...")


# --- the real CLI against a lab -----------------------------------------------------------------


def _seed() -> int:
    return int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    seed = _seed()
    rng = random.Random(seed)
    scenarios = ["closed_port", "quiet", "dead"]
    rng.shuffle(scenarios)
    # A caller whose name would recolour the terminal and ring its bell if printed raw.
    name = f"\x1b[31m{rng.randrange(16**4):04x}\x07"
    print(f"\nlab seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), scenarios: {scenarios}")
    directory = tmp_path_factory.mktemp("lab")
    try:
        yield lab_up(directory, hosts=len(scenarios), seed=seed, scenarios=scenarios, ttl=600,
                     names={"closed_port": name})
    finally:
        lab_down(directory)


MODES = {"tty": [], "tty-q": ["-q"], "pipe-v": ["-v"]}


def _argv(fleet: LabState, base: Path, mode: str) -> list[str]:
    """The scan of one mode, with the lab's hosts renamed MODE-NAME in an inventory of its own."""
    inventory = yaml.safe_load(fleet.inventory.read_text())
    hosts = inventory["all"]["children"]["lab"]["hosts"]
    inventory["all"]["children"]["lab"]["hosts"] = {f"{mode}-{k}": v for k, v in hosts.items()}
    path = base / f"{mode}.yml"
    path.write_text(yaml.safe_dump(inventory))
    return [sys.executable, "-m", "fleetrst", "scan", str(path), "--known-hosts",
            str(fleet.known_hosts), "--duration", "3", "-o", str(base / mode), *MODES[mode]]


class PtyRun:
    """The CLI in a pseudo-terminal of 200 columns: everything it writes, as the terminal got it."""

    def __init__(self, argv: list[str]) -> None:
        import fcntl
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        try:
            self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                         start_new_session=True, env=env)
        finally:
            os.close(slave)
        self.data = b""

    def wait(self, timeout: float) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(self.master, 65536)
                    except OSError:  # EIO: the terminal's last writer has gone
                        break
                    if not chunk:
                        break
                    self.data += chunk
                elif self.proc.poll() is not None:
                    break
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic())), self.data.decode()
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture(scope="module")
def runs(fleet: LabState, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Scans of the lab on a terminal (plain and -q) and through pipes (-v), one after another."""
    base = tmp_path_factory.mktemp("runs")
    result: dict[str, Any] = {"base": base}
    for mode in MODES:
        if mode.startswith("tty"):
            result[mode] = PtyRun(_argv(fleet, base, mode)).wait(120)
        else:
            done = subprocess.run(_argv(fleet, base, mode), capture_output=True, text=True,
                                  timeout=120, check=False)
            result[mode] = (done.returncode, done.stdout, done.stderr)
        print(f"--- {mode} ---\n{result[mode]!r}")
    return result


class Named:
    """A lab host as one mode's inventory names it."""

    def __init__(self, host: Any, mode: str) -> None:
        self.name, self.address, self.scenario = f"{mode}-{host.name}", host.address, host.scenario
        self.expected = host.expected


def _by_scenario(fleet: LabState, mode: str) -> dict[str, Named]:
    return {h.scenario: Named(h, mode) for h in fleet.hosts}


def _table_row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [name])


def _escapes(text: str) -> list[str]:
    """Every escape sequence and other control character in `text`, except \\r and \\n."""
    return re.findall(r"\x1b\[[0-9;]*[A-Za-z]|\x1b.|[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]", text)


@pytest.mark.lab
def test_terminal_run_shows_live_stages_failures_and_a_coloured_table(
        fleet: LabState, runs: dict[str, Any]) -> None:
    rc, text = runs["tty"]
    by = _by_scenario(fleet, "tty")
    assert rc == 3, "the dead host makes the run exit with 'some hosts failed'"
    text = text.replace("\r\n", "\n")  # the terminal's own newline translation
    states = _status_lines(text)
    live = by["closed_port"], by["quiet"]
    assert "fleetrst: connected 0/3" in states
    assert "fleetrst: connected 2/3 | armed 2/2 | 1 failed" in states
    countdown = [s for s in states if " left" in s]
    assert countdown and all(re.search(r"window \d s left", s) for s in countdown)
    assert states[-1] == "fleetrst: connected 2/3 | armed 2/2 | window over | collected 2/2 | 1 failed"
    # The dead host's failure came as it happened: long before the window.
    failure = f"{by['dead'].name}: FAILED: connection refused ({by['dead'].address}:22)"
    assert failure in text and text.index(failure) < text.index("| window")
    # The only escape sequences are ours: erase-line for the status line and the table's colours.
    assert set(_escapes(text)) <= {"\x1b[K", "\x1b[1;33m", "\x1b[1;35m", "\x1b[32m", "\x1b[1;31m",
                                   "\x1b[36m", "\x1b[0m"}, set(_escapes(text))
    table = text[text.index("HOST "):]
    assert "\x1b[K" not in table, "the status line is gone before the table"
    caller = by["closed_port"].expected["process"]
    row = _table_row(table, by["closed_port"].name)
    assert "\x1b[1;33mwarning\x1b[0m" in row or "\x1b[1;31mcritical\x1b[0m" in row
    assert caller.replace("\x1b", "\\x1b").replace("\x07", "\\x07") in row
    assert "\x1b[32mok\x1b[0m" in _table_row(table, by["quiet"].name)
    assert "\x1b[1;35mfailed\x1b[0m" in _table_row(table, by["dead"].name)
    assert all(_table_row(table, h.name) for h in live)
    assert table.rstrip().endswith(f"report: {runs['base'] / 'tty' / 'index.html'}")


@pytest.mark.lab
def test_quiet_terminal_run_prints_only_errors_and_the_table(fleet: LabState, runs: dict[str, Any]) -> None:
    rc, text = runs["tty-q"]
    by = _by_scenario(fleet, "tty-q")
    assert rc == 3
    assert "\x1b[K" not in text, "no status line with -q"
    lines = text.replace("\r\n", "\n").split("\n")
    header = lines.index(next(line for line in lines if line.startswith("HOST ")))
    assert lines[:header] == [f"{by['dead'].name}: FAILED: connection refused ({by['dead'].address}:22)"]
    assert {line.split()[0] for line in lines[header + 1:header + 4]} == {h.name for h in by.values()}
    assert lines[header + 4:] == ["", "3 host(s): 1 failed, 1 warning, 1 ok",
                                  f"report: {runs['base'] / 'tty-q' / 'index.html'}", ""]
    assert "fleetrst: connected" not in text and "window:" not in text and "| window" not in text


@pytest.mark.lab
def test_piped_verbose_run_prints_timestamped_lines_per_host_and_no_escape_codes(
        fleet: LabState, runs: dict[str, Any]) -> None:
    rc, out, err = runs["pipe-v"]
    by = _by_scenario(fleet, "pipe-v")
    assert rc == 3
    assert not _escapes(out) and not _escapes(err) and "\r" not in err
    lines = err.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), lines
    bodies = [line[9:] for line in lines]
    assert bodies[0].startswith("fleetrst ") and "3 host(s), 3 s window" in bodies[0]
    for stage in ("connected: 2/3 host(s) ready", "armed: 2/2 host(s)", "collected: 2/2 host(s)"):
        assert stage in bodies
    assert sum(b.startswith("window:") for b in bodies) == 1
    for host in by.values():
        mine = [b for b in bodies if b.startswith(host.name + ": ")]
        if host.scenario == "dead":
            assert mine == [f"{host.name}: FAILED: connection refused ({host.address}:22)"]
            continue
        steps = [b.split(": ", 2)[1].split()[0] for b in mine]
        assert steps == ["connected", "ready", "armed", "collected"], mine
        assert mine[0] == f"{host.name}: connected (root@{host.address}:22)"
        assert re.fullmatch(rf"{host.name}: ready: kernel \S+, clock offset [+-]\d+\.\d ms, "
                            r"capturing on .*\blo\b.*", mine[1]), mine[1]
        assert re.fullmatch(rf"{host.name}: collected \d+ file\(s\), [\d,]+ bytes", mine[3]), mine[3]
    # The caller's name, with its escape codes, is in the table as visible text.
    caller = by["closed_port"].expected["process"]
    row = _table_row(out, by["closed_port"].name)
    assert caller.replace("\x1b", "\\x1b").replace("\x07", "\\x07") in row, row
    assert out.rstrip().endswith(f"report: {runs['base'] / 'pipe-v' / 'index.html'}")
