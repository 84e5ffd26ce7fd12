"""Fact parsers on outputs captured from a real kernel (see tests/data/facts/capture.py).

The capture made, in a fresh network namespace: 5 refused connects to 127.0.0.1:7211, 3 to
[::1]:7211, 1 refused by the peer namespace (198.18.0.2:2223), 2 SO_LINGER {1, 0} aborts and one
close with unread data, all on loopback; and left listeners owned by processes with hostile names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetrst.facts import (
    KEY_COUNTERS,
    CounterSnapshot,
    Proc,
    ProcInfo,
    Socket,
    SocketTable,
    counter_deltas,
    parse_counters_file,
    parse_ip_addr,
    parse_ip_link,
    parse_proc_net,
    parse_sockets_file,
    parse_ss,
)

DATA = Path(__file__).parent / "data" / "facts"


def read(name: str) -> str:
    return (DATA / name).read_text()


def raw_section(text: str, name: str) -> str:
    """The raw body of one "--- NAME" section of a captured file."""
    body = text.split(f"--- {name}\n", 1)[1]
    return body.split("\n--- ", 1)[0]


# --- counters ------------------------------------------------------------------------------------


def test_proc_net_snmp_headers_and_values() -> None:
    values = parse_proc_net(raw_section(read("counters-end.txt"), "/proc/net/snmp"))
    # IcmpMsg lines only exist once some ICMP type was counted: none in a fresh namespace.
    assert set(values) == {"Ip", "Icmp", "Tcp", "Udp", "UdpLite"}
    assert values["Tcp"]["RtoAlgorithm"] == 1
    assert values["Tcp"]["MaxConn"] == -1
    assert values["Tcp"]["OutRsts"] == 11
    assert values["Ip"]["DefaultTTL"] == 64


def test_proc_net_snmp_of_a_used_host() -> None:
    values = parse_proc_net(raw_section(read("counters-host.txt"), "/proc/net/snmp"))
    assert "IcmpMsg" in values and all(k.startswith(("In", "Out")) for k in values["IcmpMsg"])
    assert values["Tcp"]["ActiveOpens"] >= 0


def test_proc_net_netstat() -> None:
    values = parse_proc_net(raw_section(read("counters-end.txt"), "/proc/net/netstat"))
    assert {"TcpExt", "IpExt", "MPTcpExt"} <= set(values)
    assert values["TcpExt"]["TCPAbortOnData"] == 2
    assert values["TcpExt"]["TCPAbortOnClose"] == 1
    assert values["TcpExt"]["ListenOverflows"] == 0
    assert len(values["TcpExt"]) > 100


def test_proc_net_snmp6() -> None:
    values = parse_proc_net(raw_section(read("counters-end.txt"), "/proc/net/snmp6"))
    assert set(values) == {"Ip6", "Icmp6", "Udp6", "UdpLite6"}
    assert values["Ip6"]["InReceives"] > 0  # the IPv6 loopback connects
    assert "InDatagrams" in values["Udp6"] and "InDatagrams" in values["UdpLite6"]
    assert "InMsgs" in values["Icmp6"]


def test_proc_net_tolerates_garbage_and_short_lines() -> None:
    text = "Tcp: A B C\nTcp: 1 -2\nnonsense\nFoo: 1 2\nIp6Odd x\n\n"
    assert parse_proc_net(text) == {"Tcp": {"A": 1, "B": -2}}


def test_counters_file_time_and_merged_sections() -> None:
    snap = parse_counters_file(read("counters-start.txt"))
    assert snap.time is not None and snap.time > 1.7e9
    assert {"Tcp", "TcpExt", "IpExt", "Ip6", "Udp6"} <= set(snap.values)
    assert snap.get("OutRsts") == 0
    assert snap.get("TCPAbortOnData") == 0  # found in TcpExt
    assert snap.get("TcpExt:ListenDrops") == 0
    assert snap.get("NoSuchCounter") is None


def test_counters_file_missing_sections_and_time() -> None:
    snap = parse_counters_file("# fleetrst counters\n--- /proc/net/snmp\nTcp: OutRsts\nTcp: 4\n")
    assert snap == CounterSnapshot(time=None, values={"Tcp": {"OutRsts": 4}})
    assert parse_counters_file("") == CounterSnapshot(time=None, values={})
    assert parse_counters_file("time=garbage\n").time is None


def test_counter_deltas_over_the_captured_window() -> None:
    start = parse_counters_file(read("counters-start.txt"))
    end = parse_counters_file(read("counters-end.txt"))
    deltas = counter_deltas(start, end, KEY_COUNTERS)
    assert set(deltas) == set(KEY_COUNTERS)
    # 8 loopback refusals + 2 linger aborts + 1 close with unread data, all sent by this kernel.
    assert deltas["OutRsts"]["delta"] == 11
    # 8 loopback refusals + 1 refusal by the peer namespace; only the client side counts.
    assert deltas["AttemptFails"]["delta"] == 9
    # Each loopback abort resets both ends, both local.
    assert deltas["EstabResets"]["delta"] == 6
    # SO_LINGER {1, 0} close counts as AbortOnData on 6.x, not AbortOnLinger.
    assert deltas["TCPAbortOnData"]["delta"] == 2
    assert deltas["TCPAbortOnLinger"]["delta"] == 0
    assert deltas["TCPAbortOnClose"]["delta"] == 1
    assert start.time is not None and end.time is not None
    seconds = end.time - start.time
    assert 0 < seconds < 30
    assert deltas["OutRsts"]["per_s"] == pytest.approx(11 / seconds)
    assert deltas["OutRsts"]["start"] == 0 and deltas["OutRsts"]["end"] == 11


def test_counter_deltas_without_times_or_counters() -> None:
    a = CounterSnapshot(None, {"Tcp": {"OutRsts": 5}, "TcpExt": {"OutRsts": 99}})
    b = CounterSnapshot(12.0, {"Tcp": {"OutRsts": 8}})
    assert counter_deltas(a, b, ["OutRsts", "ListenDrops"]) == {
        "OutRsts": {"start": 5, "end": 8, "delta": 3, "per_s": None}
    }
    same_time = CounterSnapshot(12.0, {"Tcp": {"OutRsts": 8}})
    assert counter_deltas(b, same_time, ["OutRsts"])["OutRsts"]["per_s"] is None


# --- ss -------------------------------------------------------------------------------------------


def by_local(sockets: list[Socket] | tuple[Socket, ...], addr: str, port: int) -> list[Socket]:
    return [s for s in sockets if s.local_addr == addr and s.local_port == port]


def test_ss_listeners_with_hostile_names() -> None:
    listeners = parse_ss(read("ss-listen.txt"))
    assert len(listeners) == 8
    assert {s.state for s in listeners} == {"LISTEN"}
    (web,) = by_local(listeners, "127.0.0.1", 7300)
    # The process is "web) <script>": ss stops at the first ')'.
    assert [p.name for p in web.processes] == ["web"]
    (spoof,) = by_local(listeners, "*", 8080)
    assert spoof.peer_addr == "*" and spoof.peer_port is None
    assert len(spoof.processes) == 1
    assert spoof.processes[0].name == 'a",pid=9,fd=9'
    assert spoof.processes[0].pid != 9 and spoof.processes[0].fd == 3
    (svc,) = by_local(listeners, "127.0.0.1", 5353)
    assert svc.iface == "lo"
    assert [p.name for p in svc.processes] == ["svc-worker", 'svc "x", y']
    assert svc.processes[0].pid != svc.processes[1].pid


def test_ss_address_forms() -> None:
    listeners = parse_ss(read("ss-listen.txt"))
    (v4any,) = by_local(listeners, "0.0.0.0", 22)
    assert (v4any.peer_addr, v4any.peer_port) == ("0.0.0.0", None)
    (v6any,) = by_local(listeners, "::", 22)
    assert (v6any.peer_addr, v6any.peer_port) == ("::", None)
    (scoped6,) = by_local(listeners, "::1", 7400)
    assert scoped6.iface == "lo"
    assert v4any.processes[0].name == v6any.processes[0].name == "sshd"


def test_ss_all_states_and_endpoints() -> None:
    sockets = parse_ss(read("ss-all.txt"))
    assert len(sockets) == 25
    states = sorted({s.state for s in sockets})
    assert states == ["CLOSE-WAIT", "ESTAB", "FIN-WAIT-2", "LISTEN", "SYN-SENT", "TIME-WAIT"]
    (tw,) = [s for s in sockets if s.state == "TIME-WAIT"]
    assert (tw.peer_addr, tw.peer_port, tw.processes) == ("127.0.0.1", 7300, ())
    (syn,) = [s for s in sockets if s.state == "SYN-SENT"]
    assert (syn.peer_addr, syn.peer_port, syn.send_q) == ("198.18.0.3", 80, 1)
    (cw,) = [s for s in sockets if s.state == "CLOSE-WAIT"]
    assert cw.recv_q == 1 and cw.local_port == 7500
    mapped = by_local(sockets, "::ffff:127.0.0.1", 8080)
    assert len(mapped) == 1 and mapped[0].peer_addr == "::ffff:127.0.0.1"
    assert mapped[0].processes[0].name == 'a",pid=9,fd=9'
    v6 = [s for s in sockets if s.local_addr == "::1" and s.state == "ESTAB"]
    assert {s.peer_port for s in v6} >= {8080, 7400}
    cross = [s for s in sockets if s.peer_addr == "198.18.0.2"]
    assert len(cross) == 1 and cross[0].peer_port == 2222


def test_ss_synthetic_edge_cases() -> None:
    text = (
        "LISTEN 0 128 [fe80::1]%eth0:22 [::]:* users:((\"sshd\",pid=1,fd=3))\n"
        "LISTEN 0 128 *:22 *:*\n"
        "UNCONN 0 0 127.0.0.1%lo:53 0.0.0.0:*\n"
        "\tcubic wscale:7,7 rto:204\n"  # an `ss -i` detail line
        "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5000 users:((\"half\n"
        "\",pid=7,fd=1))\n"  # a newline in a name splits the line: keep what parses
        "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5001 users:((\"ok\",pid=8,fd=2),(\"cut\n"
        "ESTAB x y 1.2.3.4:5 6.7.8.9:10\n"
        "garbage\n"
    )
    sockets = parse_ss(text)
    assert [(s.local_addr, s.local_port, s.iface) for s in sockets] == [
        ("fe80::1", 22, "eth0"),
        ("*", 22, None),
        ("127.0.0.1", 53, "lo"),
        ("10.0.0.1", 22, None),
        ("10.0.0.1", 22, None),
    ]
    assert sockets[0].processes == (Proc("sshd", 1, 3),)
    assert sockets[1].processes == ()
    assert sockets[3].processes == ()
    assert sockets[4].processes == (Proc("ok", 8, 2),)


@pytest.mark.parametrize(
    "users",
    [
        'users:(("x",pid=1,fd=2)',
        'users:(("x",pid=1,fd=',
        'users:(("<script>alert(1)</script>",pid=1,fd=2))',
        'users:((""",pid=",pid=1,fd=2),("y",pid=3,fd=4))',
        "users:((",
        'users:(("\x00\x1b[31m",pid=1,fd=2))',
    ],
)
def test_ss_never_crashes_on_names(users: str) -> None:
    (sock,) = parse_ss(f"ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 {users}\n")
    assert all(isinstance(p.pid, int) for p in sock.processes)


