"""Connection settings derived from inventory variables and ssh_config (no network)."""

from fleetrst.model import Host
from fleetrst.transport import _parse_jump, jump_spec


def host(**vars: str) -> Host:
    return Host("web01", "198.18.0.20", vars=vars)


def test_jump_from_ansible_proxyjump_option() -> None:
    assert jump_spec(host(ansible_ssh_common_args="-o ProxyJump=ops@bastion:2222"), {}) == "ops@bastion:2222"
    assert jump_spec(host(ansible_ssh_extra_args="-J bastion"), {}) == "bastion"


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
