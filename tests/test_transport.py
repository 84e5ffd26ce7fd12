"""Connection settings derived from inventory variables and ssh_config, and fetching (no network)."""

import hashlib
import os
from pathlib import Path

import paramiko
import pytest

from fleetrst.errors import HostError
from fleetrst.model import Host
from fleetrst.transport import (
    HostKeyPolicy,
    KnownHosts,
    LocalTransport,
    _parse_jump,
    _transient,
    fetch_command,
    jump_spec,
)


def host(**vars: str) -> Host:
    return Host("web01", "198.18.0.20", vars=vars)


def test_jump_from_ansible_proxyjump_option() -> None:
    assert jump_spec(host(ansible_ssh_common_args="-o ProxyJump=ops@bastion:2222"), {}) == "ops@bastion:2222"
    assert jump_spec(host(ansible_ssh_extra_args="-J bastion"), {}) == "bastion"
    # As the bastion lab writes it: an ssh_config for OpenSSH's own jump, then the jump.
    args = "-F /tmp/lab/ssh_config -o ProxyJump=root@198.18.0.2 -o UserKnownHostsFile=/tmp/k"
    assert jump_spec(host(ansible_ssh_common_args=args), {}) == "root@198.18.0.2"


def test_jump_from_the_classic_proxycommand_idiom() -> None:
    args = '-o ProxyCommand="ssh -W %h:%p -q ops@bastion.example.com"'
    assert jump_spec(host(ansible_ssh_common_args=args), {}) == "ops@bastion.example.com"
    args = "-o ProxyCommand='ssh -p 2200 -W %h:%p bastion'"
    assert jump_spec(host(ansible_ssh_common_args=args), {}) == "bastion:2200"


def test_jump_from_ssh_config_and_inventory_wins() -> None:
    assert jump_spec(host(), {"proxyjump": "gw"}) == "gw"
    assert jump_spec(host(), {"proxyjump": "none"}) is None
    assert jump_spec(host(ansible_ssh_common_args="-o ProxyJump=a"), {"proxyjump": "gw"}) == "a"
    assert jump_spec(host(), {}) is None


def test_jump_spec_parts() -> None:
    assert _parse_jump("ops@gw:2222") == ("ops", "gw", 2222)
    assert _parse_jump("gw") == (None, "gw", None)
    assert _parse_jump("root@[fd00::1]:22,second") == ("root", "fd00::1", 22)


def test_which_handshake_failures_are_retried() -> None:
    # An sshd past MaxStartups closes or resets the connection before or during the banner.
    assert _transient(EOFError())
    assert _transient(ConnectionResetError())
    assert _transient(paramiko.SSHException("Error reading SSH protocol banner"))
    assert not _transient(paramiko.AuthenticationException("Authentication failed."))
    # A bastion's refusal to open the channel: only a shortage of resources may pass.
    assert _transient(paramiko.ChannelException(4, "Resource shortage"))
    assert not _transient(paramiko.ChannelException(2, "Connect failed"))
    assert not _transient(paramiko.ChannelException(1, "Administratively prohibited"))
    assert not _transient(paramiko.SSHException("Timeout opening channel."))


# --- fetching many files in one stream ------------------------------------------------------


def _local() -> LocalTransport:
    return LocalTransport(Host(name="here", address="127.0.0.1", connection="local"))