def test_sockets_file_tables_and_owners() -> None:
    table = parse_sockets_file(read("sockets.txt"))
    assert len(table.listeners) == 8
    assert len(table.sockets) == 25
    comms = {p.comm for p in table.procs.values()}
    assert comms == {"python3", "web) <script>", 'a",pid=9,fd=9', "sshd", 'svc "x", y',
                     "svc-worker"}
    web = next(p for p in table.procs.values() if p.comm == "web) <script>")
    # argv[0] held a tab and a newline; the host script turned them into spaces.
    assert web.cmdline.startswith("web-frontend --role=<script> alert(1) ")
    assert "\t" not in web.cmdline and "\n" not in web.cmdline
    assert not web.cmdline.endswith(" ")

    # ss says "web"; the procs table gives the full name.
    owners = table.owners_of("127.0.0.1", 7300)
    assert [o.comm for o in owners] == ["web) <script>"]
    assert owners[0].pid == web.pid

    owners = table.owners_of("127.0.0.1", 5353)
    assert sorted(o.comm for o in owners) == ["svc \"x\", y", "svc-worker"]
    # The v4-mapped side of the dual-stack listener, and the listener itself.
    assert [o.comm for o in table.owners_of("::ffff:127.0.0.1", 8080)] == ['a",pid=9,fd=9']
    assert [o.comm for o in table.owners_of("127.0.0.1", 8080)] == ['a",pid=9,fd=9']
    # The seed case: nothing listens on 7211.
    assert table.owners_of("127.0.0.1", 7211) == []


