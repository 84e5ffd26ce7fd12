"""The CLI's boundary: arguments, one-line errors, exit codes, terminal-safe output."""

import io
from pathlib import Path

from fleetrst.cli import ExitStatus, _clean, main
from fleetrst.collect import host_dir_names, parse_kv
from fleetrst.model import Host


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_missing_inventory_is_a_one_line_usage_error(tmp_path: Path) -> None:
    rc, out, err = run("scan", str(tmp_path / "nope.yml"))
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
