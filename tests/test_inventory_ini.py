"""INI and dynamic inventories, and every kind checked against Ansible's own reading of it.

The comparisons run ansible-core (the `test` extra installs it). Without it they are skipped,
except when CI is set: then they fail, so that a CI job cannot pass without them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from fleetrst.errors import InventoryError
from fleetrst.inventory import Inventory, ansible_env, ini_value, load_inventory
from fleetrst.model import Host

DATA = Path(__file__).parent / "data" / "inventories"
TWIN = DATA / "twin"
TWINS = ("inventory.yml", "inventory.ini")


@pytest.fixture(autouse=True)
def _ansible_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ansible's own state (~/.ansible: local temp files, caches) goes to the test's directory."""
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "ansible-home"))


def ansible_tool(name: str) -> str:
    """Path of an ansible-core command, or skip (fail under CI) when it is not installed."""
    found = shutil.which(name)
    beside = Path(sys.executable).parent / name
    if found is None and beside.is_file():
        found = str(beside)
    if found is None:
        message = f"{name} not found: install the test extra (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def run_ansible(name: str, *args: str) -> str:
    r = subprocess.run([ansible_tool(name), *args], capture_output=True, text=True,
                       env=ansible_env(), timeout=120, check=False)
    assert r.returncode == 0, f"{name} {' '.join(args)}: {r.stderr}"
    return r.stdout


@cache
def ansible_listing(path: Path) -> dict[str, Any]:
    return json.loads(run_ansible("ansible-inventory", "-i", str(path), "--list"))


def settings(host: Host) -> tuple[object, ...]:
    """What fleetrst connects with."""
    return (host.name, host.address, host.port, host.user, host.key_file, host.password,
            host.become, host.become_user, host.connection, host.groups)


def write(path: Path, text: str, executable: bool = False) -> Path:
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- INI ------------------------------------------------------------------------------------------


INI = """\
# comment
; another comment
loose1 ansible_host=198.18.0.9        # a trailing comment
loose2:2200

[all:vars]
ansible_user = ops
motd = hello world # not a comment in a vars section

[edge:children]   # children named before they are defined
web
lb

[web]
web[01:03] ansible_become=true
web02 ansible_port="2222" ansible_ssh_common_args='-o ProxyJump=ops@198.18.0.2:2222 -o X=y'

[web:vars]
http_port=8080
ratio=0.25
ports=[80, 443]
limits={'nofile': 1024}
flag=True
nothing=None
word=yes
dots=...
imaginary=1j

[lb]
lb-[a:b].example.com ansible_become=no ansible_become_user=haproxy
"""


def test_ini_sections_vars_children_ranges(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path / "hosts", INI))
    assert [h.name for h in inv.hosts] == [
        "loose1", "loose2", "web01", "web02", "web03", "lb-a.example.com", "lb-b.example.com",
    ]
    assert inv.groups == {
        "all": {h.name for h in inv.hosts},
        "ungrouped": {"loose1", "loose2"},
        "edge": {"web01", "web02", "web03", "lb-a.example.com", "lb-b.example.com"},
        "web": {"web01", "web02", "web03"},
        "lb": {"lb-a.example.com", "lb-b.example.com"},
    }
    by = {h.name: h for h in inv.hosts}
    assert (by["loose1"].address, by["loose1"].port, by["loose1"].user) == ("198.18.0.9", 22, "ops")
    assert (by["loose2"].address, by["loose2"].port) == ("loose2", 2200)
    assert by["web02"].port == 2222 and by["web01"].port == 22
    assert by["web01"].become is True and by["web01"].groups == ("edge", "web")
    assert by["lb-a.example.com"].become is False
    assert by["lb-b.example.com"].become_user == "haproxy"
    web = by["web02"].vars
    # Values as Ansible's ini plugin gives them: Python literals, else the text as written.
    assert web["ansible_become"] == "true"  # a string for Ansible too; become reads it as True
    assert web["ansible_port"] == 2222  # shlex took the quotes, the literal is a number
    assert web["ansible_ssh_common_args"] == "-o ProxyJump=ops@198.18.0.2:2222 -o X=y"
    assert web["http_port"] == 8080 and web["ratio"] == 0.25
    assert web["ports"] == [80, 443] and web["limits"] == {"nofile": 1024}
    assert web["flag"] is True and web["nothing"] is None and web["word"] == "yes"
    assert web["dots"] == "..." and web["imaginary"] == "1j"
    assert web["motd"] == "hello world # not a comment in a vars section"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", "true"), ("True", True), ("false", "false"), ("False", False), ("42", 42),
        ("-7", -7), ("0x10", 16), ("1_000", 1000), ("1e3", 1000.0), ("'42'", "42"),
        ("web01", "web01"), ("[1, 'a']", [1, "a"]), ("(1, 2)", [1, 2]), ("{1, 1}", [1]),
        ("b'x'", "x"), ("{'a': [1]}", {"a": [1]}), ("None", None), ("", ""), ("[1,", "[1,"),
        ("{[1]: 2}", "{[1]: 2}"), ("{(1, 2): (3,)}", {(1, 2): [3]}), ("1 # c", 1),
        ("a b", "a b"),
    ],
)
def test_ini_value(text: str, value: object) -> None:
    assert ini_value(text) == value
    assert type(ini_value(text)) is type(value)