def test_listener_for() -> None:
    table = parse_sockets_file(read("sockets.txt"))
    assert table.listener_for(7211) is None
    assert table.listener_for(7211, "127.0.0.1") is None
    exact = table.listener_for(7300, "127.0.0.1")
    assert exact is not None and exact.local_addr == "127.0.0.1"
    assert table.listener_for(7300, "198.18.0.1") is None  # bound to loopback only
    v4 = table.listener_for(22, "198.18.0.1")
    assert v4 is not None and v4.local_addr == "0.0.0.0"
    v6 = table.listener_for(22, "::1")
    assert v6 is not None and v6.local_addr == "::"
    dual = table.listener_for(8080, "198.18.0.1")
    assert dual is not None and dual.local_addr == "*"
    assert table.listener_for(8080, "::ffff:127.0.0.1") is dual
    scoped = table.listener_for(5353, "127.0.0.1")
    assert scoped is not None and scoped.iface == "lo"


def test_odd_digits_and_line_separators() -> None:
    assert parse_ss("ESTAB 0 0 1.2.3.4:\u00b2 5.6.7.8:9\nESTAB \u00b2 0 1.2.3.4:1 5.6.7.8:9\n") == [
        Socket("ESTAB", 0, 0, "1.2.3.4", None, "5.6.7.8", 9)
    ]
    text = "--- procs\n7\tweird\u2028name\tcmd\x85line\n\u00b2\tx\ty\n"
    assert parse_sockets_file(text).procs == {7: ProcInfo(7, "weird\u2028name", "cmd\x85line")}
    assert parse_ip_link("1: lo: <UP> mtu \u00b2\\ link/loopback\n")[1].mtu is None
    crlf = parse_sockets_file("--- procs\r\n7\tsh\tsh -c x \r\n")
    assert crlf.procs == {7: ProcInfo(7, "sh", "sh -c x")}


