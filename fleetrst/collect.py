"""The scan: connect to every host, capture one shared window, fetch and verify, clean up."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import HostError
from .facts import parse_ip_link
from .model import Host
from .netns import DEFAULT_MAX as DEFAULT_MAX_NAMESPACES
from .netns import parse_runtimes, preflight_netns, runtime_text
from .netns import select as select_namespaces
from .transport import JumpPool, LocalTransport, SSHTransport, Stream, Transport, connect, quote

LEAD = 1.0  # the host side starts tcpdump this long before the window (capture.sh)
TAIL = 1.0  # and stops it this long after
START_MARGIN = LEAD + 0.5  # from "all armed" to the window start: tcpdump starts LEAD before it
DEFAULT_CAP_MB = 64  # per interface and window
DEFAULT_HOST_SCRIPT = "/usr/local/lib/fleetrst/capture.sh"
UPLOAD_FAILED = 97  # exit status of the combined upload when the upload itself failed
HOST_GRACE = 30.0  # how long a host may stay silent after the window before it is given up
_FILE_NAME = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,200}")  # names the host side may list


@dataclass
class ScanOptions:
    """What the user asked for; defaults are the CLI's."""

    duration: float = 30.0
    out: Path | None = None
    forks: int = 50
    interfaces: list[str] | None = None  # None: every interface that is up, lo included
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    accept_new_host_keys: bool = False
    cap_mb: int = DEFAULT_CAP_MB
    remote_tmp: str = "/tmp"
    trace: bool = True
    collect_timeout: float = 120.0
    inventory: str = ""
    limit: str | None = None
    # A root-owned copy of capture.sh that sudoers allows (see README); used when it matches.
    host_script: str = DEFAULT_HOST_SCRIPT
    become_password: str | None = field(default=None, repr=False)
    # Network namespaces to capture inside: all (up to max_namespaces, those sending the most
    # resets first), host (only count them), or a comma-separated list of inodes, names,
    # container or pod ids. Every namespace's counters are read whatever this says.
    namespaces: str = "all"
    max_namespaces: int = DEFAULT_MAX_NAMESPACES


@dataclass
class HostRun:
    """Everything one host's part of the run produced, good or bad."""

    host: Host
    directory: str  # name of the host's folder in the run directory
    token: str
    status: str = "pending"  # pending, ok, partial, failed
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    offset: float = 0.0  # host clock minus local clock, seconds
    rtt: float | None = None
    become: bool = False
    transport: Transport | None = None
    stream: Stream | None = None
    remote_dir: str = ""
    script: str = ""  # how the host script is invoked: installed helper or uploaded copy
    installed: bool = False
    captures: list[dict[str, object]] = field(default_factory=list)
    files: dict[str, dict[str, object]] = field(default_factory=dict)
    window_host: dict[str, float] = field(default_factory=dict)
    cleanup: str = "not started"
    ns_arg: str = "all"  # the host script's ns= argument (see ScanOptions.namespaces)
    runtimes: str = ""  # the preflight's container runtime listings, raw (containers.txt)

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.error = " ".join(reason.split())  # always one line

    @property
    def alive(self) -> bool:
        return self.status not in ("failed",)


Progress = Callable[[str, dict[str, object]], None]