def test_format_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    ini_named_yml = load_inventory(write(tmp_path / "hosts.yml", "[web]\nw1 ansible_port=2201\n"))
    assert [(h.name, h.port, h.groups) for h in ini_named_yml.hosts] == [("w1", 2201, ("web",))]
    yaml_named_ini = load_inventory(write(tmp_path / "hosts.ini", "web:\n  hosts:\n    w1:\n"))
    assert [(h.name, h.groups) for h in yaml_named_ini.hosts] == [("w1", ("web",))]
    bare = load_inventory(write(tmp_path / "hosts", "w1:2201\nw2 ansible_host=198.18.0.3\n"))
    assert [(h.name, h.address, h.port) for h in bare.hosts] == [
        ("w1", "w1", 2201), ("w2", "198.18.0.3", 22)]
    # YAML that is broken stays a YAML error (not an INI one) when it looks like YAML.
    broken = write(tmp_path / "broken", "all:\n  hosts:\n    a: b: c\n")
    with pytest.raises(InventoryError, match=r"broken:3: YAML error: mapping values"):
        load_inventory(broken)


def test_an_executable_file_without_shebang_is_read_not_run(tmp_path: Path) -> None:
    path = write(tmp_path / "inv.yml", "all:\n  hosts:\n    h1:\n", executable=True)
    assert [h.name for h in load_inventory(path).hosts] == ["h1"]


INI_ERRORS = [
    ("[web]\nw1\n[web:hostz]\n", 3, ("section [web:hostz] has unknown type 'hostz' "
     "(expected vars or children)")),
    ("[web]\nw1\n\n[web 1]\n", 4, ("invalid section '[web 1]': a section is [group], "
     "[group:vars] or [group:children], with no spaces in it")),
    ("[web]\nw1 ansible_port\n", 2,
     "host 'w1': expected key=value after the host name, got 'ansible_port'"),
    ("[web]\nw1 x='abc\n", 2, "cannot read host line \"w1 x='abc\": No closing quotation"),
    ("[web]\nw1\n[web:vars]\n# c\njustaword\n", 5, "[web:vars]: expected key=value, got 'justaword'"),
    ("[web]\nw1\n[p:children]\nweb extra\n", 4,
     "[p:children]: expected a group name, got 'web extra'"),
    ("[web]\nw1\n[db:vars]\nx=1\n", 3, ("section [db:vars] is for group 'db', which is defined "
     "nowhere (no [db] or [db:children] section)")),
    ("[web]\nw1\n[p:children]\nweb\nnope\n", 5,
     "section [p:children] names group 'nope', which is defined nowhere"),
    ("[web]\nw1:\n", 2, "host 'w1:' ends in ':', which is kept for a port number"),
    ("[web]\nw[3:1]\n", 2, "host range [3:1] runs backwards"),
    ("[web]\n../etc\n", 2, "host name '../etc' contains '/'"),
    ("[web]\n-oProxyCommand=x\n", 2, "host name '-oProxyCommand=x' starts with '-'"),
    ("[a]\nh\n[a:children]\nb\n[b:children]\na\n", 6,
     "group 'a' is listed under 'b', which is inside it (children loop)"),
    ("[a]\nh\n[a:children]\na\n", 4, "group 'a' is listed as its own child"),
    ("[web]\nw1 ansible_port=70000\n", 2,
     "host 'w1': ansible_port 70000 is not a TCP port (1-65535)"),
    ("[web]\nw1\n[web:vars]\nansible_become=maybe\n", 4,
     "host 'w1': ansible_become 'maybe' is not a boolean"),
]