def test_sockets_file_without_listen_section_and_unknown_pids() -> None:
    text = (
        "--- all\n"
        "LISTEN 0 8 0.0.0.0:80 0.0.0.0:* users:((\"ngin\",pid=42,fd=6))\n"
        "ESTAB 0 0 10.0.0.1:80 10.0.0.2:4000 users:((\"ngin\",pid=43,fd=9))\n"
        "--- procs\n"
        "43\tnginx: worker\tnginx: worker process  \n"
        "not-a-pid\tx\ty\n"
    )
    table = parse_sockets_file(text)
    assert [s.local_port for s in table.listeners] == [80]
    assert table.procs == {43: ProcInfo(43, "nginx: worker", "nginx: worker process")}
    assert table.owners_of("10.0.0.1", 80) == [
        ProcInfo(43, "nginx: worker", "nginx: worker process"),
        ProcInfo(42, "ngin", ""),
    ]
    assert parse_sockets_file("") == SocketTable()


# --- interfaces -----------------------------------------------------------------------------------


def test_ip_link_namespace() -> None:
    links = parse_ip_link(read("ip-link-ns-a.txt"))
    assert {i: x.name for i, x in links.items()} == {
        1: "lo", 2: "va", 3: "spare1", 4: "spare0", 5: "br0", 6: "tun0"
    }
    lo = links[1]
    assert (lo.up, lo.mtu, lo.link_type, lo.state) == (True, 65536, "loopback", "UNKNOWN")
    assert lo.flags == ("LOOPBACK", "UP", "LOWER_UP")
    va = links[2]  # printed "va@if2"
    assert (va.up, va.link_type, va.state) == (True, "ether", "UP")
    assert va.mac is not None and len(va.mac) == 17
    assert links[3].up is False and links[3].state == "DOWN"  # "spare1@spare0", down
    tun = links[6]
    assert (tun.up, tun.link_type, tun.mac, tun.mtu) == (False, "none", None, 1500)


def test_ip_link_admin_up_without_carrier() -> None:
    spare0 = parse_ip_link(read("ip-link-ns-a.txt"))[4]  # printed "spare0@spare1", peer down
    assert spare0.name == "spare0"
    assert "NO-CARRIER" in spare0.flags
    assert spare0.up is True and spare0.state == "LOWERLAYERDOWN"


def test_ip_link_peer_namespace() -> None:
    vb = parse_ip_link(read("ip-link-ns-b.txt"))[2]  # printed "vb@if2 ... link-netns ..."
    assert (vb.name, vb.up, vb.link_type, vb.mtu) == ("vb", True, "ether", 1500)


def test_ip_link_host() -> None:
    links = parse_ip_link(read("ip-link-host.txt"))
    names = [x.name for x in links.values()]
    assert "lo" in names and len(names) == len(set(names)) >= 2
    assert all(x.mtu for x in links.values())


def test_ip_addr() -> None:
    assert parse_ip_addr(read("ip-addr-ns-a.txt")) == {"lo": ["127.0.0.1", "::1"],
                                                        "va": ["198.18.0.1"]}
    assert parse_ip_addr(read("ip-addr-ns-b.txt")) == {"lo": ["127.0.0.1", "::1"],
                                                        "vb": ["198.18.0.2"]}
    host = parse_ip_addr(read("ip-addr-host.txt"))
    assert host["lo"] == ["127.0.0.1", "::1"]
    assert all("/" not in a for addrs in host.values() for a in addrs)


def test_ip_parsers_skip_garbage() -> None:
    assert parse_ip_link("garbage\n\n7: x\n") == {}
    text = "3: ppp0    inet 10.1.1.1 peer 10.1.1.2/32 scope global ppp0\\ valid_lft forever\n"
    assert parse_ip_addr(text + "junk\n") == {"ppp0": ["10.1.1.1"]}