def _quiet(event: str, data: dict[str, object]) -> None:
    """Progress sink that ignores everything."""


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus a few random hex digits."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def iso(ts: float) -> str:
    """ISO-8601 UTC with milliseconds."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def host_dir_names(hosts: Iterable[Host]) -> list[str]:
    """A safe, unique folder name per host (names are untrusted text)."""
    used: set[str] = {"", ".", ".."}
    names = []
    for h in hosts:
        base = _SAFE.sub("_", h.name)[:80].lstrip(".") or "host"
        name, n = base, 2
        while name in used or name.lower() in ("index.html", "summary.json", "junit.xml", "run.json"):
            name = f"{base}-{n}"
            n += 1
        used.add(name)
        names.append(name)
    return names


_NS_FILE = re.compile(r"ns([1-9][0-9]{0,19})\.([A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,200})")


def local_name(remote_name: str) -> Path:
    """Where a file the host side listed goes, relative to the host's folder: a namespace's file
    `nsINODE.FILE` into `netns/INODE/FILE` (a folder `load_host` reads like a host's), any
    other file as it is. Raises ValueError for a name that could leave the folder."""
    # "netns" itself would stand where the namespaces' folders go.
    if not _FILE_NAME.fullmatch(remote_name) or remote_name in (".", "..", "netns"):
        raise ValueError(f"unsafe file name from the host: {remote_name[:60]!r}")
    m = _NS_FILE.fullmatch(remote_name)
    if m is None:
        return Path(remote_name)
    inner = m.group(2)
    if inner.startswith(".") or _NS_FILE.fullmatch(inner):
        raise ValueError(f"unsafe file name from the host: {remote_name[:60]!r}")
    return Path("netns", m.group(1), inner)


def local_path(hdir: Path, remote_name: str) -> Path:
    """Where a listed file is fetched to (see local_name), its folder made."""
    try:
        path = hdir / local_name(remote_name)
    except ValueError as e:
        raise HostError(str(e)) from e
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def host_token(host: Host) -> str:
    """Stable per-host tag in remote file names, so a later run can find its own leftovers."""
    return hashlib.sha256(f"{host.name}|{host.address}|{host.port}".encode()).hexdigest()[:10]


def _script() -> bytes:
    return resources.files("fleetrst.remote").joinpath("capture.sh").read_bytes()


def _iface_tag(name: str, index: int) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_.@+-]{1,15}", name) else f"if{index}"


def parse_kv(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Split preflight output into key=value facts and '--- NAME' sections."""
    kv: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("--- "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
        elif "=" in line:
            k, _, v = line.partition("=")
            kv[k.strip()] = v.strip()
    return kv, {k: "\n".join(v) + "\n" for k, v in sections.items()}


class Scan:
    """One run over many hosts. Use run(); abort() from another thread stops it cleanly."""

    def __init__(self, hosts: list[Host], options: ScanOptions, progress: Progress = _quiet) -> None:
        self.options = options
        self.progress = progress
        self.run_id = new_run_id()
        self.out = (options.out or Path("fleetrst-runs") / self.run_id).resolve()
        dirs = host_dir_names(hosts)
        self.hosts = [HostRun(h, d, host_token(h)) for h, d in zip(hosts, dirs)]
        self.window: dict[str, float] = {}
        self.aborted = threading.Event()
        self.jumps = JumpPool(options.known_hosts, options.accept_new_host_keys)
        self._fetch_slots = threading.BoundedSemaphore(max(1, options.forks))
        self.started = time.time()
        self.finished: float | None = None

    # --- stages ------------------------------------------------------------------------

    def _pool(self, fn: Callable[[HostRun], None], hosts: list[HostRun], stage: str,
              workers: int | None = None) -> None:
        done = 0
        lock = threading.Lock()

        def task(hr: HostRun) -> None:
            nonlocal done
            if self.aborted.is_set():
                return
            try:
                fn(hr)
            except HostError as e:
                hr.fail(str(e))
            except Exception as e:  # noqa: BLE001 - one host's bug must not sink the run
                hr.fail(f"internal error in {stage}: {type(e).__name__}: {e}")
            with lock:
                done += 1
                self.progress(stage, {"host": hr, "done": done, "total": len(hosts)})

        workers = max(1, min(workers or self.options.forks, len(hosts)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fleetrst-{stage}") as ex:
            list(ex.map(task, hosts))

    def _sudo(self, hr: HostRun) -> str:
        if not hr.become:
            return ""
        user = hr.host.become_user or "root"
        # With a password, sudo reads it from stdin (never argv) and prints no prompt.
        how = "sudo -S -p '' " if self.options.become_password else "sudo -n "
        return how if user == "root" else f"{how}-u {quote(user)} "

    def _secret(self, hr: HostRun) -> bytes:
        pw = self.options.become_password
        return (pw + "\n").encode() if hr.become and pw else b""

    def _host(self, hr: HostRun, args: str, privileged: bool = True) -> str:
        """The command line that runs the host script with these arguments."""
        prefix = self._sudo(hr) if privileged else ""
        if hr.installed:
            return f"{prefix}{quote(hr.script)} {args}"
        return f"{prefix}sh {quote(hr.script)} {args}"

    def connect_and_preflight(self, hr: HostRun) -> None:
        """Connect, measure the clock offset, upload the host script, learn what the host can do."""
        opts = self.options
        hr.transport = t = connect(hr.host, opts.known_hosts, opts.accept_new_host_keys, self.jumps)
        self.progress("connected", {"host": hr})
        attempts = getattr(t, "attempts", 1) or 1
        if attempts > 1:
            hr.notes.append(f"connected on attempt {attempts}: the earlier ones were refused "
                            "(sshd past its MaxStartups, or overloaded)")
        # Clock offset as NTP does it: the host's clock read between two local timestamps,
        # over a channel that is already open so that session setup does not skew it.
        ping = t.start("while read -r _; do date +%s.%N; done")
        best: tuple[float, float] | None = None
        try:
            for _ in range(5):
                t0 = time.time()
                ping.send(b"\n")
                try:
                    line = ping.readline(timeout=15)
                except TimeoutError as e:
                    raise HostError("the host did not answer a clock read within 15 s") from e
                t1 = time.time()
                try:
                    remote = float((line or "").strip())
                except ValueError as e:
                    raise HostError(f"cannot read the host clock: {(line or '').strip()[:80]!r}") from e
                if best is None or t1 - t0 < best[0]:
                    best = (t1 - t0, remote - (t0 + t1) / 2)
        finally:
            ping.close_stdin()
            ping.wait(timeout=5)
        assert best is not None
        hr.rtt, hr.offset = best
        base = opts.remote_tmp.rstrip("/") or "/tmp"
        hr.remote_dir = f"{base}/fleetrst-{self.run_id}-{hr.token}"
        d = quote(hr.remote_dir)
        login = hr.host.user or getpass.getuser()
        # sudo only when it changes something: not for root logging in as root.
        hr.become = hr.host.become and not (login == "root" and hr.host.become_user == "root")
        if hr.become:
            r = t.run(f"test -x {quote(opts.host_script)} && sha256sum {quote(opts.host_script)}", timeout=15)
            if r.rc == 0:
                if r.stdout.split()[:1] == [hashlib.sha256(_script()).hexdigest()]:
                    hr.installed, hr.script = True, opts.host_script
                else:
                    hr.notes.append(
                        f"{opts.host_script} differs from this fleetrst's host script: not used "
                        "(reinstall it from `fleetrst host-script`)"
                    )
        if hr.installed:
            r = t.run(self._host(hr, f"prepare {d}"), stdin=self._secret(hr), timeout=30)
            if r.rc != 0:
                last = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or [f"exit {r.rc}"]
                raise HostError(f"cannot prepare {hr.remote_dir} with {opts.host_script}: {last[0]}")
        else:
            hr.script = f"{hr.remote_dir}/capture.sh"
        # Leftovers of earlier runs whose host side was killed outright are swept first.
        sweep = self._host(hr, f"sweep {quote(base)} {quote(hr.token)} {d}")
        preflight = self._host(hr, f"preflight {d}")
        if hr.installed or hr.become:
            # sudo may read a password from stdin: one command per channel.
            if not hr.installed:
                self._upload(hr)
            sweep_out = t.run(sweep, stdin=self._secret(hr)).stdout
            r = t.run(preflight, stdin=self._secret(hr), timeout=30)
        else:
            # Without sudo, upload, sweep and preflight share one channel: one round trip.
            r = t.run(
                f"umask 077 && mkdir -m 700 -- {d} && cat > {d}/capture.sh || exit {UPLOAD_FAILED}; "
                f"{sweep}; {preflight}",
                stdin=_script(), timeout=30,
            )
            if r.rc == UPLOAD_FAILED:
                raise HostError(f"cannot create {hr.remote_dir}: {r.stderr.strip() or r.stdout.strip()}")
            sweep_out = r.stdout
        for line in sweep_out.splitlines():
            if line.startswith("removed "):
                hr.notes.append(f"removed a leftover of an earlier run: {line[8:]}")
        if r.rc != 0 and hr.become:
            reason = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.rc}"
            hint = "" if hr.installed else f" (install {opts.host_script} and the README's sudoers line)"
            hr.notes.append(f"sudo refused ({reason}): counters only, no captures{hint}")
            hr.status = "partial"
            hr.error = f"sudo refused: {reason}"
            hr.become = False
            if hr.installed:
                # The installed copy made the directory as root; without sudo, use an own one.
                hr.installed = False
                hr.remote_dir = f"{base}/fleetrst-{self.run_id}-{hr.token}u"
                d = quote(hr.remote_dir)
                hr.script = f"{hr.remote_dir}/capture.sh"
                t.run(f"umask 077 && mkdir -m 700 -- {d} && cat > {d}/capture.sh", stdin=_script())
            r = t.run(self._host(hr, f"preflight {d}", privileged=False), timeout=30)
        kv, sections = parse_kv(r.stdout)
        if kv.get("fleetrst_remote") != "1":
            raise HostError(f"host side did not run: {(r.stderr or r.stdout).strip()[:200]}")
        links = parse_ip_link(sections.get("ip -o link", ""))
        hr.facts = {
            "hostname": kv.get("hostname"),
            "kernel": kv.get("kernel"),
            "uid": kv.get("uid"),
            "tools": {k[5:]: v or None for k, v in kv.items() if k.startswith("tool.")},
            "tcpdump": kv.get("tcpdump_version"),
            "free_kb": int(kv["free_kb"]) if kv.get("free_kb", "").isdigit() else None,
            "tracefs": kv.get("tracefs") or None,
            "tcp_send_reset": kv.get("tcp_send_reset") or None,
            "connect_attempts": attempts,
            "clock_offset_s": round(hr.offset, 6),
            "rtt_s": round(hr.rtt, 6),
            "ip_link": sections.get("ip -o link", ""),
            "ip_addr": sections.get("ip -o addr", ""),
        }
        netns_self, namespaces = preflight_netns(r.stdout)
        hr.runtimes = runtime_text(r.stdout)
        hr.facts["network_namespaces"] = sum(1 for ns in namespaces if ns.inode != netns_self)
        hr.ns_arg, ns_notes = select_namespaces(opts.namespaces, namespaces, netns_self,
                                                parse_runtimes(hr.runtimes))
        hr.notes += ns_notes
        free = hr.facts["free_kb"]
        if isinstance(free, int) and free < 512:
            raise HostError(f"only {free} KB free in {opts.remote_tmp} on the host: not enough to capture")
        tools = hr.facts["tools"]
        assert isinstance(tools, dict)
        missing = [x for x in ("timeout", "ip", "ss", "awk", "sha256sum") if not tools.get(x)]
        if missing:
            raise HostError(f"missing on the host: {', '.join(missing)}")
        uid = kv.get("uid")
        if not tools.get("tcpdump"):
            hr.status, hr.error = "partial", "tcpdump not found on the host: counters only"
        elif uid != "0" and hr.status != "partial":
            hr.status, hr.error = "partial", (
                f"not root on the host (uid {uid}) and no become: counters only, no captures"
            )
        wanted = opts.interfaces
        for index, iface in sorted(links.items()):
            if hr.status == "partial":
                break
            if wanted and iface.name not in wanted:
                continue
            if not iface.up:
                hr.notes.append(f"interface {iface.name} is down: not captured")
                continue
            hr.captures.append({"interface": iface.name, "index": index, "tag": _iface_tag(iface.name, index)})
        if wanted:
            known = {i.name for i in links.values()}
            for name in wanted:
                if name not in known:
                    hr.notes.append(f"interface {name} does not exist on this host")
        if hr.status == "pending":
            hr.status = "ok"

    def _upload(self, hr: HostRun) -> None:
        assert hr.transport is not None
        d = quote(hr.remote_dir)
        r = hr.transport.run(f"umask 077 && mkdir -m 700 -- {d} && cat > {d}/capture.sh", stdin=_script())
        if r.rc != 0:
            raise HostError(f"cannot create {hr.remote_dir}: {r.stderr.strip() or r.stdout.strip()}")

    def arm(self, hr: HostRun) -> None:
        """Start the host side for the agreed window; it waits for the start by its own clock."""
        assert hr.transport is not None
        opts = self.options
        cap_bytes = opts.cap_mb * 1024 * 1024
        free_kb = hr.facts.get("free_kb")
        # Namespaces' captures share the space too (lo and one more interface each, usually).
        counted = hr.facts.get("network_namespaces")
        namespaced = 2 * min(opts.max_namespaces, counted if isinstance(counted, int) else 0)
        ns_arg = hr.ns_arg if hr.captures else "none"
        if isinstance(free_kb, int) and hr.captures:
            # Never let the captures take more than half of what is free where they go.
            share = free_kb * 1024 // 2 // (len(hr.captures) + (namespaced if ns_arg not in ("host", "none") else 0))
            if share < cap_bytes:
                cap_bytes = share
                hr.notes.append(
                    f"only {free_kb} KB free in {opts.remote_tmp}: each capture capped at {share // 1024} KB"
                )
        cap_blocks = max(1, cap_bytes // 512)
        for c in hr.captures:
            c["cap_bytes"] = cap_blocks * 512  # what `ulimit -f` lets a capture file grow to
        # The lease stays open until collection; the host side gives up on its own after
        # collect_timeout, and time-boxes itself with `timeout` whatever happens.
        ifargs = " ".join(f"{quote(c['interface'])} {quote(c['tag'])}" for c in hr.captures)
        trace = "1" if opts.trace and (hr.become or hr.facts.get("uid") == "0") else "0"
        d = quote(hr.remote_dir)
        cmd = self._host(
            hr,
            f"run {d} wait {opts.duration:.3f} {cap_blocks} {int(opts.collect_timeout)} {trace} "
            f"ns={quote(ns_arg)} nsmax={max(0, opts.max_namespaces)} -- {ifargs}",
        )
        hr.stream = hr.transport.start(cmd)
        secret = self._secret(hr)
        if secret:
            hr.stream.send(secret)
        line = hr.stream.readline(timeout=20)
        if not line or not line.startswith("armed"):
            err = hr.stream.stderr().strip() or (line or "no answer")
            raise HostError(f"host side did not start: {err[:200]}")
        self.progress("armed", {"host": hr})

    def _start(self, armed: list[HostRun]) -> None:
        """Tell every armed host the start instant, by its own clock."""
        for hr in armed:
            assert hr.stream is not None
            try:
                hr.stream.send(f"start={self.window['start'] + hr.offset:.6f}\n".encode())
            except HostError as e:
                hr.fail(str(e))

    def collect(self, hr: HostRun) -> None:
        """Wait for the host side to finish, fetch and verify every file, then release it."""
        assert hr.transport is not None and hr.stream is not None
        hdir = self.out / hr.directory
        hdir.mkdir(parents=True, exist_ok=True)
        manifest: list[tuple[int, str, str]] = []
        # The host side ends the window by its own clock, then snapshots, hashes and lists its
        # files. A host that keeps talking is making progress: every line moves the deadline.
        deadline = time.monotonic() + max(0.0, self.window["end"] + TAIL - time.time()) + HOST_GRACE
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = hr.stream.readline(timeout=max(0.1, remaining))
            except TimeoutError as e:
                said = ", ".join(hr.window_host) or "nothing"
                raise HostError(
                    f"host side did not finish in time after the window (it said: {said})") from e
            if line is None:
                err = hr.stream.stderr().strip()[:200]
                raise HostError(
                    f"host side ended early: {err}" if err else
                    "connection lost during the window (the host side stops and cleans up by itself)"
                )
            deadline = max(deadline, time.monotonic() + HOST_GRACE)
            key, _, rest = line.partition(" ")
            if key in ("started", "ended", "done"):
                hr.window_host[key] = float(rest.partition("=")[2] or 0)
            elif key == "file":
                size_text, sha_text, fname = rest.split(" ", 2)
                manifest.append((int(size_text), sha_text, fname))
            if key == "done":
                break
        wanted: list[tuple[str, int, Path]] = []
        expected: dict[str, tuple[int, str]] = {}
        for size, sha, name in manifest:
            if name in ("capture.sh", "owner.pid"):
                continue
            if not _FILE_NAME.fullmatch(name):
                hr.notes.append(f"ignored a file with an unexpected name: {name[:60]!r}")
                continue
            wanted.append((name, size, local_path(hdir, name)))
            expected[name] = (size, sha)
        # Everyone waits for their host at once; fetching (the bandwidth) is what -f limits.
        with self._fetch_slots:
            sums = hr.transport.fetch(hr.remote_dir, wanted, timeout=max(60.0, self.options.collect_timeout))
        for name, (size, sha) in expected.items():
            if sums.get(name) != sha:
                got = (hdir / name).stat().st_size if (hdir / name).exists() else 0
                raise HostError(f"{name} arrived damaged ({got} of {size} bytes, sha256 mismatch)")
            hr.files[name] = {"size": size, "sha256": sha}
        self.progress("fetched", {"host": hr})
        self.release(hr)

    def release(self, hr: HostRun) -> None:
        """End the lease; the host side removes its directory and confirms by exiting 0."""
        if hr.stream is not None:
            hr.stream.close_stdin()
            rc = hr.stream.wait(timeout=10)
            hr.cleanup = "confirmed" if rc == 0 else f"host side exited {rc}"
            hr.stream = None
            if rc == 0:
                return  # the host side exits 0 only once its directory is gone
        if hr.transport is not None and hr.remote_dir:
            try:
                r = hr.transport.run(f"test -e {quote(hr.remote_dir)} && echo left || echo gone", timeout=15)
                if r.stdout.strip() == "left":
                    d = quote(hr.remote_dir)
                    r = hr.transport.run(self._host(hr, f"remove {d}"), stdin=self._secret(hr), timeout=15)
                    if r.rc != 0 and not hr.installed:
                        # The copy of the script may be what failed (a full disk cut it short).
                        hr.transport.run(f"rm -rf -- {d}", timeout=15)
                    hr.cleanup = "removed after the host side left it"
                elif hr.cleanup == "not started":
                    hr.cleanup = "confirmed"
            except HostError as e:
                hr.notes.append(f"could not confirm cleanup: {e}")

    # --- the whole run -----------------------------------------------------------------------

    def run(self) -> Path:
        """Do the whole scan and write the raw run directory; returns its path."""
        opts = self.options
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._pool(self.connect_and_preflight, self.hosts, "preflight")
            ready = [h for h in self.hosts if h.alive and h.transport is not None]
            if ready and not self.aborted.is_set():
                # Arm everyone first, then agree on the start: a slow host cannot make the
                # others start early, and the start waits only as long as arming really took.
                self._pool(self.arm, ready, "arm")
                armed = [h for h in ready if h.alive and h.stream is not None]
                self.window["start"] = time.time() + START_MARGIN
                self.window["end"] = self.window["start"] + opts.duration
                self._write_run_json()
                self._start(armed)
                self._wait_window()
                self._pool(self.collect, armed, "collect", workers=min(len(armed), 1024))
        except BaseException:
            self.aborted.set()
            raise
        finally:
            self.shutdown()
            self.finished = time.time()
            self._write_run_json()
            for hr in self.hosts:
                self._write_host_json(hr)
        return self.out

    def _wait_window(self) -> None:
        end = self.window["end"] + TAIL
        while not self.aborted.is_set():
            remaining = end - time.time()
            if remaining <= 0:
                break
            self.progress("window", {"remaining": remaining, "start": self.window["start"]})
            self.aborted.wait(min(1.0, remaining))

    def abort(self) -> None:
        """Stop now: every host side loses its lease and removes what it made."""
        self.aborted.set()

    def shutdown(self) -> None:
        """Release every host (also on abort or error) and close connections."""
        def one(hr: HostRun) -> None:
            try:
                if hr.stream is not None:
                    self.release(hr)
                    if self.aborted.is_set():
                        hr.fail("interrupted before collection")
                elif hr.remote_dir and hr.transport is not None and hr.cleanup == "not started":
                    # Failed between upload and arming: the directory is ours to remove.
                    self.release(hr)
            except Exception as e:  # noqa: BLE001
                hr.notes.append(f"cleanup: {e}")
            finally:
                if hr.transport is not None:
                    hr.transport.close()
                    hr.transport = None
        with ThreadPoolExecutor(max_workers=max(1, min(64, len(self.hosts)))) as ex:
            list(ex.map(one, self.hosts))
        self.jumps.close()

    # --- the run directory -------------------------------------------------------------

    def _write_run_json(self) -> None:
        opts = self.options
        run = {
            "id": self.run_id,
            "fleetrst_version": __version__,
            "inventory": opts.inventory,
            "limit": opts.limit,
            "started": iso(self.started),
            "finished": iso(self.finished) if self.finished else None,
            "window": {
                "start": iso(self.window["start"]) if self.window else None,
                "end": iso(self.window["end"]) if self.window else None,
                "seconds": opts.duration,
            },
            "options": {
                "duration": opts.duration,
                "forks": opts.forks,
                "interfaces": opts.interfaces or "all",
                "cap_mb": opts.cap_mb,
                "trace": opts.trace,
            },
            "hosts": [{"name": h.host.name, "directory": h.directory} for h in self.hosts],
        }
        (self.out / "run.json").write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")

    def _write_host_json(self, hr: HostRun) -> None:
        hdir = self.out / hr.directory
        hdir.mkdir(parents=True, exist_ok=True)
        facts = dict(hr.facts)
        for key, fname in (("ip_link", "ip-link.txt"), ("ip_addr", "ip-addr.txt")):
            text = facts.pop(key, None)
            # The window's own copy wins; the preflight copy covers hosts that never got there.
            if isinstance(text, str) and text and not (hdir / fname).exists():
                (hdir / fname).write_text(text)
        # The host keeps its containers.txt for the fetch; this copy is for a host whose run
        # never got that far.
        if hr.runtimes and not (hdir / "containers.txt").exists():
            (hdir / "containers.txt").write_text(hr.runtimes)
        data = {
            "name": hr.host.name,
            "address": hr.host.address,
            "port": hr.host.port,
            "user": hr.host.user,
            "connection": hr.host.connection,
            "status": hr.status if hr.status != "pending" else "failed",
            "error": hr.error,
            "notes": hr.notes,
            "facts": facts,
            "become": hr.become,
            "window_host": hr.window_host,
            "captures": hr.captures,
            "files": hr.files,
            "cleanup": hr.cleanup,
            "namespaces": {"select": self.options.namespaces, "max": self.options.max_namespaces},
        }
        (hdir / "host.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def transports_in_use() -> tuple[type, ...]:
    """The transport classes a scan may use (for tests and docs)."""
    return (SSHTransport, LocalTransport)
