#!/usr/bin/python
"""Ansible module of the fleetrst role, run on the controller (delegated to localhost):
turn what the capture play fetched into fleetrst's run directory, as fleetrst/collect.py writes
it. Each host's files arrive as one bundle (the files back to back, in the order the host listed
them); they are split here and checked against the sizes and sha256 the host side reported."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: fleetrst_record
short_description: Write a fleetrst run directory from what the capture play fetched
description:
  - Splits each host's fetched bundle into its files and checks each against the size and
    sha256 the host reported, then writes RUN_DIR/HOST/host.json and RUN_DIR/run.json.
options:
  out:
    description: The run directory.
    type: path
    required: true
  run:
    description: The contents of run.json; its C(hosts) list is made here.
    type: dict
    required: true
  script:
    description: The capture.sh the play ran; the fleetrst version is read beside it.
    type: path
    required: true
  hosts:
    description:
      - One entry per host of the play, in inventory order, with C(name), C(directory),
        C(address), C(port), C(user), C(connection), C(state) (what the play recorded, or null)
        and C(window_start).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
hosts:
  description: Each host's name, status and error as written to host.json.
  type: list
  returned: always
"""

_CHUNK = 1 << 20
# As fleetrst/collect.py names them: the host side's files, and a network namespace's nsINODE.FILE.
_FILE_NAME = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,200}")
_NS_FILE = re.compile(r"ns([1-9][0-9]{0,19})\.([A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,200})")


def _version(script: str) -> str:
    init = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(script))), "__init__.py")
    try:
        with open(init, encoding="utf-8") as fh:
            match = re.search(r'^__version__ = "([^"]+)"', fh.read(), re.MULTILINE)
    except OSError:
        match = None
    return match[1] if match else "unknown"


def _snapshot_time(path: str) -> float | None:
    """The host's clock when it read its counters (the `time=` line capture.sh writes first)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for _, line in zip(range(5), fh):
                if line.startswith("time="):
                    return float(line[5:].strip())
    except (OSError, ValueError):
        pass
    return None


def _write(path: str, data: bytes | str, mode: int) -> None:
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)


def local_name(name: str) -> str | None:
    """Where a listed file goes in the host's folder (collect.local_name): a namespace's
    nsINODE.FILE into netns/INODE/FILE; None for a name that could leave the folder."""
    if not _FILE_NAME.fullmatch(name) or name == "netns":
        return None
    m = _NS_FILE.fullmatch(name)
    if m is None:
        return name
    if _NS_FILE.fullmatch(m[2]):
        return None
    return os.path.join("netns", m[1], m[2])


def unbundle(directory: str, files: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Split directory/.bundle into the listed files; returns (good files, problems)."""
    bundle = os.path.join(directory, ".bundle")
    good: dict[str, Any] = {}
    problems: list[str] = []
    try:
        total = os.path.getsize(bundle)
        fh = open(bundle, "rb")  # noqa: SIM115 - closed below, after the loop
    except OSError as e:
        return good, [f"the files were not fetched ({e.strerror or e})"]
    expected = sum(int(f["size"]) for f in files)
    with fh:
        for f in files:
            name, size = str(f["name"]), int(f["size"])
            where = local_name(name)
            if where is None:
                problems.append(f"refused a file name from the host: {name!r}")
                fh.seek(size, os.SEEK_CUR)
                continue
            digest = hashlib.sha256()
            os.makedirs(os.path.dirname(os.path.join(directory, where)), exist_ok=True)
            fd = os.open(os.path.join(directory, where), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600)
            got = 0
            with os.fdopen(fd, "wb") as out:
                while got < size:
                    chunk = fh.read(min(_CHUNK, size - got))
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    got += len(chunk)
            if got != size or digest.hexdigest() != f["sha256"]:
                problems.append(f"{name} arrived damaged ({got} of {size} bytes, sha256 mismatch)")
                continue
            good[name] = {"size": size, "sha256": f["sha256"]}
    if total != expected and not problems:
        problems.append(f"the fetched bundle has {total} bytes, the host listed {expected}")
    os.unlink(bundle)
    return good, problems


