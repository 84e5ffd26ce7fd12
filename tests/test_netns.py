"""Network namespaces (containers, pods): the pure parts, and analysis and reports of a recorded run.

tests/data/runs/netns-closed-port/ is the real host script's output on a host with containers
(record_netns.py): a dead-service client in the host's own namespace and another, on the same
port, in a container's namespace; a third namespace only counted (beyond --max-namespaces=1).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fleetrst import report
from fleetrst.analysis import analyze_host, analyze_run
from fleetrst.analysis.namespaces import place_trace
from fleetrst.baseline import finding_key, netns_key
from fleetrst.cli import _namespaces_spec_ok
from fleetrst.collect import HostRun, Scan, ScanOptions, local_name
from fleetrst.model import Host
from fleetrst.netns import (
    RUNTIMES_MAX,
    Netns,
    RuntimeNames,
    container_of,
    label,
    parse_cost,
    parse_crictl_pods,
    parse_crictl_ps,
    parse_netns,
    parse_ps,
    parse_runtimes,
    preflight_netns,
    runtime_text,
    select,
    why_not,
)
from fleetrst.pcap import RstPacket
from fleetrst.trace import ConnectEvent, ResetEvent, Trace

DATA = Path(__file__).parent / "data"
RUN = DATA / "runs" / "netns-closed-port"
HOST = RUN / "host0"
EXPECTED = json.loads((RUN / "expected-netns.json").read_text())
SCHEMA = Path(report.__file__).with_name("summary.schema.json")
ROLE = Path(__file__).parents[1] / "playbooks" / "roles" / "fleetrst"
HEX = "0efe4a411954f6e2a20b9f43cf3d32e1c976633845f779692f80608eb23d7ea8"
UID = "8c2d3a1e-5b4f-4c1d-9e2a-1b2c3d4e5f60"
KUBE_CONTAINERD = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
                   f"{UID.replace('-', '_')}.slice/cri-containerd-{HEX}.scope")


# --- discovery ----------------------------------------------------------------------------------


def test_the_discovery_parser_reads_a_real_preflight() -> None:
    listed = parse_netns((HOST / "netns-preflight.txt").read_text())
    inodes = EXPECTED["inodes"]
    by_inode = {ns.inode: ns for ns in listed}
    assert set(inodes.values()) < set(by_inode)
    app = by_inode[inodes["app"]]
    assert app.comm == "appcli" and app.pid and app.cmdline and "python" in app.cmdline
    assert app.container is not None and app.container.id == EXPECTED["container"]
    assert app.container.runtime == "docker" and app.state is None
    idle = by_inode[inodes["idle"]]
    assert idle.name == "idle" and idle.pid is None and idle.comm is None and idle.outrsts is None
    assert by_inode[inodes["blue"]].name == "blue" and by_inode[inodes["blue"]].comm == "bluecli"


def test_netns_txt_says_what_was_captured_and_why_not() -> None:
    table = {ns.inode: ns for ns in parse_netns((HOST / "netns.txt").read_text())}
    inodes = EXPECTED["inodes"]
    assert table[inodes["app"]].state == "captured"
    assert table[inodes["blue"]].state == table[inodes["idle"]].state == "beyond_max"
    assert [ns.state for ns in table.values()].count("self") == 1
    assert table[inodes["app"]].total is not None and table[inodes["app"]].total >= 1


def test_preflight_output_gives_the_hosts_own_namespace_and_the_list() -> None:
    section = (HOST / "netns-preflight.txt").read_text()
    stdout = ("fleetrst_remote=1\nnetns_self=4026531840\n--- ip -o link\n1: lo: <UP>\n"
              f"--- netns\n{section}")
    self_inode, listed = preflight_netns(stdout)
    assert self_inode == 4026531840
    assert [ns.inode for ns in listed] == [ns.inode for ns in parse_netns(section)]
    assert preflight_netns("fleetrst_remote=1\n") == (None, [])


def test_hostile_and_broken_discovery_lines() -> None:
    text = ("4026532001\t42\t-\t7\t-\tevil\x1b[2J\x0b<b>\tcmd\x85 with\u2028odd\n"
            "not-a-number\t1\t-\t0\t-\tx\ty\n"
            "4026532002\t\n"
            "4026532001\t43\t-\t0\t-\tdup\t-\n"
            "4026532003\tx\tname\t-\t-\t-\t-\n")
    listed = parse_netns(text)
    assert [ns.inode for ns in listed] == [4026532001, 4026532003]
    assert listed[0].comm == "evil\x1b[2J\x0b<b>" and listed[0].cmdline == "cmd\x85 with\u2028odd"
    assert listed[1].pid is None and listed[1].name == "name"


# --- containers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cgroup", "runtime", "cid", "pod"), [
    (f"/system.slice/docker-{HEX}.scope", "docker", HEX, None),
    (f"/docker/{HEX}", "docker", HEX, None),
    (f"/docker/{HEX}/init.scope", "docker", HEX, None),
    (KUBE_CONTAINERD, "containerd", HEX, UID),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{HEX}.scope", "cri-o", HEX, UID),
    (f"/kubepods/besteffort/pod{UID}/{HEX}", None, HEX, UID),
    (f"/kubepods/pod{UID}", None, None, UID),
    (f"/machine.slice/libpod-{HEX}.scope", "podman", HEX, None),
    (f"/system.slice/DOCKER-{HEX.upper()}.scope", "docker", HEX, None),
])
def test_container_ids_from_cgroup_paths(cgroup: str, runtime: str | None, cid: str | None,
                                         pod: str | None) -> None:
    c = container_of(cgroup)
    assert c is not None
    assert (c.runtime, c.id, c.pod) == (runtime, cid, pod)
    assert c.short == (cid[:12] if cid else None)


@pytest.mark.parametrize("cgroup", [
    None, "", "/", "/system.slice/sshd.service", "/user.slice/user-0.slice/session-3.scope",
    "/process_api/b79bf0b95775656bf646b5a639ade894", f"/system.slice/docker-{HEX[:-1]}.scope",
    f"/system.slice/notdocker-{HEX}.scope", f"/system.slice/docker-{HEX}.scope.evil",
    "/kubepods/podnot-a-uid", "<script>alert(1)</script>",
])
def test_other_cgroups_name_no_container(cgroup: str | None) -> None:
    assert container_of(cgroup) is None


# --- names from the runtimes' CLIs --------------------------------------------------------------

WEB = "9d1e0c6f2a7b4c3d8e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d"
SANDBOX = "4b7c2d9e1f0a3b6c5d8e7f4a1b2c3d6e5f8a9b0c7d4e1f2a3b6c5d8e9f0a1b2c"
DB = "c5e1d2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1"

# `docker ps --no-trunc --format '{{.ID}}\t{{.Names}}'` as it prints: one line each, a tab between;
# a linked container lists its link aliases too; the kubelet's Docker containers are k8s_...
DOCKER_PS = (f"{HEX}\tapi-7f9c\n"
             f"{DB}\tdb,api-7f9c/db\n"
             f"{WEB}\tk8s_web_web-0_default_{UID}_0\n"
             f"{SANDBOX}\tk8s_POD_web-0_default_{UID}_0\n")

# `crictl ps -o json` as it prints (protobuf's JSON, indented by two).
CRICTL_PS = f"""{{
  "containers": [
    {{
      "id": "{WEB}",
      "podSandboxId": "{SANDBOX}",
      "metadata": {{
        "name": "web",
        "attempt": 0
      }},
      "image": {{
        "image": "sha256:4c5e3b6d2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d",
        "annotations": {{
        }},
        "userSpecifiedImage": ""
      }},
      "imageRef": "sha256:4c5e3b6d2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d",
      "state": "CONTAINER_RUNNING",
      "createdAt": "1714039221254165717",
      "labels": {{
        "io.kubernetes.container.name": "web",
        "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": "{UID}"
      }},
      "annotations": {{
        "io.kubernetes.container.hash": "5c1b6f2e",
        "io.kubernetes.container.ports": "[{{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}}]",
        "io.kubernetes.container.restartCount": "0",
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
        "io.kubernetes.container.terminationMessagePolicy": "File",
        "io.kubernetes.pod.terminationGracePeriod": "30"
      }}
    }}
  ]
}}
"""

# `crictl pods -o json` as it prints.
CRICTL_PODS = f"""{{
  "items": [
    {{
      "id": "{SANDBOX}",
      "metadata": {{
        "name": "web-0",
        "uid": "{UID}",
        "namespace": "default",
        "attempt": 0
      }},
      "state": "SANDBOX_READY",
      "createdAt": "1714039220942545606",
      "labels": {{
        "app": "web",
        "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": "{UID}"
      }},
      "annotations": {{
        "kubernetes.io/config.seen": "2024-04-25T10:00:20.942545606Z",
        "kubernetes.io/config.source": "api"
      }},
      "runtimeHandler": ""
    }}
  ]
}}
"""


def test_names_from_docker_ps() -> None:
    names, pods, pod_of = parse_ps(DOCKER_PS)
    assert names == {HEX: "api-7f9c", DB: "db", WEB: "web", SANDBOX: "POD"}
    # The kubelet's Docker names say which pod a container is in, and its name.
    assert pods == {UID: "default/web-0"} and pod_of == {WEB: UID, SANDBOX: UID}
    # podman and nerdctl print the same; a CLI that took "\t" literally, or put spaces, too.
    assert parse_ps(f"{HEX.upper()}\\tapi\n{DB}   db\n")[0] == {HEX: "api", DB: "db"}


def test_names_from_crictl() -> None:
    names, pods, pod_of = parse_crictl_ps(CRICTL_PS)
    assert names == {WEB: "web"} and pods == {UID: "default/web-0"}
    assert pod_of == {WEB: UID, SANDBOX: UID}
    assert parse_crictl_pods(CRICTL_PODS) == ({UID: "default/web-0"}, {SANDBOX: UID})
    rt = parse_runtimes(f"--- runtime crictl ps\n{CRICTL_PS}--- runtime crictl pods\n{CRICTL_PODS}")
    kube = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            f"{UID.replace('-', '_')}.slice")
    assert rt.names(container_of(f"{kube}/cri-containerd-{WEB}.scope")) == ("web", "default/web-0")
    # The pod's own namespace is its sandbox's (pause): the pod has a name, the sandbox none.
    sandbox = container_of(f"{kube}/cri-containerd-{SANDBOX}.scope")
    assert rt.names(sandbox) == (None, "default/web-0")
    # A pod uid the cgroup does not name (cgroupfs) is found through the container.
    assert rt.names(container_of(f"/system.slice/crio-{WEB}.scope")) == ("web", "default/web-0")
    assert rt.names(container_of(f"/docker/{HEX}")) == (None, None)
    assert rt.names(None) == (None, None)


def test_the_preflights_runtime_sections_are_kept_and_read_again() -> None:
    stdout = ("fleetrst_remote=1\nnetns_self=4026531840\n--- netns\n"
              f"4026532001\t42\t-\t0\t/docker/{HEX}\tpython3\tpython3 app.py\n"
              f"--- runtime docker\n{DOCKER_PS}--- runtime crictl ps\n{CRICTL_PS}"
              f"--- runtime crictl pods\n{CRICTL_PODS.rstrip()}")
    kept = runtime_text(stdout)
    assert kept.startswith("--- runtime docker\n") and "--- netns" not in kept
    assert kept.endswith("}\n") and kept.count("--- runtime ") == 3
    rt = parse_runtimes(kept)
    assert rt == parse_runtimes(stdout)
    assert rt.containers[HEX] == "api-7f9c" and rt.containers[WEB] == "web"
    assert rt.pods == {UID: "default/web-0"}
    # The namespaces' own section is not disturbed by what follows it.
    assert [ns.cgroup for ns in preflight_netns(stdout)[1]] == [f"/docker/{HEX}"]


def _crictl_listing(n: int) -> tuple[str, dict[str, str]]:
    items = [{"id": f"{i:064x}", "podSandboxId": f"{i + 10**6:064x}",
              "metadata": {"name": f"c{i}", "attempt": 0}, "state": "CONTAINER_RUNNING",
              "labels": {"io.kubernetes.pod.name": f"p{i}", "io.kubernetes.pod.namespace": "ns",
                         "io.kubernetes.pod.uid": f"{i:08x}-0000-4000-8000-{i:012x}"},
              "annotations": {"io.kubernetes.container.hash": "x" * 200}} for i in range(1, n + 1)]
    names = {f"{i:064x}": f"c{i}" for i in range(1, n + 1)}
    return json.dumps({"containers": items}, indent=2), names


@pytest.mark.parametrize("cut", [0, 1, 15, 1000, 5000, 33333, 77777, -2, -1, None])
def test_a_listing_cut_short_gives_the_entries_complete_before_the_cut(cut: int | None) -> None:
    text, names = _crictl_listing(60)
    part = text[:cut]
    # Where each entry's closing brace is: the last one before the next entry (or the array's end).
    starts = [text.index(f'"id": "{cid}"') for cid in names] + [text.rindex("]")]
    ends = [text.rindex("}", 0, nxt) for nxt in starts[1:]]
    complete = sum(1 for end in ends if end < len(part))
    # Exactly the entries wholly before the cut (the host cuts a listing at 256 KiB), in order.
    got, _, _ = parse_crictl_ps(part)
    assert list(got.items()) == list(names.items())[:complete]
    if cut in (None, -1, -2):
        assert len(got) == 60  # whole, or only the array's closing cut off
    elif cut == 33333:
        assert 0 < len(got) < 60


@pytest.mark.parametrize("text", [
    "", "\n\n", "garbage\x00\xff\u2028", "{", "[", "null", "42", '"x"', "[]", "{}",
    '{"containers": {}}', '{"containers": null}', '{"items": "x"}',
    '{"containers": [1, "x", null, [], {"id": 5}, {"id": "' + HEX + '", "metadata": "x"}]}',
    '{"containers": [{"id": "' + HEX + '", "metadata": {"name": ["x"]}, "labels": [1]}]}',
    '{"containers": [{"id": "' + HEX + '", "metadata": {"name": "a"}, '
    '"labels": {"io.kubernetes.pod.uid": 7}}]}',
    '{"items": [{"id": "' + HEX + '", "metadata": {"uid": "' + UID + '", "name": 7}}]}',
    '{"containers": [' + "[" * 200000 + "]" * 200000 + "]}",
    '{"containers": [' + "[" * 200000,
    '{"containers": [{"id": "' + HEX + '", "x": ' + "9" * 100000 + "}]}",
    '{"containers": [{"id": "../../etc", "metadata": {"name": "x"}}]}',
    f"{HEX}\n{HEX}\t\n\tname\n../x\tname\n{'a' * 63}\tshort\n{'g' * 64}\tnothex\n",
])
def test_garbage_and_wrong_types_give_no_names_and_no_error(text: str) -> None:
    for runtime in ("docker", "crictl ps", "crictl pods", "podman", "nerdctl", "other"):
        rt = parse_runtimes(f"--- runtime {runtime}\n{text}\n--- runtime {runtime}\n")
        # Whatever came through is a well-formed id and a non-empty name.
        for cid, name in rt.containers.items():
            assert len(cid) == 64 and int(cid, 16) >= 0 and name and isinstance(name, str)
        for uid, pod in rt.pods.items():
            assert len(uid) == 36 and pod and isinstance(pod, str)
    assert parse_runtimes(None) == RuntimeNames()


def test_a_huge_listing_is_read_only_so_far_and_names_are_cut_short() -> None:
    line = f"{HEX}\t{'n' * 5000}\n"
    rt = parse_runtimes("--- runtime docker\n" + line + "x" * (RUNTIMES_MAX + 10)
                        + f"\n--- runtime podman\n{DB}\tlate\n")
    assert rt.containers == {HEX: "n" * 253}  # the podman section lies beyond what is read


# --- the choice ---------------------------------------------------------------------------------


def _ns(inode: int, name: str | None = None, cgroup: str | None = None) -> Netns:
    return Netns(inode, 100 + inode % 100, name, 0, cgroup, "x", None)


LISTED = [_ns(4026531840), _ns(4026532001, "blue"),
          _ns(4026532002, cgroup=f"/system.slice/docker-{HEX}.scope"),
          _ns(4026532003, cgroup=f"/kubepods/pod{UID}/{'ab' * 32}")]


@pytest.mark.parametrize(("spec", "arg", "notes"), [
    ("all", "all", 0), ("host", "host", 0), (" all ", "all", 0),
    ("4026532001", "4026532001", 0),
    ("blue", "4026532001", 0),
    (HEX[:12], "4026532002", 0),
    (HEX[:12].upper(), "4026532002", 0),
    (UID[:8], "4026532003", 0),
    ("blue,4026532002,blue", "4026532001,4026532002", 0),
    ("4026531840", "0", 1),  # the host's own is never a namespace to capture inside
    ("nosuch", "0", 1),
    ("abc", "0", 1),  # too short a prefix to mean a container
    ("blue,nosuch", "4026532001", 1),
])
def test_namespaces_option_becomes_the_host_scripts_argument(spec: str, arg: str, notes: int) -> None:
    got, said = select(spec, LISTED, 4026531840)
    assert got == arg
    assert len(said) == notes


# What `docker ps` and crictl call LISTED's containers: 4026532002 is the Docker container api-7f9c,
# 4026532003 the pod default/web-0 (crictl's listing names the pod; its container is "web").
NAMED = parse_runtimes(f"--- runtime docker\n{DOCKER_PS}--- runtime crictl pods\n{CRICTL_PODS}")


@pytest.mark.parametrize(("spec", "arg", "notes"), [
    ("api-7f9c", "4026532002", 0),
    ("default/web-0", "4026532003", 0),
    ("web-0", "4026532003", 0),  # a pod by its name alone
    ("api-7f9c,web-0,blue", "4026532002,4026532003,4026532001", 0),
    ("db", "0", 1),  # a container the runtime lists whose namespace is not on the list
    ("other/web-0", "0", 1),
    ("API-7F9C", "0", 1),  # names are matched exactly
])
def test_namespaces_are_chosen_by_the_runtimes_names(spec: str, arg: str, notes: int) -> None:
    got, said = select(spec, LISTED, 4026531840, NAMED)
    assert (got, len(said)) == (arg, notes)
    # Without the runtimes' listings a name chooses nothing, and says so.
    if "blue" not in spec:
        unmatched = [f"--namespaces: {x} matches no network namespace on this host"
                     for x in spec.split(",")]
        assert select(spec, LISTED, 4026531840) == ("0", unmatched)


def test_the_ansible_filters_choose_as_fleetrst_does() -> None:
    spec = importlib.util.spec_from_file_location("fleetrst_filters",
                                                  ROLE / "filter_plugins" / "fleetrst_filters.py")
    assert spec is not None and spec.loader is not None
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    lines = "\n".join(f"{ns.inode}\t{ns.pid}\t{ns.name or '-'}\t0\t{ns.cgroup or '-'}\tx\t-"
                      for ns in LISTED)
    stdout = ("fleetrst_remote=1\nuid=0\ntool.tcpdump=/t\nnetns_self=4026531840\n--- ip -o link\n"
              f"1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n--- netns\n{lines}\n"
              f"--- runtime docker\n{DOCKER_PS}--- runtime crictl ps\n{CRICTL_PS}"
              f"--- runtime crictl pods\n{CRICTL_PODS}")
    names = parse_runtimes(runtime_text(stdout))
    for spec_text in ("all", "host", "blue", HEX[:12], UID[:8], "blue,nosuch", "nosuch", "api-7f9c",
                      "default/web-0", "web-0,blue", "db", "web", "other/web-0"):
        got = filters.fleetrst_preflight(stdout, "all", None, spec_text)
        assert got["ns"] == select(spec_text, LISTED, 4026531840, names)[0], spec_text
        assert got["notes"] == select(spec_text, LISTED, 4026531840, names)[1], spec_text
        assert got["facts"]["network_namespaces"] == 3
    partial = filters.fleetrst_preflight(stdout.replace("uid=0", "uid=1000"), "all", None, "all")
    assert partial["ns"] == "none"


@pytest.mark.parametrize(("spec", "ok"), [
    ("all", True), ("host", True), ("4026532001,blue", True), (HEX, True), ("a.b-c_d", True),
    ("default/web-0,api", True), ("k" * 253, True),
    ("", False), ("a,,b", False), ("-x", False), ("a b", False), ("x;id", False), ("$(id)", False),
    ("/x", False), ("a/", False), ("a/b/c", False), ("../x", False), ("k" * 254, False),
])
def test_the_cli_checks_the_namespaces_option(spec: str, ok: bool) -> None:
    assert _namespaces_spec_ok(spec) is ok


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("remote", "local"), [
    ("rst-lo.pcap", "rst-lo.pcap"),
    ("counters-start.txt", "counters-start.txt"),
    ("ns4026532981.counters-start.txt", "netns/4026532981/counters-start.txt"),
    ("ns4026532981.rst-eth0.pcap", "netns/4026532981/rst-eth0.pcap"),
    ("ns4026532981.rst-if7.pcap", "netns/4026532981/rst-if7.pcap"),
    ("nsx.txt", "nsx.txt"),
    ("ns.txt", "ns.txt"),
])
def test_local_name_puts_a_namespaces_files_in_its_folder(remote: str, local: str) -> None:
    assert local_name(remote) == Path(local)
    assert not local_name(remote).is_absolute()


@pytest.mark.parametrize("remote", [
    "", ".", "..", ".hidden", "a/b", "../x", "/etc/passwd", "ns1/../x", "ns123.ns456.x", "netns",
    "ns1.", "x\x00y", "a" * 300, "with space", "ns12.../x",
])
def test_local_name_refuses_what_could_leave_the_folder(remote: str) -> None:
    if remote == "ns1.":
        assert local_name(remote) == Path("ns1.")  # a plain (odd) name, not a namespace's
        return
    with pytest.raises(ValueError):
        local_name(remote)


def test_the_ansible_recorder_stores_files_as_fleetrst_does() -> None:
    pytest.importorskip("ansible")
    spec = importlib.util.spec_from_file_location("fleetrst_record",
                                                  ROLE / "library" / "fleetrst_record.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("rst-lo.pcap", "ns4026532981.counters-start.txt", "ns4026532981.rst-lo.pcap",
                 "nsx.txt", "..", ".x", "a/b", "ns1.ns2.x", "netns"):
        try:
            expected: str | None = str(local_name(name))
        except ValueError:
            expected = None
        assert module.local_name(name) == expected, name


def test_cost_is_read_from_a_real_run() -> None:
    cost = parse_cost((HOST / "cost.txt").read_text())
    assert cost["namespaces_counted"] == 3 and cost["namespaces_captured"] == 1
    assert cost["tcpdumps"] == 2
    assert cost["cpu_s"] == pytest.approx(cost["script_user_s"] + cost["script_sys_s"]
                                          + cost["children_user_s"] + cost["children_sys_s"], abs=0.01)
    for key in ("start_counters_s", "end_counters_s", "start_sockets_s", "choose_s"):
        assert 0 <= cost[key] < 5
    assert parse_cost("garbage\n--- times\nnot times\n") == {}


# --- the kernel's reasons across namespaces -----------------------------------------------------


def _rst(ts: float, sport: int, dport: int, src: str = "127.0.0.1") -> RstPacket:
    return RstPacket(ts, "lo", None, None, 4, src, sport, "127.0.0.1", dport, 0, 1, 0x14, 0, 0, 0, None)


def _ev(ts: float, sport: int, dport: int) -> ResetEvent:
    return ResetEvent(ts, "x", 1, "127.0.0.1", sport, "127.0.0.1", dport, "TCP_CLOSE", "NO_SOCKET")


def test_trace_events_go_to_the_namespace_whose_packets_they_match() -> None:
    host = [_rst(10.0, 7211, 40001)]
    app = [_rst(10.05, 7211, 40002), _rst(11.0, 7211, 40001)]
    trace = Trace([_ev(10.001, 7211, 40001), _ev(10.051, 7211, 40002), _ev(11.0, 7211, 40001),
                   _ev(10.5, 7211, 40001), _ev(12.0, 9999, 1)],
                  [ConnectEvent(9.9995, "hostcli", 5, "127.0.0.1", "127.0.0.1", 7211),
                   ConnectEvent(10.0495, "appcli", 6, "127.0.0.1", "127.0.0.1", 7211),
                   ConnectEvent(10.025, "between", 7, "127.0.0.1", "127.0.0.1", 7211)],
                  0, True)
    placed, ambiguous, unplaced = place_trace(trace, {None: host, 7: app})
    assert [e.ts for e in placed[None].resets] == [10.001]
    assert [e.ts for e in placed[7].resets] == [10.051, 11.0]
    # 10.5: the same flow in both namespaces, as near in time; 12.0: no packet anywhere.
    assert ambiguous == 1 and unplaced == 1
    assert [c.comm for c in placed[None].connects] == ["hostcli"]
    assert [c.comm for c in placed[7].connects] == ["appcli"]  # "between": both as soon
    _, _, unplaced_in_window = place_trace(trace, {None: host, 7: app}, (9.0, 11.5))
    assert unplaced_in_window == 0
    # Without wall-clock sync only the flow can tell: one seen in two namespaces is ambiguous.
    unsynced = Trace(trace.resets, [], 0, False)
    placed, ambiguous, _ = place_trace(unsynced, {None: host, 7: app})
    assert [e.ts for e in placed[7].resets] == [10.051] and ambiguous == 3


def _placed_by_brute_force(trace: Trace, packets: dict[Any, list[Any]]) -> tuple[dict[Any, list[float]],
                                                                                dict[Any, list[str]], int, int]:
    """What place_trace must give, by looking at every packet for every event."""
    from fleetrst.analysis.namespaces import APART_S, JOIN_S

    def pick(cands: list[tuple[float, Any]]) -> list[Any]:
        best: dict[Any, float] = {}
        for d, k in cands:
            best[k] = min(best.get(k, d), d)
        if not best:
            return []
        first = min(best.values())
        apart = APART_S if trace.synced else float("inf")
        return [k for k, d in best.items() if d - first <= apart]

    everything = [(p, k) for k, pkts in packets.items() for p in pkts]
    resets: dict[Any, list[float]] = {k: [] for k in packets}
    connects: dict[Any, list[str]] = {k: [] for k in packets}
    ambiguous = unplaced = 0
    for e in trace.resets:
        cands = [(abs(p.ts - e.ts), k) for p, k in everything
                 if (p.src, p.sport, p.dst, p.dport) == (e.src, e.sport, e.dst, e.dport)]
        if not cands and e.dport == 0:
            cands = [(abs(p.ts - e.ts), k) for p, k in everything if (p.src, p.sport) == (e.src, e.sport)]
        if trace.synced:
            cands = [(d, k) for d, k in cands if d < JOIN_S]
        keys = pick(cands)
        if len(keys) == 1:
            resets[keys[0]].append(e.ts)
        elif keys:
            ambiguous += 1
        else:
            unplaced += 1
    for c in trace.connects:
        cands = [(abs(p.ts - c.ts), k) for p, k in everything
                 if (p.src, p.sport) == (c.dst, c.dport) and (not c.src or p.dst == c.src)
                 and (not trace.synced or -0.05 <= p.ts - c.ts < 1.5)]
        keys = pick(cands)
        if len(keys) == 1:
            connects[keys[0]].append(c.comm)
    return resets, connects, ambiguous, unplaced


@pytest.mark.parametrize("synced", [True, False])
def test_trace_placement_matches_looking_at_every_packet(synced: bool) -> None:
    import random

    seed = random.SystemRandom().randrange(1, 2**31)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(40):
        # Few ports and times on a coarse grid: many flows in several namespaces, many ties.
        ports = [rng.choice([7211, 9, 8080]) for _ in range(3)]
        packets = {k: [_rst(round(rng.uniform(0, 3), 3 if rng.random() < 0.5 else 2),
                            rng.choice(ports), rng.choice([40001, 40002, 40003]))
                       for _ in range(rng.randrange(0, 30))]
                   for k in (None, 7, 8)}
        resets = [_ev(round(rng.uniform(-0.5, 3.5), 3), rng.choice(ports),
                      rng.choice([40001, 40002, 40003, 0])) for _ in range(40)]
        connects = [ConnectEvent(round(rng.uniform(-0.5, 3.5), 3), f"c{i}", i,
                                 rng.choice(["127.0.0.1", ""]), "127.0.0.1", rng.choice(ports))
                    for i in range(40)]
        trace = Trace(resets, connects, 0, synced)
        placed, ambiguous, unplaced = place_trace(trace, packets)
        want_resets, want_connects, want_ambiguous, want_unplaced = _placed_by_brute_force(trace, packets)
        assert {k: [e.ts for e in t.resets] for k, t in placed.items()} == want_resets, seed
        assert {k: [c.comm for c in t.connects] for k, t in placed.items()} == want_connects, seed
        assert (ambiguous, unplaced) == (want_ambiguous, want_unplaced), seed


def test_a_flood_of_refusals_from_one_port_is_placed_without_scanning_it_per_event() -> None:
    # 20,000 refusals from 127.0.0.1:9 and as many connect()s to it (10,000/s): every event
    # looking at every packet would be 4e8 comparisons (minutes); this ends in about a second.
    n = 20_000
    packets = {None: [_rst(i / 10_000, 9, 30_000 + i % 30_000) for i in range(0, n, 2)],
               7: [_rst(i / 10_000, 9, 30_000 + i % 30_000) for i in range(1, n, 2)]}
    trace = Trace([_ev(i / 10_000 + 0.00002, 9, 30_000 + i % 30_000) for i in range(n)],
                  [ConnectEvent(i / 10_000 - 0.00003, "cli", 1, "127.0.0.1", "127.0.0.1", 9)
                   for i in range(n)], 0, True)
    placed, ambiguous, unplaced = place_trace(trace, packets)
    assert unplaced == 0
    assert len(placed[None].resets) + len(placed[7].resets) + ambiguous == n
    assert len(placed[None].connects) + len(placed[7].connects) <= n


# --- a recorded run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzed() -> dict[str, Any]:
    return analyze_host(HOST, {})


def _rate_ok(f: dict[str, Any], rate: float) -> bool:
    return 0.6 * rate <= f["per_s"] <= 1.4 * rate


def test_each_namespace_is_analyzed_like_a_host(analyzed: dict[str, Any]) -> None:
    inodes = EXPECTED["inodes"]
    own = [f for f in analyzed["findings"] if f["netns"] is None]
    theirs = [f for f in analyzed["findings"] if f["netns"] is not None]
    # The host's own: its client, its own 127.0.0.1:7211, named from the trace placed here.
    (exp,) = EXPECTED["host"]
    (f,) = own
    assert (f["kind"], f["interface"], f["local"], f["reason"]) == (
        exp["kind"], exp["interface"], exp["local"], exp["reason"])
    assert f["process"]["name"] == exp["process"] and _rate_ok(f, exp["rate"])
    assert "container" not in f["summary"]
    # The container: the same port on its own lo, its own client, its own counters.
    app = [f for f in theirs if f["netns"]["inode"] == inodes["app"]]
    (exp,) = EXPECTED["namespaces"]["app"]["findings"]
    (g,) = app
    assert (g["kind"], g["interface"], g["local"], g["reason"]) == (
        exp["kind"], exp["interface"], exp["local"], exp["reason"])
    assert g["process"]["name"] == exp["process"] and _rate_ok(g, exp["rate"])
    assert g["netns"]["container"] == EXPECTED["container"]
    assert g["netns"]["comm"] == "appcli" and isinstance(g["netns"]["pid"], int)
    assert g["summary"].startswith(f"container {EXPECTED['container'][:12]}, pid ")
    assert "(appcli), on its own lo: 127.0.0.1:7211" in g["summary"]
    # Neither leaks into the other: the host's counters and packets are its own.
    assert f["count"] < g["count"]
    assert analyzed["counters"]["OutRsts"]["delta"] == f["count"]
    rows = {r["inode"]: r for r in analyzed["namespaces"]["items"]}
    assert rows[inodes["app"]]["sent"] == g["count"]
    assert rows[inodes["app"]]["resets"]["sent"] == g["count"]
    assert analyzed["resets"]["sent"] == f["count"]


def test_a_namespace_only_counted_says_why(analyzed: dict[str, Any]) -> None:
    inodes = EXPECTED["inodes"]
    rows = {r["inode"]: r for r in analyzed["namespaces"]["items"]}
    blue = rows[inodes["blue"]]
    assert blue["captured"] is False and blue["not_captured"] == "beyond --max-namespaces=1"
    assert blue["sent"] and blue["sent"] > 0 and blue["name"] == "blue"
    (f,) = [f for f in analyzed["findings"] if f["netns"] and f["netns"]["inode"] == inodes["blue"]]
    assert f["kind"] == "counters_only" and f["count"] == blue["sent"]
    assert "netns blue" in f["summary"] and "not captured: beyond --max-namespaces=1" in f["summary"]
    assert "--namespaces" in f["next_step"]
    idle = rows[inodes["idle"]]
    assert idle["sent"] == 0 and idle["findings"] == 0 and idle["pid"] is None
    assert analyzed["namespaces"]["counted"] == 3 and analyzed["namespaces"]["captured"] == 1
    # The reasons of blue's resets were traced, but its packets were not captured.
    assert any("match no captured packet" in w and "netns blue" in w for w in analyzed["warnings"])
    assert analyzed["cost"]["namespaces_captured"] == 1


def test_the_summary_of_a_run_with_namespaces_is_valid(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    summary = analyze_run(run)
    jsonschema.validate(summary, json.loads(SCHEMA.read_text()))
    host = summary["hosts"][0]
    assert all("netns" in f for f in host["findings"])
    # A namespace's `netns` must be an object: a broken one is caught.
    broken = json.loads(json.dumps(summary))
    broken["hosts"][0]["findings"][0]["netns"] = "4026532317"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


def test_the_host_page_lists_the_namespaces_and_the_cost(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    summary = analyze_run(run)
    report.write_reports(run, summary)
    page = (run / "host0" / "report.html").read_text()
    section = page[page.index('id="namespaces"'):]
    assert f"container {EXPECTED['container'][:12]}" in section
    assert "netns blue" in section and "beyond --max-namespaces=1" in section
    assert f'href="netns/{EXPECTED["inodes"]["app"]}/rst-lo.pcap"' in section
    assert "1 quiet, uncaptured one is not listed" in section
    assert 'id="cost"' in page and "Host-side cost" in page
    # The finding cards name their namespace; the host's own carry none.
    assert page.count('class="chip netns"') == 2
    junit = (run / "junit.xml").read_text()
    assert f"container {EXPECTED['container'][:12]}" in junit


def test_hostile_namespace_text_is_shown_as_text(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    netns = run / "host0" / "netns.txt"
    evil = "<script>alert(1)</script>\x1b[2J"
    lines = []
    for line in netns.read_text().split("\n"):
        f = line.split("\t")
        if len(f) >= 9 and f[2] == "blue":
            f[2] = "blue<b>"  # not a name capture.sh would print, but hostile all the same
            f[7] = evil
            f[8] = "python3 -c '<img src=x onerror=alert(2)>'"
        lines.append("\t".join(f))
    netns.write_text("\n".join(lines))
    summary = analyze_run(run)
    report.write_reports(run, summary)
    page = (run / "host0" / "report.html").read_text()
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    text = json.loads((run / "summary.json").read_text())
    assert any(f["netns"] and f["netns"]["comm"] == evil for f in text["hosts"][0]["findings"])


def _named_run(tmp_path: Path, name: str) -> Path:
    """The recorded run with a containers.txt as the host keeps it, naming its container."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    (run / "host0" / "containers.txt").write_text(
        f"--- runtime docker\n{EXPECTED['container']}\t{name}\n{DB}\tother\n")
    return run


