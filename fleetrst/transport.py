"""How fleetrst talks to a host: one small interface, an SSH and a local implementation."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import random
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko
from fabric import Config, Connection

from .errors import HostError
from .model import Host

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Result:
    """What a finished remote command gave back."""

    rc: int
    stdout: str
    stderr: str


class Stream(Protocol):
    """A long-running remote command: read its lines, hold its stdin open as a lease."""

    def readline(self, timeout: float) -> str | None:
        """Next line of stdout without the newline; None at EOF; raises TimeoutError."""

    def send(self, data: bytes) -> None:
        """Write to the command's stdin."""

    def close_stdin(self) -> None:
        """End the lease: the host side cleans up and exits."""

    def wait(self, timeout: float) -> int | None:
        """Exit status, or None if it did not end within timeout."""

    def stderr(self) -> str:
        """What the command wrote on stderr so far (best effort)."""

    def kill(self) -> None:
        """Drop the command without waiting (the host side ends through its lease)."""


class Transport(Protocol):
    """Run commands on one host and fetch files from it."""

    description: str

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60.0) -> Result:
        """Run a command to completion."""

    def start(self, command: str) -> Stream:
        """Start a command whose stdin stays open until close_stdin()."""

    def fetch(self, directory: str, files: list[tuple[str, int, Path]], timeout: float) -> dict[str, str]:
        """Copy many files of one remote directory in one round trip: (name, announced size,
        local path) each; returns name -> sha256 of what arrived."""

    def close(self) -> None:
        """Release the connection."""


