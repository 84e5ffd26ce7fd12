"""Shared test setup: the namespace test fleet ("lab") for end-to-end tests.

Tests marked ``lab`` need root, iproute2, OpenSSH (server and client) and tcpdump. Without them
they are skipped, except when the environment variable CI is set: then they fail, so that a CI job
that silently lost its lab cannot pass. ``FLEETRST_LAB_SEED`` forces the seed of labs built
without an explicit one; every lab prints its seed.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fleetrst.errors import LabError
from fleetrst.lab import SSHD, LabState, lab_down, lab_up

LAB_TOOLS = ("ip", "ssh", "ssh-keygen", "tcpdump")

LabFactory = Callable[..., LabState]


def lab_unavailable() -> str | None:
    """Why lab tests cannot run on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    missing = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    missing += [] if os.access(SSHD, os.X_OK) else [SSHD]
    if missing:
        return f"lab tests need {', '.join(missing)}"
    return None


def require_lab() -> None:
    """Skip the current test if the lab cannot run here; fail instead when CI is set."""
    reason = lab_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so lab tests must run: run them as root on a machine "
                    "with iproute2, openssh-server, openssh-client and tcpdump", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: end-to-end tests against the namespace test fleet (root, sshd, tcpdump)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        require_lab()


@pytest.fixture(scope="session")
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """`lab_factory(hosts, scenarios=..., seed=..., ttl=..., **options)` builds a lab in a fresh
    directory (options go to lab_up: idle_netns=, idle_named=, names=, bastion=); every lab
    built is taken down at the end of the session, whatever happened."""
    require_lab()
    built: list[Path] = []

    def make(hosts: int = 4, *, scenarios: Sequence[str] | None = None,
             seed: int | None = None, ttl: float = 900.0, **options: Any) -> LabState:
        if seed is None:
            forced = os.environ.get("FLEETRST_LAB_SEED")
            seed = int(forced) if forced else random.SystemRandom().randrange(1, 2**31)
        directory = tmp_path_factory.mktemp("lab")
        built.append(directory)
        # Printed before building, so a lab that fails to come up can be reproduced too.
        print(f"\nlab seed: {seed} (reproduce with FLEETRST_LAB_SEED={seed}), in {directory}")
        return lab_up(directory, hosts, seed=seed, scenarios=scenarios, ttl=ttl, **options)

    yield make
    errors = []
    for directory in built:
        try:
            lab_down(directory)
        except (LabError, OSError) as exc:  # go on: every other lab must still come down
            errors.append(f"{directory}: {exc}")
    if errors:
        pytest.fail("lab teardown failed: " + "; ".join(errors), pytrace=False)


# The fault suite's table (case -> expected -> seen), printed at the end of the run.
_FAULT_ROWS: list[tuple[str, str, str, str]] = []


@pytest.fixture(scope="session")
def fault_table() -> list[tuple[str, str, str, str]]:
    """Rows (case, expected, seen, verdict) that the fault suite records for the final table."""
    return _FAULT_ROWS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FAULT_ROWS:
        return
    tr = terminalreporter
    tr.section("fault suite: case -> expected -> seen")
    w = [max(len(r[i]) for r in _FAULT_ROWS) for i in range(3)]
    for case, expected, seen, verdict in _FAULT_ROWS:
        tr.write_line(f"{verdict:4}  {case:<{w[0]}}  {expected:<{w[1]}}  {seen}")