@pytest.mark.parametrize(("text", "line", "message"), INI_ERRORS,
                         ids=[f"ini-error-{i}" for i in range(len(INI_ERRORS))])
def test_ini_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path / "hosts", text)
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(err.value) == f"{path}:{line}: {message}"


def test_ini_without_hosts(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts", "[web]\n[web:vars]\nx=1\n")
    with pytest.raises(InventoryError, match=r"^.*/hosts: no hosts in the inventory$"):
        load_inventory(path)


# --- the same fleet in YAML and INI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def twins() -> dict[str, Inventory]:
    return {name: load_inventory(TWIN / name) for name in TWINS}


def test_yaml_and_ini_twins_agree(twins: dict[str, Inventory]) -> None:
    yml, ini = twins["inventory.yml"], twins["inventory.ini"]
    assert [h.name for h in yml.hosts] == [h.name for h in ini.hosts] == [
        "bastion", "web01", "web02", "web03", "web04", "dba", "dbb", "dbc"]
    assert [settings(h) for h in yml.hosts] == [settings(h) for h in ini.hosts]
    assert [dict(h.vars) for h in yml.hosts] == [dict(h.vars) for h in ini.hosts]
    assert yml.groups == ini.groups
    for name in ("web:&dc1:!web03", "db:!dc2", "web_canary", "~web0[24]", "all:!web*"):
        assert [h.name for h in yml.select(name)] == [h.name for h in ini.select(name)]
    by = {h.name: h for h in ini.hosts}
    # Ranges, group_vars/ (a file and a directory), host_vars/ and the inventory itself, each
    # deciding something: ports from host_vars, the host:port pattern and group_vars/dc2.yaml;
    # the user from a template in group_vars/all.yml.
    assert [(h.address, h.port) for h in ini.hosts] == [
        ("198.18.0.2", 2222), ("198.18.0.11", 2201), ("198.18.0.12", 22), ("web03", 22),
        ("198.18.0.14", 2202), ("198.18.0.21", 22), ("198.18.0.22", 2202), ("198.18.0.23", 2223)]
    assert {h.user for h in ini.hosts} == {"ops"}
    assert by["web01"].key_file == str(TWIN / "keys" / "lab_ed25519")
    assert (by["web04"].become, by["web04"].become_user) == (True, "deploy")
    assert (by["dbc"].become, by["dbc"].become_user) == (True, "replica")
    assert by["bastion"].become is False
    assert by["web02"].vars["http_port"] == 8081  # group_vars/web/ over [web:vars]
    assert by["dba"].vars["dc"] == "db-default"  # ansible_group_priority 5 over dc1


@pytest.mark.parametrize("name", TWINS)
def test_twins_read_as_ansible_reads_them(twins: dict[str, Inventory], name: str) -> None:
    listing = ansible_listing(TWIN / name)
    hostvars = listing["_meta"]["hostvars"]
    inv = twins[name]
    assert sorted(hostvars) == sorted(h.name for h in inv.hosts)
    for host in inv.hosts:
        theirs = hostvars[host.name]
        # Every variable, with its type, after all of Ansible's precedence rules.
        assert dict(host.vars) == theirs, host.name
        assert host.address == theirs.get("ansible_host", host.name)
        assert host.port == theirs.get("ansible_port", 22)


def ansible_graph(path: Path) -> dict[str, set[str]]:
    """Group -> every host in it or below it, from `ansible-inventory --graph`."""
    members: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []
    for line in run_ansible("ansible-inventory", "-i", str(path), "--graph").splitlines():
        if not line.strip():
            continue
        # "@all:" at the top, then "  |--@group:" or "  |  |--host", three columns a level.
        pos = line.find("|--")
        depth, item = (0, line.strip()) if pos < 0 else (pos // 3 + 1, line[pos + 3:])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if item.startswith("@"):
            name = item[1:].rstrip(":")
            members.setdefault(name, set())
            stack.append((depth, name))
        else:
            for _, group in stack:
                members[group].add(item)
    return members


@pytest.mark.parametrize("name", TWINS)
def test_twin_groups_match_ansible_graph(twins: dict[str, Inventory], name: str) -> None:
    graph = ansible_graph(TWIN / name)
    assert {g: m for g, m in twins[name].groups.items() if m} == graph


LIMITS = [
    "web:&dc1:!web03", "web", "dc1", "db*", "~db[ab]", "all:!dc2", "dc2:&web_canary",
    "web,db:!dbb", "bastion", "web[0]", "web[-1]", "web[1:]", "d*:&web", "web0*:!*3",
    "dc1_web:dbc", "ungrouped", "all:&db:!~.*c$",
]


def ansible_selections(path: Path, patterns: list[str], workdir: Path) -> list[set[str]]:
    """What Ansible selects for each pattern: one play per pattern, listed without running."""
    playbook = workdir / "limits.yml"
    plays = [{"name": f"p{i}", "hosts": p, "gather_facts": False, "tasks": []}
             for i, p in enumerate(patterns)]
    playbook.write_text(json.dumps(plays))
    out = run_ansible("ansible-playbook", "-i", str(path), str(playbook), "--list-hosts")
    chunks = re.split(r"^\s*play #\d+ ", out, flags=re.MULTILINE)[1:]
    assert len(chunks) == len(patterns), out
    result = []
    for chunk in chunks:
        header = re.search(r"^\s*hosts \((\d+)\):\n((?:\s+\S+\n?)*)", chunk, re.MULTILINE)
        assert header is not None, chunk
        names = set(header[2].split())
        assert len(names) == int(header[1])
        result.append(names)
    return result


@pytest.mark.parametrize("name", TWINS)
def test_limits_select_what_ansible_selects(
    twins: dict[str, Inventory], name: str, tmp_path: Path
) -> None:
    expected = ansible_selections(TWIN / name, LIMITS, tmp_path)
    for pattern, theirs in zip(LIMITS, expected):
        ours = {h.name for h in twins[name].select(pattern)}
        assert ours == theirs, pattern


@pytest.mark.parametrize("name", TWINS)
def test_must_show_limit_with_ansible_cli(twins: dict[str, Inventory], name: str) -> None:
    limit = "web:&dc1:!web03"
    out = run_ansible("ansible", "all", "-i", str(TWIN / name), "--list-hosts", "-l", limit)
    theirs = [ln.strip() for ln in out.splitlines()[1:] if ln.strip()]
    assert out.splitlines()[0].strip() == f"hosts ({len(theirs)}):"
    assert [h.name for h in twins[name].select(limit)] == theirs == ["web01", "web02"]


def test_a_port_pattern_counts_only_where_the_host_is_first_named(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    write(tmp_path / "group_vars" / "late.yml", "ansible_port: 2300\n")
    ini = write(tmp_path / "hosts.ini", "[early]\na:2201\nb\n[late]\na\nb:2202\n")
    yml = write(tmp_path / "hosts.yml", "all:\n  children:\n    early:\n      hosts:\n"
                "        a:2201:\n        b:\n    late:\n      hosts:\n        a:\n        b:2202:\n")
    for path in (ini, yml):
        ours = {h.name: h.port for h in load_inventory(path).hosts}
        theirs = {n: v.get("ansible_port", 22)
                  for n, v in ansible_listing(path)["_meta"]["hostvars"].items()}
        assert ours == theirs == {"a": 2201, "b": 2300}, path.name


# --- dynamic inventories --------------------------------------------------------------------------


SCRIPT = """#!/bin/sh
# An inventory script, as Ansible calls it: --list prints every group, _meta the host vars.
if [ "$1" = "--host" ]; then echo '{}'; exit 0; fi
cat <<'JSON'
{"web": {"hosts": ["w1", "w2"], "vars": {"ansible_user": "ops", "ansible_port": 2200},
         "children": ["canary"]},
 "canary": {"hosts": ["w2"]},
 "db": {"hosts": ["d1"]},
 "_meta": {"hostvars": {"w1": {"ansible_host": "198.18.0.5", "ansible_port": 2201},
                        "w2": {"ansible_host": "198.18.0.6", "ansible_become": "true",
                               "ansible_become_user": "{{ svc }}", "svc": "deploy"},
                        "d1": {"ansible_host": "198.18.0.7"}}}}
JSON
"""


def test_inventory_script(tmp_path: Path) -> None:
    ansible_tool("ansible-inventory")
    inv = load_inventory(write(tmp_path / "inventory.sh", SCRIPT, executable=True))
    assert [settings(h)[:8] for h in inv.hosts] == [
        ("w1", "198.18.0.5", 2201, "ops", None, None, False, "root"),
        ("w2", "198.18.0.6", 2200, "ops", None, None, True, "deploy"),
        ("d1", "198.18.0.7", 22, None, None, None, False, "root"),
    ]
    assert inv.groups["web"] == {"w1", "w2"} and inv.groups["canary"] == {"w2"}
    assert [h.name for h in inv.select("web:!canary")] == ["w1"]
    assert [h.name for h in inv.select("all:!web")] == ["d1"]


def test_a_script_gives_what_the_static_file_gives(
    twins: dict[str, Inventory], tmp_path: Path
) -> None:
    listing = ansible_listing(TWIN / "inventory.ini")
    script = write(tmp_path / "twin.sh", "#!/bin/sh\ncat <<'JSON'\n" + json.dumps(listing)
                   + "\nJSON\n", executable=True)
    dynamic = load_inventory(script)
    static = {h.name: h for h in twins["inventory.ini"].hosts}
    assert sorted(h.name for h in dynamic.hosts) == sorted(static)
    for host in dynamic.hosts:
        twin = static[host.name]
        # Key files are taken relative to the inventory, and this one lives elsewhere.
        assert settings(host)[:4] + settings(host)[5:] == settings(twin)[:4] + settings(twin)[5:]
        assert dict(host.vars) == dict(twin.vars)
    for pattern in LIMITS:
        assert {h.name for h in dynamic.select(pattern)} == {
            h.name for h in twins["inventory.ini"].select(pattern)}, pattern


def test_inventory_plugin_configuration(tmp_path: Path) -> None:
    ansible_tool("ansible-inventory")
    config = write(tmp_path / "generated.yml", """\
plugin: ansible.builtin.generator
hosts:
  name: "{{ app }}-{{ env }}"
  parents:
    - name: "{{ app }}"
    - name: "{{ env }}"
layers:
  app: [web, api]
  env: [dev, prod]
""")
    inv = load_inventory(config)
    assert sorted(h.name for h in inv.hosts) == ["api-dev", "api-prod", "web-dev", "web-prod"]
    assert inv.groups["web"] == {"web-dev", "web-prod"}
    assert [h.name for h in inv.select("prod:&api")] == ["api-prod"]


def test_a_failing_script_is_one_clear_line(tmp_path: Path) -> None:
    ansible_tool("ansible-inventory")
    script = write(tmp_path / "broken.sh", "#!/bin/sh\necho 'cannot reach the CMDB' >&2\nexit 3\n",
                   executable=True)
    with pytest.raises(InventoryError) as err:
        load_inventory(script)
    assert str(err.value) == (
        f"{script}: ansible-inventory failed (exit 1): Inventory script returned non-zero exit "
        "code 3. (it said: cannot reach the CMDB)"
    )


def test_an_unknown_plugin_is_one_clear_line(tmp_path: Path) -> None:
    ansible_tool("ansible-inventory")
    config = write(tmp_path / "cloud.yml", "plugin: example.nowhere.cloud\n")
    with pytest.raises(InventoryError) as err:
        load_inventory(config)
    message = str(err.value)
    assert message.startswith(f"{config}: ansible-inventory failed (exit 1): ")
    assert "example.nowhere.cloud" in message and "\n" not in message


def test_without_ansible_dynamic_sources_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python3"))
    script = write(tmp_path / "inventory.sh", SCRIPT, executable=True)
    with pytest.raises(InventoryError) as err:
        load_inventory(script)
    assert str(err.value) == (
        f"{script}: an inventory script, which only Ansible can read, and ansible-inventory is "
        "not installed (pip install ansible-core)"
    )
    config = write(tmp_path / "aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    with pytest.raises(InventoryError, match=r"^.*aws_ec2\.yml: an inventory plugin configuration "
                       r"\(amazon\.aws\.aws_ec2\), which only Ansible can read, and "
                       r"ansible-inventory is not installed \(pip install ansible-core\)$"):
        load_inventory(config)
    # Static files need no Ansible at all.
    assert len(load_inventory(TWIN / "inventory.ini").hosts) == 8


# --- variables fleetrst does not know -------------------------------------------------------------


UNKNOWN_INI = """\
[web]
web[01:03] ansible_usr=deploy
web02 ansible_prot=2222 app_role=cache

[web:vars]
ansible_python_interpreter=/usr/bin/python3
ansible_become_pass=secret
fleetrst_duratoin=60

[win]
w1 ansible_connection=winrm ansible_winrm_transport=ntlm
"""


def test_ini_unknown_variables_once_per_line_they_are_set(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    write(tmp_path / "group_vars" / "win.yml", "ansible_sudo_user: admin\nwin_role: dc\n")
    path = write(tmp_path / "hosts", UNKNOWN_INI)
    inv = load_inventory(path)
    assert list(inv.warnings) == [
        # One line for the whole range, however many hosts it names.
        f"{path}:2: unknown variable ansible_usr for host web01 (did you mean ansible_user?)",
        f"{path}:3: unknown variable ansible_prot for host web02 (did you mean ansible_port?)",
        (f"{path}:7: ansible_become_pass for group web is not used: fleetrst takes the sudo "
         "password from -K or --become-password-file"),
        (f"{path}:8: unknown variable fleetrst_duratoin for group web "
         "(did you mean fleetrst_duration?)"),
        (f"{path}:11: ansible_connection 'winrm' for host w1 is not supported: "
         "fleetrst connects over SSH"),
        (f"{tmp_path / 'group_vars' / 'win.yml'}:1: ansible_sudo_user for group win is not "
         "used: fleetrst reads ansible_become_user"),
    ]
    assert [h.port for h in inv.hosts] == [22, 22, 22, 22]


def test_ini_twins_have_no_warnings(twins: dict[str, Inventory]) -> None:
    assert [twin.warnings for twin in twins.values()] == [(), ()]


UNKNOWN_SCRIPT = """#!/bin/sh
cat <<'JSON'
{"web": {"hosts": ["w1", "w2"], "vars": {"ansible_prot": 2222}},
 "_meta": {"hostvars": {"w1": {"ansible_usr": "ops"}, "w2": {"ansible_usr": "ops",
                                                            "app_role": "db"}}}}
JSON
"""


def test_dynamic_inventory_unknown_variables_name_the_source(tmp_path: Path) -> None:
    ansible_tool("ansible-inventory")
    script = write(tmp_path / "inventory.sh", UNKNOWN_SCRIPT, executable=True)
    # ansible-inventory hands over every host's merged variables, with no file or line: one
    # warning per variable for the whole source.
    assert load_inventory(script).warnings == (
        f"{script}: unknown variable ansible_prot for host w1 (did you mean ansible_port?)",
        f"{script}: unknown variable ansible_usr for host w1 (did you mean ansible_user?)",
    )
