"""Ansible YAML inventories (tests/data/inventories/) and --limit patterns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from fleetrst.errors import InventoryError
from fleetrst.inventory import (
    _PLAYBOOK_VARS,
    Inventory,
    check_host_name,
    expand_host_range,
    load_inventory,
    split_limit,
)
from fleetrst.model import Host

DATA = Path(__file__).parent / "data" / "inventories"
ERRORS = DATA / "errors"


def names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


@pytest.fixture(scope="module")
def fleet() -> Inventory:
    return load_inventory(DATA / "fleet.yml")


def host(inv: Inventory, name: str) -> Host:
    (found,) = [h for h in inv.hosts if h.name == name]
    return found


# --- reading --------------------------------------------------------------------------------------


def test_fleet_hosts_in_inventory_order(fleet: Inventory) -> None:
    assert names(fleet.hosts) == FLEET
    assert fleet.path == str(DATA / "fleet.yml")
    assert fleet.warnings == ()


def test_fleet_groups(fleet: Inventory) -> None:
    assert fleet.groups == {
        "all": set(names(fleet.hosts)),
        "ungrouped": {"bastion.example.com", "localhost"},
        "web": {"web01", "web02", "web03"},
        "web_canary": {"web03"},
        "db": {"dba", "dbb", "dbc"},
        "dc1": {"web01", "web02", "dba"},
        "dc2": {"web03", "dbb", "dbc"},
    }
    assert host(fleet, "web03").groups == ("dc2", "web", "web_canary")
    assert host(fleet, "bastion.example.com").groups == ("ungrouped",)


def test_fleet_connection_settings(fleet: Inventory) -> None:
    keys = str(DATA / "keys" / "fleet_ed25519")
    assert host(fleet, "bastion.example.com") == Host(
        name="bastion.example.com", address="198.18.0.1", port=2222, user="ops", key_file=keys,
        groups=("ungrouped",),
    )
    local = host(fleet, "localhost")
    assert local.connection == "local" and local.is_local and local.become is False
    web01 = host(fleet, "web01")
    assert (web01.address, web01.port, web01.user, web01.key_file) == ("web01", 22, "ops", keys)
    assert web01.connection == "ssh" and web01.password is None
    dbc = host(fleet, "dbc")
    assert dbc.user == "dba"  # host var over the all-group var
    assert dbc.key_file == os.path.expanduser("~/.ssh/db_key")
    assert (dbc.become, dbc.become_user) == (True, "postgres")  # from the string "yes"
    assert dbc.password == "s3cret"
    assert "s3cret" not in repr(dbc)


def test_fleet_variable_precedence(fleet: Inventory) -> None:
    # web01: all < dc1 < web (siblings at depth 1: later name wins).
    assert host(fleet, "web01").vars["level"] == "web"
    # dba: all < db < dc1.
    assert host(fleet, "dba").vars["level"] == "dc1"
    assert host(fleet, "dbb").vars["level"] == "db"
    # web03: the child group web_canary beats its parent web, and the host var beats everything.
    assert host(fleet, "web03").vars["tier"] == "canary"
    assert host(fleet, "web03").vars["level"] == "host"
    assert host(fleet, "web01").vars["tier"] == "web"
    assert host(fleet, "bastion.example.com").vars["level"] == "all"


def test_precedence_file() -> None:
    inv = load_inventory(DATA / "precedence.yml")
    h1, h2, h3, h4, h5 = inv.hosts
    # Deeper groups win over shallower ones, whatever their names.
    assert h1.vars["v"] == "child"
    assert (h1.vars["only_all"], h1.vars["only_parent"]) == ("all", "parent")
    assert h1.groups == ("child", "parent", "zz_shallow")
    assert h2.vars["v"] == "host"
    assert h3.vars["s"] == "beta"
    # ansible_group_priority beats the alphabetical order.
    assert h4.vars["s"] == "aardvark"
    # A host defined twice: vars merge, the later definition wins.
    assert (h5.vars["a"], h5.vars["b"]) == (1, 2)
    assert inv.groups["ungrouped"] == set()


def test_ranges_and_ports() -> None:
    inv = load_inventory(DATA / "ranges.yml")
    assert names(inv.hosts) == [
        "node1", "node4", "node7", "node10",
        "rack1-ua", "rack1-ub", "rack2-ua", "rack2-ub",
        "edge.example.com", "2001:db8::7", "2001:db8::8",
        "web01.example.com", "web02.example.com",
        "xA", "xB", "xC", "y0", "y1", "y2",
    ]
    ports = {h.name: h.port for h in inv.hosts}
    assert ports["edge.example.com"] == 2022
    assert ports["2001:db8::7"] == 2200
    assert ports["2001:db8::8"] == 22
    assert ports["web02.example.com"] == 2201
    assert inv.groups["letters"] == {"xA", "xB", "xC", "y0", "y1", "y2"}


def test_local_inventory() -> None:
    inv = load_inventory(str(DATA / "local.yml"))
    assert inv.hosts == [Host("localhost", "localhost", connection="local", groups=("ungrouped",))]


def test_templates_vault_and_untrusted_names() -> None:
    inv = load_inventory(DATA / "templated.yml")
    app01, app02, odd, literal = inv.hosts
    assert (app01.address, app01.user) == ("app01.corp.example", "deploy")
    assert (app02.address, app02.port) == ("app02.corp.example", 2202)
    # Names are kept as written; escaping is the report's job.
    assert odd.name == 'odd <b>name&amp; "q"'
    assert odd.vars["note"] == "{{ not rendered }}"
    assert odd.vars["secret"].startswith("$ANSIBLE_VAULT")
    assert app01.vars["ansible_host"] == "{{ inventory_hostname_short }}.{{ domain }}"
    assert literal.password == "p{{w}}d"  # !unsafe: never templated
    # Group names are not paths: one full of dots, slashes and a NUL only names a group.
    assert app02.groups == ("../odd/group\x00",)


def test_group_vars_and_host_vars_beside_the_inventory() -> None:
    inv = load_inventory(DATA / "layered" / "inventory.yml")
    web01, web02 = inv.hosts
    # group_vars/all.yml beats the inventory file's group vars; group_vars/web/ beats both.
    assert (web01.port, web01.user) == (2100, "web_admin")
    assert web01.vars["from_file"] == "web" and web01.vars["from_group_vars_all"] is True
    # host_vars/web02.yaml beats everything.
    assert (web02.port, web02.user) == (2202, "web02_admin")
    assert web01.key_file == str(DATA / "keys" / "id_layered")
    (warning,) = inv.warnings
    assert warning.endswith("group_vars/web/vault.yml: encrypted with ansible-vault; skipped")


@pytest.mark.parametrize("value", ["true", "yes", "1", "True", "on", True, 1])
def test_become_true(tmp_path: Path, value: object) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  hosts:\n    h:\n      ansible_become: {value!r}\n")
    assert load_inventory(path).hosts[0].become is True


def test_port_with_odd_digits(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h:\n      ansible_port: \"2\u00b2\"\n", encoding="utf-8")
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(err.value) == f"{path}:4: host 'h': ansible_port '2\u00b2' is not an integer"


@pytest.mark.parametrize("value", ["false", "no", "0", "off", False, 0])
def test_become_false(tmp_path: Path, value: object) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  hosts:\n    h:\n      ansible_become: {value!r}\n")
    assert load_inventory(path).hosts[0].become is False


def test_alternative_variable_names(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(
        "top:\n  hosts:\n    h:\n      ansible_ssh_host: 198.18.0.9\n"
        "      ansible_ssh_port: '2022'\n"
        "      ansible_ssh_user: u\n      ansible_ssh_pass: p\n      ansible_private_key_file: k\n"
        "      ansible_connection: paramiko\n"
    )
    h = load_inventory(path).hosts[0]
    assert (h.address, h.port, h.user, h.password) == ("198.18.0.9", 2022, "u", "p")
    assert h.key_file == str(tmp_path / "k")
    assert h.connection == "ssh"
    assert h.groups == ("top",)


# --- errors ---------------------------------------------------------------------------------------


ERROR_CASES = [
    ("syntax.yml", 5, "YAML error: mapping values are not allowed here"),
    ("tab.yml", 3, "YAML error: found character '\\t' that cannot start any token"),
    ("tag.yml", 5, "YAML error: could not determine a constructor for the tag '!include'"),
    ("top-list.yml", 2, "the inventory must be a mapping of groups, not a list"),
    ("group-not-mapping.yml", 7,
     "group 'db' must be a mapping with hosts, children or vars, not a list"),
    ("hosts-list.yml", 5,
     "group 'web': hosts must be a mapping of host names (name: or name: {vars}), not a list"),
    ("vars-list.yml", 3, "group 'all': vars must be a mapping, not a list"),
    ("unknown-key.yml", 5,
     "group 'web': unexpected key 'web01' (expected hosts, children or vars)"),
    ("loop.yml", 8, "group 'web' is listed under 'edge', which is inside it (children loop)"),
    ("host-not-string.yml", 5, "host name 12345 is not a string"),
    ("host-null.yml", 4, "empty host name (a null key)"),
    ("host-empty.yml", 5, "empty host name"),
    ("host-slash.yml", 6, "host name '../../etc' contains '/'"),
    ("host-nul.yml", 4, "host name 'web\\x00evil' contains control characters"),
    ("host-control.yml", 5, "host name 'web\\x1b[31m' contains control characters"),
    ("host-dash.yml", 4, "host name '-oProxyCommand=sh' starts with '-'"),
    ("range-backwards.yml", 4, "host range [03:01] runs backwards"),
    ("port-group-var.yml", 6, "host 'web01': ansible_port 'twenty-two' is not an integer"),
    ("port-float.yml", 6, "host 'web01': ansible_ssh_port 22.5 is not an integer"),
    ("port-range.yml", 5, "host 'web01': ansible_port 70000 is not a TCP port (1-65535)"),
    ("become.yml", 5, "host 'web01': ansible_become 'maybe' is not a boolean"),
    ("template.yml", 5,
     "host 'web01': ansible_host uses a template fleetrst cannot render: "
     + """'{{ groups["web"][0] }}'"""),
]


@pytest.mark.parametrize(("name", "line", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_names_file_and_line(name: str, line: int, message: str) -> None:
    path = ERRORS / name
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(err.value) == f"{path}:{line}: {message}"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.yml", "no hosts in the inventory"),
        ("comments-only.yml", "no hosts in the inventory"),
        ("binary.yml", "not UTF-8 text (byte 0)"),
        ("does-not-exist.yml", "no such file"),
    ],
)
def test_error_without_line(name: str, message: str) -> None:
    path = ERRORS / name
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(err.value) == f"{path}: {message}"


def test_error_shows_the_path_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    with pytest.raises(InventoryError, match=r"^errors/syntax\.yml:5: "):
        load_inventory("errors/syntax.yml")
    with pytest.raises(InventoryError, match=r"^errors: is a directory"):
        load_inventory("errors")


def test_vault_encrypted_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("$ANSIBLE_VAULT;1.1;AES256\n6130\n")
    with pytest.raises(InventoryError, match="encrypted with ansible-vault"):
        load_inventory(path)


def test_vaulted_connection_setting(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n  hosts:\n    h:\n      ansible_password: !vault |\n        $ANSIBLE_VAULT\n"
    )
    with pytest.raises(InventoryError, match=r":4: host 'h': ansible_password is vault-encrypted"):
        load_inventory(path)


def test_bad_group_vars_file(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("a: 1\nansible_port: [1]\n")
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h:\n")
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(err.value) == (
        f"{tmp_path / 'group_vars' / 'all.yml'}:2: host 'h': ansible_port [1] is not an integer"
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("web01", None),
        ("web 01 <b>", None),
        ("", "empty host name"),
        ("  ", "empty host name"),
        ("..", "host name '..' is not allowed"),
        ("a/b", "host name 'a/b' contains '/'"),
        ("a\x00b", "host name 'a\\x00b' contains control characters"),
        ("a\nb", "host name 'a\\nb' contains control characters"),
        ("a\x85b", "host name 'a\\x85b' contains control characters"),
        ("-x", "host name '-x' starts with '-'"),
        (3, "host name 3 is not a string"),
    ],
)
def test_check_host_name(name: object, problem: str | None) -> None:
    assert check_host_name(name) == problem


@pytest.mark.parametrize(
    ("pattern", "expanded"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("db[a:c]", ["dba", "dbb", "dbc"]),
        ("n[1:10:2]", ["n1", "n3", "n5", "n7", "n9"]),
        ("n[:2]", ["n0", "n1", "n2"]),
        ("r[1:2]u[a:b].x", ["r1ua.x", "r1ub.x", "r2ua.x", "r2ub.x"]),
        ("plain", ["plain"]),
    ],
)
def test_expand_host_range(pattern: str, expanded: list[str]) -> None:
    assert expand_host_range(pattern) == expanded


@pytest.mark.parametrize("pattern", ["w[1:]", "w[01:3]", "w[3:1]", "w[a:1]", "w[1:2:0]",
                                     "w[1:2:3:4]", "w[0:99999999]", "w[1:\u00b2]"])
def test_expand_host_range_errors(pattern: str) -> None:
    with pytest.raises(ValueError):
        expand_host_range(pattern)


# --- --limit --------------------------------------------------------------------------------------


FLEET = ["bastion.example.com", "localhost", "web01", "web02", "web03", "dba", "dbb", "dbc"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, FLEET),
        ("", FLEET),
        ("all", FLEET),
        ("*", FLEET),
        ("web", ["web01", "web02", "web03"]),
        ("web01", ["web01"]),
        ("web*", ["web01", "web02", "web03"]),
        ("web:db", ["web01", "web02", "web03", "dba", "dbb", "dbc"]),
        ("web,db", ["web01", "web02", "web03", "dba", "dbb", "dbc"]),
        ("web:&dc1", ["web01", "web02"]),
        ("web:!web03", ["web01", "web02"]),
        ("web:&dc1:!web03", ["web01", "web02"]),
        ("web:&dc2:!web03:db", ["dbb", "dbc"]),
        # Unions first, then intersections, then exclusions, whatever the written order.
        ("!web03:web", ["web01", "web02"]),
        ("&dc1:web:db", ["web01", "web02", "dba"]),
        ("!web*", ["bastion.example.com", "localhost", "dba", "dbb", "dbc"]),
        ("&dc2", ["web03", "dbb", "dbc"]),
        ("ungrouped", ["bastion.example.com", "localhost"]),
        ("web_canary", ["web03"]),
        ("db?", ["dba", "dbb", "dbc"]),
        ("*.example.com", ["bastion.example.com"]),
        ("~^db[ab]$", ["dba", "dbb"]),
        ("~web0[12]", ["web01", "web02"]),
        ("web[0]", ["web01"]),
        ("web[-1]", ["web03"]),
        ("web[1:]", ["web02", "web03"]),
        ("web[0:1]", ["web01", "web02"]),
        (" web01 , dbc ", ["web01", "dbc"]),
        ("web01:typo", ["web01"]),  # Ansible ignores a term that matches nothing
    ],
)
def test_limit(fleet: Inventory, limit: str | None, expected: list[str]) -> None:
    assert names(fleet.select(limit)) == expected


@pytest.mark.parametrize("limit", ["nothing", "web:&db", "WEB", "web[7]", "web:!web*"])
def test_limit_matches_nothing(fleet: Inventory, limit: str) -> None:
    with pytest.raises(InventoryError) as err:
        fleet.select(limit)
    assert str(err.value) == f"limit {limit!r} matches no host"


def test_limit_bad_regex(fleet: Inventory) -> None:
    with pytest.raises(InventoryError, match="bad pattern"):
        fleet.select("~web(")


def test_unmatched_terms(fleet: Inventory) -> None:
    assert fleet.unmatched("web01:typo:!also_typo:&dc1") == ["typo", "!also_typo"]
    assert fleet.unmatched(None) == []


def test_split_limit() -> None:
    assert split_limit("web:&dc1:!web03") == ["web", "&dc1", "!web03"]
    assert split_limit("a,b:c") == ["a", "b:c"]
    assert split_limit("web[0:2]:db") == ["web[0:2]", "db"]
    assert split_limit("2001:db8::7") == ["2001:db8::7"]


def test_limit_on_ipv6_host_names() -> None:
    inv = load_inventory(DATA / "ranges.yml")
    assert names(inv.select("2001:db8::7")) == ["2001:db8::7"]
    assert names(inv.select("letters:&x*")) == ["xA", "xB", "xC"]


# --- variables fleetrst does not know -------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_unknown_variables_name_file_line_and_closest_name(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "inv.yml": (
            "web:\n"                               # 1
            "  vars:\n"                            # 2
            "    ansible_prot: 2222\n"             # 3
            "    app_role: frontend\n"             # 4
            "  hosts:\n"                           # 5
            "    web01:\n"                         # 6
            "      ansible_usr: deploy\n"          # 7
            "    web02:\n"                         # 8
            "      ansible_flavour: x\n"           # 9
            "      Ansible_Port: 2202\n"           # 10
        ),
        "group_vars/web.yml": "fleetrst_captur_mb: 8\nfleetrst_cap_mb: 8\n",
        "host_vars/web02/main.yml": "db_port: 5432\nansbile_host: 198.18.0.7\n",
    })
    inv = load_inventory(tmp_path / "inv.yml")
    assert list(inv.warnings) == [
        (f"{tmp_path}/inv.yml:3: unknown variable ansible_prot for group web "
         "(did you mean ansible_port?)"),
        (f"{tmp_path}/inv.yml:7: unknown variable ansible_usr for host web01 "
         "(did you mean ansible_user?)"),
        f"{tmp_path}/inv.yml:9: unknown variable ansible_flavour for host web02",
        (f"{tmp_path}/inv.yml:10: unknown variable Ansible_Port for host web02 "
         "(did you mean ansible_port?)"),
        (f"{tmp_path}/group_vars/web.yml:1: unknown variable fleetrst_captur_mb for group web "
         "(did you mean fleetrst_cap_mb?)"),
        (f"{tmp_path}/host_vars/web02/main.yml:2: unknown variable ansbile_host for host web02 "
         "(did you mean ansible_host?)"),
    ]
    # A warning, not an error: the hosts are read as before, the typo is simply not applied.
    assert [(h.name, h.port, h.user) for h in inv.hosts] == [
        ("web01", 22, None), ("web02", 22, None)]


def test_a_variable_is_warned_about_once_per_place_it_is_set(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "inv.yml": (
            "all:\n"
            "  vars:\n"
            "    ansible_prot: 2222\n"
            "  children:\n"
            "    web:\n"
            "      hosts:\n"
            "        web[01:03]:\n"
            "          ansible_usr: deploy\n"
            "        web02:\n"
            "          ansible_usr: other\n"
        ),
        "group_vars/all.yml": "ansible_prot: 2223\n",
    })
    assert load_inventory(tmp_path / "inv.yml").warnings == (
        (f"{tmp_path}/inv.yml:3: unknown variable ansible_prot for group all "
         "(did you mean ansible_port?)"),
        (f"{tmp_path}/inv.yml:8: unknown variable ansible_usr for host web01 "
         "(did you mean ansible_user?)"),
        (f"{tmp_path}/inv.yml:10: unknown variable ansible_usr for host web02 "
         "(did you mean ansible_user?)"),
        (f"{tmp_path}/group_vars/all.yml:1: unknown variable ansible_prot for group all "
         "(did you mean ansible_port?)"),
    )


def test_known_and_user_variables_are_not_warned_about(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "inv.yml": (
            "all:\n"
            "  vars:\n"
            "    ansible_python_interpreter: /usr/bin/python3\n"
            "    ansible_perl_interpreter: /usr/bin/perl\n"
            "    ansible_shell_type: sh\n"
            "    ansible_ssh_args: -o ControlMaster=auto\n"
            "    ansible_winrm_transport: ntlm\n"
            "    ansible_host_key_checking: true\n"
            "    app_role: db\n"
            "    ANSIBLE_NOTE: shouting is the user's own business\n"
            "  hosts:\n"
            "    h1: {ansible_connection: paramiko, ansible_ssh_pass: pw, ansible_become: 1,\n"
            "         ansible_become_method: sudo, ansible_become_user: postgres}\n"
            "    h2: {ansible_connection: ansible.builtin.local, ansible_become_method: su}\n"
            "    h3:\n"
            "      ansible_group_priority: 3\n"
            "      ansible_ssh_common_args: -o ProxyJump=ops@198.18.0.2\n"
            "      ansible_host: '{{ inventory_hostname }}.example.com'\n"
        ),
        # The playbook path's settings (playbooks/README.md) are often kept beside the inventory.
        "group_vars/all.yml": "fleetrst_duration: 60\nfleetrst_out: runs/today\n",
    })
    inv = load_inventory(tmp_path / "inv.yml")
    assert inv.warnings == ()
    # ansible_become_method only matters where become is on.
    assert [(h.name, h.connection, h.become) for h in inv.hosts] == [
        ("h1", "ssh", True), ("h2", "local", False), ("h3", "ssh", False)]


def test_settings_fleetrst_cannot_honour_are_said(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "inv.yml": (
            "web:\n"                                            # 1
            "  vars:\n"                                         # 2
            "    ansible_become: true\n"                        # 3
            "    ansible_become_password: !vault |\n"           # 4
            "      $ANSIBLE_VAULT;1.1;AES256\n"                 # 5
            "    ansible_become_method: '{{ how }}'\n"          # 6
            "    how: su\n"                                     # 7
            "  hosts:\n"                                        # 8
            "    w1:\n"                                         # 9
            "      ansible_connection: community.docker.docker\n"  # 10
            "      ansible_host_key_checking: no\n"             # 11
            "    w2:\n"                                         # 12
            "      ansible_timeout: 60\n"                       # 13
        ),
    })
    inv = load_inventory(tmp_path / "inv.yml")
    assert list(inv.warnings) == [
        (f"{tmp_path}/inv.yml:4: ansible_become_password for group web is not used: fleetrst "
         "takes the sudo password from -K or --become-password-file"),
        (f"{tmp_path}/inv.yml:6: ansible_become_method 'su' for host w1 is not supported: "
         "fleetrst only uses sudo"),
        (f"{tmp_path}/inv.yml:10: ansible_connection 'community.docker.docker' for host w1 is not "
         "supported: fleetrst connects over SSH"),
        (f"{tmp_path}/inv.yml:11: ansible_host_key_checking False for host w1 is not used: "
         "fleetrst always checks host keys (--accept-new-host-keys accepts new ones)"),
        (f"{tmp_path}/inv.yml:13: ansible_timeout for host w2 is not used: fleetrst has its own "
         "connect timeout (10 s)"),
    ]
    assert [(h.connection, h.become, h.password) for h in inv.hosts] == [
        ("ssh", True, None), ("ssh", True, None)]


def test_checked_settings_that_cannot_be_rendered_do_not_stop_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h:\n      ansible_become: yes\n"
                    "      ansible_become_method: '{{ nowhere }}'\n")
    assert load_inventory(path).warnings == ()


def test_playbook_settings_are_the_ones_the_role_defines() -> None:
    defaults = Path(__file__).parents[1] / "playbooks" / "roles" / "fleetrst" / "defaults"
    assert set(yaml.safe_load((defaults / "main.yml").read_text())) == _PLAYBOOK_VARS
