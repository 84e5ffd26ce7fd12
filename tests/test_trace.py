"""The tracefs parser, on trace output recorded by a real run."""

from pathlib import Path

from fleetrst.trace import parse_trace, reason_names

RUN = Path(__file__).parent / "data" / "runs" / "closed-port-local" / "me"


def test_reason_names_come_from_the_hosts_format_file():
    names = reason_names((RUN / "tcp_send_reset.format").read_text())
    assert names[1] == "NO_SOCKET"
    assert "TCP_ABORT_ON_CLOSE" in names.values()
    assert "TCP_TIMEWAIT_SOCKET" in names.values()


def test_resets_and_connects_are_parsed_and_put_on_wall_clock_time():
    trace = parse_trace((RUN / "tcp_send_reset.trace").read_text(), (RUN / "tcp_send_reset.format").read_text())
    assert trace.synced
    refusals = [r for r in trace.resets if r.sport == 7219]
    assert len(refusals) >= 4
    assert {r.reason for r in refusals} == {"NO_SOCKET"}
    assert all(r.src == "127.0.0.1" and r.dst == "127.0.0.1" for r in refusals)
    # Wall-clock epoch seconds (2020s), not seconds since boot.
    assert all(r.ts > 1.5e9 for r in refusals)
    connects = [c for c in trace.connects if c.dport == 7219]
    assert connects and {c.comm for c in connects} == {"python3"}


def test_numeric_reasons_are_decoded_with_the_format_table():
    fmt = 'print fmt: "...", __print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 7, "SOMETHING_NEW" })'
    line = ("  srv-1 [000] ..s1. 5.000000: tcp_send_reset: skbaddr=0 skaddr=0 src=10.0.0.1:80 "
            "dest=10.0.0.2:5555 state=TCP_CLOSE reason=7")
    trace = parse_trace(line, fmt)
    assert trace.resets[0].reason == "SOMETHING_NEW"
    assert not trace.synced


def test_garbage_lines_are_ignored():
    trace = parse_trace("not a trace\n\x1b[31m\n#comment\n")
    assert trace.resets == [] and trace.connects == []
