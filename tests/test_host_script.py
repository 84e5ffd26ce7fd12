"""The host script is plain POSIX sh and refuses to be pointed anywhere but its own directories."""

import shutil
import subprocess
from importlib import resources

import pytest

SCRIPT = str(resources.files("fleetrst.remote").joinpath("capture.sh"))


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (install.sh --test installs it)")
    r = subprocess.run(["shellcheck", "-s", "sh", SCRIPT], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("bad", ["/etc", "/tmp/../etc/fleetrst-x", "/tmp/fleetrst-x/../../etc", "/home/u/fleetrst-x",
                                 "/tmp/fleetrst-a b", "/tmp/fleetrst-$(id)", "/tmp/fleetrst-"])
@pytest.mark.parametrize("mode", ["prepare", "preflight", "remove"])
def test_run_directories_outside_tmp_are_refused(mode: str, bad: str, tmp_path) -> None:
    r = subprocess.run(["sh", SCRIPT, mode, bad], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout.startswith("error=refusing run directory")


def test_sweep_only_in_tmp_and_with_a_plain_tag() -> None:
    for base, tag in (("/etc", "abc"), ("/tmp", "../x"), ("/tmp", "*")):
        r = subprocess.run(["sh", SCRIPT, "sweep", base, tag, "/tmp/fleetrst-none"], capture_output=True,
                           text=True, check=False)
        assert r.returncode == 2 and r.stdout.startswith("error=")


def test_run_refuses_non_numeric_arguments() -> None:
    r = subprocess.run(["sh", SCRIPT, "run", "/tmp/fleetrst-zz", "now;id", "5", "10", "60", "0", "--"],
                       capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "not a number" in r.stdout


def test_version_names_the_scripts_own_digest() -> None:
    import hashlib
    from pathlib import Path

    r = subprocess.run(["sh", SCRIPT, "version"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == f"fleetrst-capture sha256={hashlib.sha256(Path(SCRIPT).read_bytes()).hexdigest()}"