def host_record(entry: dict[str, Any], out: str, duration: float = 0.0) -> dict[str, Any]:
    """host.json for one host, with its files split out of the bundle and checked; a host that
    started after the window (`duration` seconds from window_start) had ended has failed."""
    state = entry.get("state") or {
        "status": "failed",
        "error": "the host left the play before it was recorded (unreachable mid-run?)",
    }
    try:
        port: int | None = int(entry.get("port"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        port = None
    record: dict[str, Any] = {
        "name": entry["name"],
        "address": str(entry.get("address") or entry["name"]),
        "port": port,
        "user": entry.get("user") or None,
        "connection": "local" if entry.get("connection") == "local" else "ssh",
        "status": state.get("status") or "failed",
        "error": state.get("error") or None,
        "notes": list(state.get("notes") or []),
        "facts": dict(state.get("facts") or {}),
        "become": bool(state.get("become")),
        "window_host": dict(state.get("window_host") or {}),
        "captures": list(state.get("captures") or []),
        "namespaces": dict(state.get("namespaces") or {"select": "all", "max": 16}),
        "files": {},
        "cleanup": state.get("cleanup") or "not started",
        "collector": "ansible",
    }
    directory = os.path.join(out, entry["directory"])
    os.makedirs(directory, exist_ok=True)
    fetched = state.get("fetched") or []
    if fetched:
        record["files"], problems = unbundle(directory, fetched)
        if problems:
            record["status"], record["error"] = "failed", problems[0]
            record["notes"] += problems[1:]
    started = _snapshot_time(os.path.join(directory, "counters-start.txt"))
    window_start = entry.get("window_start")
    if started is not None and window_start not in (None, "") and record["status"] != "failed":
        late = started - float(window_start)
        armed = record["window_host"].get("armed")
        # capture.sh must be running LEAD (1 s) before the start to have its captures up.
        if armed is not None and float(armed) > float(window_start) - 1.0:
            why = ("the play needed more time than fleetrst_arm_margin to start every host "
                   "(raise it, or --forks)")
        else:
            why = "the host was too busy to start its captures on time"
        if duration and late >= duration:
            record["status"] = "failed"
            record["error"] = f"the host started {late:.1f} s late, after the window had ended: {why}"
        elif late > 1.0:
            record["notes"].append(f"the host started the window {late:.1f} s late: {why}; its "
                                   "numbers cover the rest of the window")
    # The window's own copies win; the preflight's cover hosts that never got that far.
    for key, fname in (("ip_link", "ip-link.txt"), ("ip_addr", "ip-addr.txt")):
        text = state.get(key)
        path = os.path.join(directory, fname)
        if isinstance(text, str) and text and not os.path.exists(path):
            _write(path, text, 0o600)
    _write(os.path.join(directory, "host.json"),
           json.dumps(record, indent=2, ensure_ascii=False) + "\n", 0o644)
    return record


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "out": {"type": "path", "required": True},
            "run": {"type": "dict", "required": True},
            "script": {"type": "path", "required": True},
            "hosts": {"type": "list", "elements": "dict", "required": True},
        },
    )
    out = module.params["out"]
    try:
        os.makedirs(out, exist_ok=True)
        run = dict(module.params["run"])
        duration = float((run.get("window") or {}).get("seconds") or 0)
        written = [host_record(entry, out, duration) for entry in module.params["hosts"]]
        run["fleetrst_version"] = _version(module.params["script"])
        run["hosts"] = [{"name": e["name"], "directory": e["directory"]}
                        for e in module.params["hosts"]]
        _write(os.path.join(out, "run.json"), json.dumps(run, indent=2, ensure_ascii=False) + "\n",
               0o644)
    except OSError as e:
        module.fail_json(msg=f"cannot write the run directory {out}: {e}")
    module.exit_json(changed=True, hosts=[
        {"name": r["name"], "status": r["status"], "error": r["error"]} for r in written])


if __name__ == "__main__":
    main()
