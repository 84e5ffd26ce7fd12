"""The CLI's boundary: arguments, one-line errors, exit codes, terminal-safe output."""

import io
import socket
import subprocess
import sys
from pathlib import Path

from fleetrst.cli import ExitStatus, _clean, main
from fleetrst.collect import host_dir_names, parse_kv
from fleetrst.model import Host


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_missing_inventory_is_a_one_line_usage_error(tmp_path: Path) -> None:
    rc, _, err = run("scan", str(tmp_path / "nope.yml"))
    assert rc == ExitStatus.USAGE
    assert err.count("\n") == 1 and "nope.yml" in err


def test_broken_inventory_names_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    a: {ansible_host: 1.2.3.4\n    b:\n")
    rc, _, err = run("scan", str(inv))
    assert rc == ExitStatus.USAGE
    assert "inv.yml:" in err and err.count("\n") == 1


def test_limit_matching_nothing_is_a_usage_error(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    web01: {ansible_host: 198.18.0.250}\n")
    rc, _, err = run("scan", str(inv), "-l", "db*")
    assert rc == ExitStatus.USAGE
    assert "db*" in err


def test_scan_prints_inventory_warnings_even_with_q_and_still_runs(tmp_path: Path, fault_table) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there any more: the host fails at once, and no SSH server is needed.
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    web01:\n      ansible_host: 127.0.0.1\n"
                   f"      ansible_port: {port}\n      ansible_prot: 2222\n")
    done = subprocess.run(
        [sys.executable, "-m", "fleetrst", "scan", str(inv), "-q", "--duration", "1",
         "-o", str(tmp_path / "run"), "--known-hosts", str(tmp_path / "known_hosts")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == ExitStatus.HOSTS_FAILED, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [(f"fleetrst: warning: {inv}:6: unknown variable ansible_prot for host "
                         "web01 (did you mean ansible_port?)")]
    assert done.stderr.startswith(warnings[0])
    assert (tmp_path / "run" / "summary.json").is_file()
    fault_table.append(("unknown inventory variable", "warned with file:line, scan still runs",
                        "inv.yml" + warnings[0].split(str(inv), 1)[1][:70], "ok"))


def test_an_inventory_syntax_error_names_file_and_line_and_touches_no_host(tmp_path: Path, fault_table) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    web01:\n      ansible_host: [198.18.0.9\n    web02:\n")
    done = subprocess.run(
        [sys.executable, "-m", "fleetrst", "scan", str(inv), "--duration", "1", "-o", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == ExitStatus.USAGE
    assert len(lines) == 1 and lines[0].startswith(f"fleetrst: {inv}:5: YAML error: "), done.stderr
    assert not (tmp_path / "run").exists()
    fault_table.append(("inventory syntax error", "one line with file:line, exit 2, no scan",
                        f"inv.yml{lines[0].split(str(inv), 1)[1][:60]} (exit {done.returncode})", "ok"))


def test_bad_option_is_a_usage_error() -> None:
    rc, _, _ = run("scan", "--duration", "abc", "x.yml")
    assert rc == ExitStatus.USAGE


def test_analyze_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    rc, _, err = run("analyze", str(tmp_path))
    assert rc == ExitStatus.USAGE and "run.json" in err


def test_terminal_output_never_carries_control_characters() -> None:
    assert _clean("web\x1b[31m01\x07") == "web\\x1b[31m01\\x07"
    assert "\x1b" not in _clean("\x1b]0;owned\x07")


def test_host_folders_are_safe_and_unique() -> None:
    hosts = [Host("web01", "a"), Host("../etc", "b"), Host("web01", "c"), Host("a b;rm -rf /", "d"),
             Host("index.html", "e"), Host("", "f")]
    names = host_dir_names(hosts)
    assert len(set(names)) == len(names)
    for n in names:
        assert "/" not in n and n not in ("", ".", "..") and not n.startswith(".")
    assert names[0] == "web01"
    assert names[4] != "index.html"


def test_preflight_output_is_split_into_facts_and_sections() -> None:
    kv, sections = parse_kv("fleetrst_remote=1\nkernel=6.18\n--- ip -o link\n1: lo: <UP>\n--- ip -o addr\n")
    assert kv == {"fleetrst_remote": "1", "kernel": "6.18"}
    assert sections["ip -o link"] == "1: lo: <UP>\n"
