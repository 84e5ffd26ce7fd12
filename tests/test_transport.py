"""Connection settings derived from inventory variables and ssh_config (no network)."""

import paramiko

from fleetrst.model import Host
from fleetrst.transport import _parse_jump, _transient, jump_spec


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
