"""Connection settings derived from inventory variables and ssh_config, and fetching (no network)."""

import hashlib
import os
from pathlib import Path

import paramiko
import pytest

from fleetrst.errors import HostError
from fleetrst.model import Host
from fleetrst.transport import LocalTransport, _parse_jump, _transient, fetch_command, jump_spec


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