# --- host keys ------------------------------------------------------------------------------


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, or (explicit opt-in) accept and record them like OpenSSH's accept-new."""

    _lock = threading.Lock()

    def __init__(self, known_hosts: Path, accept_new: bool) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fingerprint = key.fingerprint
        with contextlib.suppress(OSError):
            if self.known_hosts.exists() and key.get_base64() in KnownHosts.of(self.known_hosts).revoked:
                raise HostError(f"host key for {hostname} ({fingerprint}) is marked @revoked in "
                                f"{self.known_hosts} (refusing to connect)")
        if not self.accept_new:
            raise HostError(
                f"unknown host key for {hostname} ({fingerprint}): not in {self.known_hosts}; "
                "add it there or rerun with --accept-new-host-keys"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self._lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a", encoding="utf-8") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            KnownHosts.recorded(self.known_hosts, hostname, key)


class KnownHosts:
    """A known_hosts file read once for a whole scan, asked for one host's keys at a time.

    paramiko's HostKeys.load compares every line with every other (to merge duplicates), and each
    connection would load the whole file again: N hosts, N lines, N³ name comparisons and N² key
    parses for one scan. Here each line is parsed once; a host's keys are those of the lines that
    name it (plainly or hashed, as paramiko matches them), in file order, the first key of each
    type winning as in paramiko's lookup.
    """

    _lock = threading.Lock()
    _cache: dict[str, tuple[tuple[int, int], KnownHosts]] = {}

    def __init__(self, path: Path) -> None:
        self.entries: list[tuple[str, paramiko.PKey]] = []  # (key type, key), file order
        self.plain: dict[str, list[int]] = {}  # name -> indexes of the entries naming it
        self.hashed: list[tuple[str, int]] = []  # ("|1|salt|hmac", entry index)
        self.revoked: set[str] = set()  # base64 of @revoked keys
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                marker = ""
                if line.startswith("@"):
                    # @revoked keys are refused for every host; @cert-authority lines (host
                    # certificates) are not used: paramiko's loader stops at either.
                    marker, _, line = line.partition(" ")
                    if marker != "@revoked":
                        continue
                try:
                    entry = paramiko.hostkeys.HostKeyEntry.from_line(line.strip(), lineno)
                except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError):
                    continue
                if entry is None:
                    continue
                if marker:
                    self.revoked.add(entry.key.get_base64())
                else:
                    self._add(entry.hostnames, entry.key)

    def _add(self, names: list[str], key: paramiko.PKey) -> None:
        index = len(self.entries)
        self.entries.append((key.get_name(), key))
        for name in names:
            if name.startswith("|1|"):
                self.hashed.append((name, index))
            else:
                self.plain.setdefault(name, []).append(index)

    def keys_for(self, name: str) -> list[tuple[str, paramiko.PKey]]:
        """This name's keys, one per key type."""
        found = list(self.plain.get(name, ()))
        found += [i for h, i in self.hashed if paramiko.HostKeys.hash_host(name, h) == h]
        keys: dict[str, paramiko.PKey] = {}
        for i in sorted(found):
            keytype, key = self.entries[i]
            if key.get_base64() not in self.revoked:
                keys.setdefault(keytype, key)
        return list(keys.items())

    @staticmethod
    def _signature(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_mtime_ns, st.st_size

    @classmethod
    def of(cls, path: Path) -> KnownHosts:
        """The parsed file, read again only when it changed on disk."""
        key = str(path)
        with cls._lock:
            signature = cls._signature(path)
            cached = cls._cache.get(key)
            if cached is None or cached[0] != signature:
                cached = (signature, cls(path))
                cls._cache[key] = cached
            return cached[1]

    @classmethod
    def recorded(cls, path: Path, name: str, key: paramiko.PKey) -> None:
        """A line this process just appended: added to the parsed file, not read again."""
        with cls._lock:
            cached = cls._cache.get(str(path))
            if cached is None:
                return
            with contextlib.suppress(OSError):
                cached[1]._add([name], key)
                cls._cache[str(path)] = (cls._signature(path), cached[1])


def known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH and paramiko look up in known_hosts for this address and port."""
    return address if port == 22 else f"[{address}]:{port}"


def fetch_command(directory: str, files: list[tuple[str, int, Path]]) -> str:
    """One `cat` of every file: the sizes the host announced split the stream again."""
    names = " ".join(quote(name) for name, _, _ in files)
    return f"cd {quote(directory)} && exec cat -- {names}"


class _Splitter:
    """Cut one byte stream into files of known sizes, hashing each on the way."""

    def __init__(self, files: list[tuple[str, int, Path]]) -> None:
        self.files = list(files)
        self.index = 0
        self.left = 0
        self.sums: dict[str, str] = {}
        self._hash = hashlib.sha256()
        self._out: Any = None
        self._open()

    def _open(self) -> None:
        while self.index < len(self.files):
            _, size, local = self.files[self.index]
            self._out = open(local, "wb")  # noqa: SIM115 - closed in _close
            self._hash = hashlib.sha256()
            self.left = size
            if size > 0:
                return
            self._close()

    def _close(self) -> None:
        self._out.close()
        self._out = None
        self.sums[self.files[self.index][0]] = self._hash.hexdigest()
        self.index += 1

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._out is None:
                raise HostError(f"the host sent {len(view)} bytes more than its files' sizes")
            part = view[: self.left]
            self._out.write(part)
            self._hash.update(part)
            self.left -= len(part)
            view = view[len(part):]
            if self.left == 0:
                self._close()
                self._open()

    def abandon(self) -> None:
        """Close what is open after a failure."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def finish(self) -> dict[str, str]:
        """Every file complete, or HostError naming the first one that is not."""
        if self._out is not None:
            name, size, _ = self.files[self.index]
            self._out.close()
            self._out = None
            raise HostError(f"{name} arrived short ({size - self.left} of {size} bytes)")
        return self.sums


# --- SSH ------------------------------------------------------------------------------------


class SSHStream:
    """A paramiko exec channel used as a Stream."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self._buf = b""
        self._err = b""
        self._eof = False

    def readline(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf and not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no output from the host side in time")
            self.channel.settimeout(min(remaining, 1.0))
            try:
                chunk = self.channel.recv(65536)
            except TimeoutError:
                self._drain_stderr()
                continue
            if not chunk:
                self._eof = True
            self._buf += chunk
        if not self._buf:
            return None
        line, _, rest = self._buf.partition(b"\n")
        self._buf = rest
        return line.decode("utf-8", "replace")

    def _drain_stderr(self) -> None:
        while self.channel.recv_stderr_ready():
            self._err += self.channel.recv_stderr(65536)

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise HostError(f"connection lost: {e}") from e

    def close_stdin(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while not self.channel.exit_status_ready():
            if time.monotonic() > deadline or self.channel.closed:
                break
            self._drain_stderr()
            time.sleep(0.05)
        if self.channel.exit_status_ready():
            return self.channel.recv_exit_status()
        return None

    def stderr(self) -> str:
        self._drain_stderr()
        return self._err.decode("utf-8", "replace")

    def kill(self) -> None:
        self.channel.close()


class _Connection(Connection):
    """fabric's Connection, with a time limit on the channel a bastion opens to the target.

    fabric waits for that channel as long as paramiko's default (an hour); a target that
    drops SYNs keeps the bastion's own connect() going for minutes.
    """

    def open_gateway(self) -> Any:
        if not isinstance(self.gateway, Connection):
            return super().open_gateway()
        self.gateway.open()
        return self.gateway.transport.open_channel(
            kind="direct-tcpip", dest_addr=(self.host, int(self.port)), src_addr=("", 0),
            timeout=self.connect_timeout,
        )


def _checked_connection(
    host: str, user: str | None, port: int | None, key_file: str | None, password: str | None,
    known_hosts: Path, accept_new: bool, gateway: Connection | bool, connect_timeout: float,
) -> Connection:
    """A fabric Connection that checks host keys against known_hosts (never AutoAddPolicy)."""
    connect_kwargs: dict[str, object] = {"banner_timeout": connect_timeout, "auth_timeout": connect_timeout}
    if key_file:
        connect_kwargs["key_filename"] = [key_file]
    if password:
        connect_kwargs["password"] = password
    conn = _Connection(
        host, user=user, port=port, connect_timeout=connect_timeout, connect_kwargs=connect_kwargs,
        gateway=gateway, config=_shared_config(),
    )
    client = conn.client
    # fabric installs AutoAddPolicy; a production tool must never trust a key silently.
    client.set_missing_host_key_policy(HostKeyPolicy(known_hosts, accept_new))
    if known_hosts.exists():
        try:
            known = KnownHosts.of(known_hosts)
        except OSError as e:
            raise HostError(f"cannot read known_hosts {known_hosts}: {e}") from e
        keys = client.get_host_keys()
        name = known_hosts_name(conn.host, int(conn.port))
        for keytype, key in known.keys_for(name):
            keys.add(name, keytype, key)
    return conn


@functools.cache
def _shared_config() -> Config:
    """One fabric Config for every connection of the run: building one reads the SSH and fabric
    config files again, which costs more than the rest of a Connection."""
    return Config()


_JUMP_OPT = re.compile(r"(?:-o\s*ProxyJump[= ]\s*|-J\s*)([^\s'\"]+)", re.IGNORECASE)
_PROXY_W = re.compile(r"ProxyCommand[= ]\s*[\"']?ssh\s+(.*?)-W\s*\S+\s*(.*?)[\"']?(?:\s+-o|$)", re.IGNORECASE)


def jump_spec(host: Host, ssh_config: dict[str, Any]) -> str | None:
    """The bastion for this host: from ansible_ssh_common_args/extra_args, else from ~/.ssh/config."""
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        args = str(host.vars.get(key) or "")
        m = _JUMP_OPT.search(args)
        if m:
            return m.group(1)
        m = _PROXY_W.search(args)
        if m:
            # The common `ProxyCommand="ssh -W %h:%p -q user@bastion"` form is a jump host too.
            words = (m.group(1) + " " + m.group(2)).split()
            port = None
            target = None
            it = iter(words)
            for w in it:
                if w == "-p":
                    port = next(it, None)
                elif w.startswith("-"):
                    continue
                else:
                    target = w
            if target:
                return f"{target}:{port}" if port else target
    jump = ssh_config.get("proxyjump")
    if jump and jump.lower() != "none":
        return str(jump)
    return None


def _parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """user@host:port (first hop of a chain) -> parts."""
    first = spec.split(",")[0]
    user, _, rest = first.rpartition("@")
    port: int | None = None
    if rest.startswith("["):
        addr, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    else:
        addr, _, p = rest.partition(":")
        if p.isdigit():
            port = int(p)
    return user or None, addr, port


class JumpPool:
    """One authenticated connection per bastion, shared by every host behind it.

    sshd's default MaxStartups (10:30:100) drops handshakes beyond ten at a time; one shared
    connection means one login on the bastion, and a semaphore keeps the channels opened
    through it at a pace it accepts.
    """

    def __init__(self, known_hosts: Path, accept_new: bool, key_file: str | None = None) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.key_file = key_file
        self._lock = threading.Lock()
        self._conns: dict[str, tuple[Connection, threading.Lock, threading.Semaphore]] = {}

    def get(self, spec: str, key_file: str | None) -> tuple[Connection, threading.Semaphore]:
        """The open connection to this bastion (opened once, with retries)."""
        with self._lock:
            entry = self._conns.get(spec)
            if entry is None:
                user, addr, port = _parse_jump(spec)
                conn = _checked_connection(addr, user, port, key_file or self.key_file, None, self.known_hosts,
                                           self.accept_new, False, CONNECT_TIMEOUT)
                entry = (conn, threading.Lock(), threading.Semaphore(8))
                self._conns[spec] = entry
        conn, lock, sem = entry
        with lock:
            if not conn.is_connected:
                try:
                    _open_with_retries(conn, f"bastion {spec}")
                except HostError as e:
                    raise HostError(f"via bastion {spec}: {e}") from e
        return conn, sem

    def close(self) -> None:
        with self._lock:
            for conn, _, _ in self._conns.values():
                with contextlib.suppress(Exception):
                    conn.close()
            self._conns.clear()


def _transient(e: BaseException) -> bool:
    """Errors an overloaded sshd (past MaxStartups) gives: worth retrying."""
    if isinstance(e, (ConnectionResetError, EOFError)):
        return True
    if isinstance(e, paramiko.ChannelException):
        # A bastion short of resources may open the channel a moment later; "connect failed"
        # or "administratively prohibited" will not change.
        return e.code == paramiko.common.OPEN_FAILED_RESOURCE_SHORTAGE
    if isinstance(e, paramiko.SSHException) and not isinstance(
        e, (paramiko.AuthenticationException, paramiko.BadHostKeyException)
    ):
        msg = str(e).lower()
        return "banner" in msg or "reset" in msg or "closed" in msg or "eof" in msg
    return False


def _open_with_retries(conn: Connection, what: str, attempts: int = 8) -> int:
    """Open, retrying refused handshakes with exponential backoff and jitter; returns the
    number of attempts it took."""
    delay = 0.3
    for attempt in range(attempts):
        try:
            conn.open()
            return attempt + 1
        except Exception as e:
            if attempt == attempts - 1 or not _transient(e):
                raise
            with contextlib.suppress(Exception):
                conn.close()
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable: the last attempt returns or raises")


class SSHTransport:
    """A host reached over SSH (fabric Connection, paramiko underneath)."""

    def __init__(
        self,
        host: Host,
        known_hosts: Path,
        accept_new_host_keys: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        jumps: JumpPool | None = None,
    ) -> None:
        self.host = host
        # ~/.ssh/config applies (User, Port, IdentityFile, ProxyJump); the inventory wins where it says.
        port_set = any(k in host.vars for k in ("ansible_port", "ansible_ssh_port"))
        port = host.port if port_set or host.port != 22 else None
        self.conn = _checked_connection(
            host.address, host.user, port, host.key_file, host.password, known_hosts,
            accept_new_host_keys, False, connect_timeout,
        )
        self.jump = jump_spec(host, dict(self.conn.ssh_config))
        self.jumps = jumps
        via = f" via {self.jump}" if self.jump else ""
        self.description = f"{self.conn.user}@{host.address}:{self.conn.port}{via}"
        self.known_hosts = known_hosts
        self.attempts = 0  # connection attempts open() needed (sshd past MaxStartups refuses some)

    def open(self) -> None:
        """Connect and authenticate; every failure becomes a one-line HostError."""
        where = f"{self.host.address}:{self.conn.port}"
        sem: threading.Semaphore | None = None
        try:
            if self.jump:
                pool = self.jumps or JumpPool(self.known_hosts, False)
                self.jumps = pool
                gw, sem = pool.get(self.jump, self.host.key_file)
                self.conn.gateway = gw
            if sem is not None:
                with sem:
                    self.attempts = _open_with_retries(self.conn, where)
            else:
                self.attempts = _open_with_retries(self.conn, where)
        except HostError:
            raise
        except paramiko.BadHostKeyException as e:
            name = known_hosts_name(self.host.address, self.conn.port)
            raise HostError(
                f"host key for {name} CHANGED: got {e.key.get_name()} {e.key.fingerprint}, "
                f"{self.known_hosts} has {e.expected_key.fingerprint}; check the line for "
                f"'{name}' in {self.known_hosts} (refusing to connect)"
            ) from e
        except paramiko.AuthenticationException as e:
            who = f"{self.conn.user}@{where}"
            raise HostError(f"authentication failed for {who}: {e}") from e
        except paramiko.ssh_exception.NoValidConnectionsError as e:
            errs = list(e.errors.values())
            codes = {getattr(err, "errno", None) for err in errs}
            if errno.ECONNREFUSED in codes:
                raise HostError(f"connection refused ({where})") from e
            if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
                raise HostError(f"no route to host ({where} unreachable)") from e
            if any(isinstance(err, TimeoutError) for err in errs):
                raise HostError(f"timed out connecting to {where}") from e
            detail = "; ".join(sorted({getattr(err, "strerror", None) or str(err) for err in errs}))
            raise HostError(f"cannot connect to {where}: {detail}") from e
        except TimeoutError as e:
            raise HostError(f"timed out connecting to {where}") from e
        except paramiko.ChannelException as e:
            raise HostError(f"the bastion {self.jump} could not reach {where}: {e.text}") from e
        except paramiko.SSHException as e:
            msg = str(e)
            if self.jump and "timeout opening channel" in msg.lower():
                raise HostError(
                    f"timed out connecting to {where} (the bastion {self.jump} got no answer "
                    f"within {self.conn.connect_timeout:.0f} s)") from e
            # A server that never sends a banner surfaces as either message, depending on timing.
            if "banner" in msg.lower() or "no existing session" in msg.lower():
                msg = "no SSH banner in time (not an SSH server, or sshd overloaded)"
            raise HostError(f"SSH failed on {where}: {msg}") from e
        except OSError as e:
            raise HostError(f"cannot connect to {where}: {e.strerror or e}") from e

    def _channel(self, command: str) -> paramiko.Channel:
        transport = self.conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(f"connection to {self.description} was lost")
        try:
            channel = transport.open_session(timeout=CONNECT_TIMEOUT)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HostError(f"cannot run a command on {self.description}: {e}") from e
        return channel

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60.0) -> Result:
        channel = self._channel(command)
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = b"", b""
            deadline = time.monotonic() + timeout
            channel.settimeout(1.0)
            while True:
                if time.monotonic() > deadline:
                    raise HostError(f"command timed out after {timeout:.0f} s on {self.description}")
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                out += chunk
            while not channel.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.01)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            rc = channel.recv_exit_status() if channel.exit_status_ready() else -1
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HostError(f"connection to {self.description} failed: {e}") from e
        finally:
            channel.close()
        return Result(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def start(self, command: str) -> Stream:
        return SSHStream(self._channel(command))

    def fetch(self, directory: str, files: list[tuple[str, int, Path]], timeout: float) -> dict[str, str]:
        split = _Splitter(files)
        channel = self._channel(fetch_command(directory, files))
        err = b""
        try:
            channel.shutdown_write()
            deadline = time.monotonic() + timeout
            channel.settimeout(1.0)
            while True:
                if time.monotonic() > deadline:
                    raise HostError(f"fetching files timed out after {timeout:.0f} s on {self.description}")
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                try:
                    chunk = channel.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                split.feed(chunk)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
        except (paramiko.SSHException, OSError, EOFError) as e:
            split.abandon()
            raise HostError(f"connection to {self.description} failed while fetching: {e}") from e
        except BaseException:
            split.abandon()
            raise
        finally:
            channel.close()
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:]
        try:
            return split.finish()
        except HostError as e:
            # cat names the file it could not read; that says more than "arrived short".
            raise HostError(f"cannot fetch from {self.description}: {detail[0][:200]}") if detail else e from None

    def close(self) -> None:
        # Closing must never raise: it runs in cleanup paths.
        with contextlib.suppress(Exception):
            self.conn.close()


# --- local ----------------------------------------------------------------------------------


class LocalStream:
    """A local subprocess used as a Stream."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def readline(self, timeout: float) -> str | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._lines or self._eof, timeout):
                raise TimeoutError("no output from the host side in time")
            return self._lines.pop(0) if self._lines else None

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except OSError as e:
            raise HostError(f"local command ended: {e}") from e

    def close_stdin(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self) -> str:
        return ""

    def kill(self) -> None:
        self.close_stdin()


class LocalTransport:
    """The machine fleetrst runs on (`ansible_connection: local`)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.description = "local"

    def open(self) -> None:
        """Nothing to open locally."""

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60.0) -> Result:
        try:
            p = subprocess.run(
                ["sh", "-c", command], input=stdin or b"", capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise HostError(f"local command timed out after {timeout:.0f} s") from e
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))

    def start(self, command: str) -> Stream:
        proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return LocalStream(proc)

    def fetch(self, directory: str, files: list[tuple[str, int, Path]], timeout: float) -> dict[str, str]:
        split = _Splitter(files)
        for name, _, _ in files:
            try:
                with open(os.path.join(directory, name), "rb") as f:
                    while chunk := f.read(1 << 20):
                        split.feed(chunk)
            except OSError as e:
                split.abandon()
                raise HostError(f"cannot copy {name}: {e.strerror or e}") from e
        return split.finish()

    def close(self) -> None:
        """Nothing to close locally."""


def connect(
    host: Host, known_hosts: Path, accept_new_host_keys: bool = False, jumps: JumpPool | None = None
) -> SSHTransport | LocalTransport:
    """Open a transport to the host, or raise HostError with one line saying why not."""
    t: SSHTransport | LocalTransport
    if host.is_local:
        t = LocalTransport(host)
    else:
        t = SSHTransport(host, known_hosts, accept_new_host_keys, jumps=jumps)
    t.open()
    return t


def quote(value: object) -> str:
    """Quote one value for a remote POSIX shell."""
    return shlex.quote(str(value))
