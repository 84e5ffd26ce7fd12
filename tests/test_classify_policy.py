"""The severity policy: never quieter than the common reset alarms (README "Findings and severities")."""

from __future__ import annotations

from fleetrst.analysis.severity import (
    ALARM_PER_S,
    CRITICAL_PER_S,
    PATTERN_MIN,
    alarms,
    finding_severity,
    order,
    raise_for_alarms,
    worst_average,
)


def test_a_burst_fires_the_10_s_alarm_even_when_the_window_average_is_low() -> None:
    # 30 s window: 60 resets in 10 s, nothing else. Window average 2/s, 10 s average 6/s.
    series = [0] * 10 + [6] * 10 + [0] * 10
    assert sum(series) / len(series) < ALARM_PER_S
    assert worst_average(series) == 6.0
    assert alarms(worst_average(series), 0.0)[0]["firing"]


def test_a_short_window_is_averaged_whole() -> None:
    assert worst_average([3, 9, 0, 0, 3]) == 3.0
    assert worst_average([]) == 0.0


def test_the_alarm_fires_above_its_threshold_and_fleetrst_warns_at_it() -> None:
    assert not alarms(ALARM_PER_S, ALARM_PER_S)[0]["firing"]
    assert alarms(ALARM_PER_S + 0.1, 0.0)[0]["firing"]
    assert alarms(0.0, ALARM_PER_S + 0.1)[1]["firing"]
    # Warn at least as early as the alarm: at its threshold already.
    assert finding_severity("stray", 100, ALARM_PER_S) == "warning"
    assert finding_severity("stray", 100, ALARM_PER_S - 0.1) == "info"
    assert finding_severity("refused", 10**4, CRITICAL_PER_S) == "critical"


def test_a_repeating_fault_of_the_host_warns_whatever_its_rate() -> None:
    for kind in ("local_dead_service", "abort", "listen_overflow", "scan"):
        assert finding_severity(kind, PATTERN_MIN, 0.1) == "warning"
        assert finding_severity(kind, PATTERN_MIN - 1, 0.1) == "info"
    for kind in ("stray", "refused", "received_refused", "received_abort"):
        assert finding_severity(kind, PATTERN_MIN * 10, 0.5) == "info"


def _f(kind: str, count: int, severity: str = "info") -> dict[str, object]:
    return {"kind": kind, "count": count, "severity": severity}


def test_firing_alarms_raise_the_finding_that_explains_them() -> None:
    findings = [_f("received_refused", 40), _f("stray", 3), _f("refused", 9)]
    raise_for_alarms(findings, alarms(ALARM_PER_S * 2, 0.0))
    # Resets sent: the biggest finding about sent resets, not the received one.
    assert [f["severity"] for f in findings] == ["info", "info", "warning"]
    raise_for_alarms(findings, alarms(0.0, ALARM_PER_S * 2))
    assert findings[0]["severity"] == "warning"
    order(findings)
    assert [f["kind"] for f in findings] == ["refused", "received_refused", "stray"]


def test_quiet_alarms_change_nothing() -> None:
    findings = [_f("stray", 3), _f("received_refused", 4)]
    raise_for_alarms(findings, alarms(ALARM_PER_S, ALARM_PER_S))
    assert {f["severity"] for f in findings} == {"info"}