def test_fetch_splits_one_stream_into_the_announced_files(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    blobs = {"a.pcap": os.urandom(3_000_000), "empty.txt": b"", "b.txt": b"counters\n"}
    for name, data in blobs.items():
        (remote / name).write_bytes(data)
    local = tmp_path / "local"
    local.mkdir()
    files = [(name, len(data), local / name) for name, data in blobs.items()]
    sums = _local().fetch(str(remote), files, timeout=10)
    for name, data in blobs.items():
        assert (local / name).read_bytes() == data
        assert sums[name] == hashlib.sha256(data).hexdigest()


def test_fetch_over_ssh_command_quotes_every_name():
    cmd = fetch_command("/tmp/fleetrst-x", [("a b", 1, Path("x")), ("$(touch m)", 2, Path("y"))])
    assert cmd == "cd /tmp/fleetrst-x && exec cat -- 'a b' '$(touch m)'"


def test_fetch_of_a_file_shorter_than_announced_is_an_error(tmp_path):
    (tmp_path / "a").write_bytes(b"12345")
    with pytest.raises(HostError, match=r"a arrived short \(5 of 9 bytes\)"):
        _local().fetch(str(tmp_path), [("a", 9, tmp_path / "a.copy")], timeout=5)


def test_fetch_of_a_longer_file_spills_and_is_caught(tmp_path):
    (tmp_path / "a").write_bytes(b"123456789")
    (tmp_path / "b").write_bytes(b"xy")
    files = [("a", 5, tmp_path / "a.copy"), ("b", 2, tmp_path / "b.copy")]
    with pytest.raises(HostError, match="more than its files' sizes"):
        _local().fetch(str(tmp_path), files, timeout=5)


def test_fetch_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(HostError, match="cannot copy gone.txt"):
        _local().fetch(str(tmp_path), [("gone.txt", 3, tmp_path / "copy")], timeout=5)


# --- known_hosts, read once per scan ---------------------------------------------------------


def _known_hosts_lines() -> tuple[list[str], dict[str, paramiko.PKey]]:
    keys = {n: paramiko.ECDSAKey.generate() for n in ("a", "b", "c", "d")}

    def line(names: str, k: str) -> str:
        return f"{names} {keys[k].get_name()} {keys[k].get_base64()}"

    hashed = paramiko.HostKeys.hash_host("198.18.0.30")
    lines = [
        "# a comment", "",
        line("198.18.0.20", "a"),
        line("web02,198.18.0.21", "b"),          # several names on one line
        line("[198.18.0.22]:2222", "c"),        # a port other than 22
        line(hashed, "d"),                      # hashed (HashKnownHosts yes)
        line("198.18.0.20", "b"),               # the same type again: the first one wins
        "198.18.0.23 ssh-ed25519 not!base64",   # broken lines are skipped
        "@cert-authority *.example.com " + keys["a"].get_name() + " " + keys["a"].get_base64(),
        line("web03", "c"),
        "@revoked * " + keys["c"].get_name() + " " + keys["c"].get_base64(),
        "too few",
    ]
    return lines, keys


def test_known_hosts_gives_each_name_the_keys_paramiko_would(tmp_path: Path) -> None:
    lines, keys = _known_hosts_lines()
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    ours = KnownHosts(path)
    # paramiko's own loader raises on the line that is not base64 (one bad line would stop the
    # scan); ours skips it. Compared on the rest.
    readable = tmp_path / "readable"
    readable.write_text("\n".join(ln for ln in lines if "not!base64" not in ln and ln[:1] != "@") + "\n")
    with pytest.raises(paramiko.hostkeys.InvalidHostKey):
        paramiko.HostKeys(str(path))
    theirs = paramiko.HostKeys(str(readable))
    names = ["198.18.0.20", "web02", "198.18.0.21", "[198.18.0.22]:2222", "198.18.0.22",
             "198.18.0.30", "198.18.0.23", "198.18.0.99", "*.example.com"]
    for name in names:
        if name == "[198.18.0.22]:2222":
            continue  # its key is @revoked: below
        sub = theirs.lookup(name)
        want = {kt: sub[kt].get_base64() for kt in sub.keys()} if sub else {}
        assert {kt: k.get_base64() for kt, k in ours.keys_for(name)} == want, name
    assert [k.get_base64() for _, k in ours.keys_for("198.18.0.20")] == [keys["a"].get_base64()]
    assert [k.get_base64() for _, k in ours.keys_for("198.18.0.30")] == [keys["d"].get_base64()]
    assert ours.keys_for("198.18.0.99") == []
    # A revoked key is nobody's, and the policy refuses it even with --accept-new-host-keys.
    assert ours.keys_for("web03") == ours.keys_for("[198.18.0.22]:2222") == []
    client = paramiko.SSHClient()
    before = path.read_text()
    with pytest.raises(HostError, match="@revoked"):
        HostKeyPolicy(path, accept_new=True).missing_host_key(client, "web03", keys["c"])
    assert path.read_text() == before  # not recorded
    assert client.get_host_keys().lookup("web03") is None


def test_known_hosts_is_parsed_once_and_again_only_when_the_file_changes(tmp_path: Path) -> None:
    lines, keys = _known_hosts_lines()
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    first = KnownHosts.of(path)
    assert KnownHosts.of(path) is first
    # A key this process accepted (--accept-new-host-keys) is appended and known at once.
    new = paramiko.ECDSAKey.generate()
    with open(path, "a") as f:
        f.write(f"198.18.0.40 {new.get_name()} {new.get_base64()}\n")
    KnownHosts.recorded(path, "198.18.0.40", new)
    assert KnownHosts.of(path) is first
    assert [k.get_base64() for _, k in first.keys_for("198.18.0.40")] == [new.get_base64()]
    # Someone else edits the file: read again.
    path.write_text(f"198.18.0.20 {new.get_name()} {new.get_base64()}\n")
    again = KnownHosts.of(path)
    assert again is not first
    assert [k.get_base64() for _, k in again.keys_for("198.18.0.20")] == [new.get_base64()]
    assert again.keys_for("web02") == []