def test_findings_and_the_namespaces_table_name_the_container_by_its_runtimes_name(
        tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    run = _named_run(tmp_path, "api-7f9c")
    summary = analyze_run(run)
    jsonschema.validate(summary, json.loads(SCHEMA.read_text()))
    host = summary["hosts"][0]
    inodes = EXPECTED["inodes"]
    (g,) = [f for f in host["findings"] if f["netns"] and f["netns"]["inode"] == inodes["app"]]
    assert g["netns"]["container_name"] == "api-7f9c" and g["netns"]["pod_name"] is None
    assert g["netns"]["container"] == EXPECTED["container"]
    short = EXPECTED["container"][:12]
    assert g["summary"].startswith(f"container api-7f9c ({short}), pid ")
    rows = {r["inode"]: r for r in host["namespaces"]["items"]}
    assert rows[inodes["app"]]["container_name"] == "api-7f9c"
    # Namespaces no runtime named keep their own names, and say so with null.
    blue = rows[inodes["blue"]]
    assert blue["container_name"] is None and blue["pod_name"] is None
    report.write_reports(run, summary)
    page = (run / "host0" / "report.html").read_text()
    section = page[page.index('id="namespaces"'):]
    assert f"container api-7f9c ({short})" in section
    assert f'title="container {EXPECTED["container"]}"' in section
    assert f"container api-7f9c ({short})" in page[:page.index('id="namespaces"')]  # the chip
    assert f"container api-7f9c ({short})" in (run / "junit.xml").read_text()


def test_without_containers_txt_names_are_null(analyzed: dict[str, Any]) -> None:
    for f in analyzed["findings"]:
        if f["netns"] is not None:
            assert f["netns"]["container_name"] is None and f["netns"]["pod_name"] is None


def test_a_hostile_container_name_is_shown_as_text(tmp_path: Path) -> None:
    evil = "<script>alert(3)</script>\x1b[2J"
    run = _named_run(tmp_path, evil)
    summary = analyze_run(run)
    report.write_reports(run, summary)
    page = (run / "host0" / "report.html").read_text()
    assert "<script>alert(3)" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;\\x1b[2J" in page
    text = json.loads((run / "summary.json").read_text())
    findings = text["hosts"][0]["findings"]
    assert any(f["netns"] and f["netns"]["container_name"] == evil for f in findings)


def test_the_scan_keeps_the_preflights_listing_for_a_host_whose_run_never_got_there(
        tmp_path: Path) -> None:
    hr = HostRun(Host(name="h", address="198.18.0.9"), "h", "t")
    hr.runtimes = runtime_text(f"--- netns\n--- runtime docker\n{HEX}\tapi\n")
    scan = Scan([], ScanOptions(out=tmp_path / "run", known_hosts=tmp_path / "known_hosts"))
    (tmp_path / "run" / "h").mkdir(parents=True)
    scan._write_host_json(hr)
    kept = tmp_path / "run" / "h" / "containers.txt"
    assert kept.read_text() == f"--- runtime docker\n{HEX}\tapi\n"
    # The fetched copy, when there is one, wins.
    kept.write_text("fetched")
    scan._write_host_json(hr)
    assert kept.read_text() == "fetched"


def test_baseline_matches_a_namespace_across_restarts() -> None:
    a = {"kind": "local_dead_service", "interface": "lo", "local": "127.0.0.1:7211",
         "netns": {"inode": 4026532317, "pid": 6, "container": HEX, "name": None, "comm": "x"}}
    b = {**a, "netns": {**a["netns"], "inode": 4026532999, "pid": 77}}
    assert finding_key(a) == finding_key(b)
    assert finding_key(a) != finding_key({**a, "netns": None})
    assert finding_key(a) != finding_key({**a, "netns": {**a["netns"], "container": "ab" * 32}})
    assert netns_key(None) is None and netns_key({"name": "blue"}) == "netns blue"
    assert netns_key({"inode": 5, "comm": "nginx"}) == "process nginx"


def test_labels_and_reasons() -> None:
    assert label(None) == "the host's own namespace"
    assert label({"inode": 7, "pid": 5, "comm": "a"}) == "netns 7, pid 5 (a)"
    assert label({"inode": 7, "name": "blue", "pid": None}) == "netns blue"
    assert label({"inode": 7, "container": HEX, "pod": UID, "pid": 5, "comm": "pause"}) == (
        f"pod {UID[:8]}, container {HEX[:12]}, pid 5 (pause)")
    # The runtime's names first, the ids still beside them.
    assert label({"inode": 7, "container": HEX, "container_name": "api-7f9c", "pid": 4121,
                  "comm": "python3"}) == f"container api-7f9c ({HEX[:12]}), pid 4121 (python3)"
    assert label({"inode": 7, "container": HEX, "pod": UID, "pod_name": "default/web-0",
                  "container_name": "web", "pid": 5, "comm": "nginx"}, with_pid=False) == (
        f"pod default/web-0, container web ({HEX[:12]})")
    assert label({"inode": 7, "container": HEX, "pod": UID, "pod_name": "default/web-0",
                  "container_name": None}) == f"pod default/web-0, container {HEX[:12]}"
    assert why_not("beyond_max", "all", 16) == "beyond --max-namespaces=16"
    assert why_not("host_only") == "--namespaces host"
    assert why_not("not_selected", "blue") == "not in --namespaces blue"
    assert why_not("captured") is None
