"""The severity policy: never quieter than the alarms that page people about resets.

- A host with no resets (none captured, OutRsts and AttemptFails unchanged) has no finding.
- A finding's rate decides first: from ALARM_PER_S (5/s, the resets-sent alarm's threshold)
  it is a warning, from CRITICAL_PER_S (10 times that) critical, below it info.
- A fault of the host itself (a local client calling a dead local service, aborting
  applications, an overflowing listen queue, a port scan) that repeats (PATTERN_MIN resets or
  more in the window) is at least a warning, whatever its rate.
- When the resets-sent alarm would fire on the window's numbers (the worst 10 s average, or the
  window's average when it is shorter, above ALARM_PER_S), the host's top finding about resets
  it sent is at least a warning; the same for the failed-connections alarm (AttemptFails) and
  its top finding about failed connections.
"""

from __future__ import annotations

from typing import Any

SEVERITIES = ("info", "warning", "critical")
# Netdata's 10s_ipv4_tcp_resets_sent style: resets sent, averaged over 10 s, above 5/s.
ALARM_PER_S = 5.0
# Failed connection attempts (Tcp AttemptFails), per second, for the "resets received" alarms.
ALARM_FAILED_PER_S = 5.0
CRITICAL_PER_S = 50.0
ALARM_WINDOW_S = 10
PATTERN_MIN = 3
# Kinds that are this host's own fault, worth a warning once they repeat.
FAULT_KINDS = ("local_dead_service", "abort", "listen_overflow", "scan")
# Kinds that count towards the failed-connections alarm (refusals of this host's connects).
FAILED_CONNECT_KINDS = ("received_refused", "local_dead_service")


def severity_rank(s: str | None) -> int:
    """info < warning < critical; anything else ranks below info."""
    return SEVERITIES.index(s) + 1 if s in SEVERITIES else 0


def max_severity(*levels: str) -> str:
    """The most severe of the levels."""
    return max(levels, key=severity_rank)


def rate_level(per_s: float) -> str:
    """The severity a rate alone deserves."""
    if per_s >= CRITICAL_PER_S:
        return "critical"
    if per_s >= ALARM_PER_S:
        return "warning"
    return "info"


def finding_severity(kind: str, count: int, per_s: float) -> str:
    """A finding's severity from its kind, how often it happened and its rate."""
    level = rate_level(per_s)
    if kind in FAULT_KINDS and count >= PATTERN_MIN:
        level = max_severity(level, "warning")
    return level


def worst_average(series: list[int], bucket_s: float = 1.0) -> float:
    """The highest ALARM_WINDOW_S average of a per-bucket count series (the whole series' average
    when it is shorter), as a 10-second alarm would see the same events."""
    if not series:
        return 0.0
    width = max(1, round(ALARM_WINDOW_S / bucket_s))
    if len(series) <= width:
        return sum(series) / (len(series) * bucket_s)
    return max(sum(series[i:i + width]) for i in range(len(series) - width + 1)) / (width * bucket_s)


def alarms(sent_per_s: float, failed_per_s: float) -> list[dict[str, Any]]:
    """What the common alarms would say on these numbers."""
    out = []
    for name, value, threshold, what in (
        ("resets sent, 10 s average (Netdata 10s_ipv4_tcp_resets_sent style)", sent_per_s,
         ALARM_PER_S, "a 10 s resets-sent alarm"),
        ("failed connection attempts (Tcp AttemptFails; 'resets received' alarms)", failed_per_s,
         ALARM_FAILED_PER_S, "a failed-connections alarm"),
    ):
        firing = value > threshold
        out.append({"name": name, "value": round(value, 2), "threshold": threshold, "unit": "/s",
                    "firing": firing,
                    "text": f"{what} at {threshold:g}/s would be {'firing' if firing else 'quiet'}: "
                            f"{value:.1f}/s"})
    return out


def raise_for_alarms(findings: list[dict[str, Any]], host_alarms: list[dict[str, Any]]) -> None:
    """Make sure a firing alarm has a finding at warning or above that explains it."""
    sent_alarm, failed_alarm = host_alarms[0], host_alarms[1]
    if sent_alarm["firing"]:
        sent = [f for f in findings if not f["kind"].startswith("received_")]
        if sent:
            top = max(sent, key=lambda f: f["count"])
            top["severity"] = max_severity(top["severity"], "warning")
    if failed_alarm["firing"]:
        failed = [f for f in findings if f["kind"] in FAILED_CONNECT_KINDS]
        if failed:
            top = max(failed, key=lambda f: f["count"])
            top["severity"] = max_severity(top["severity"], "warning")


def order(findings: list[dict[str, Any]]) -> None:
    """Worst first; at equal severity what this host sends before what it received, then count."""
    findings.sort(key=lambda f: (-severity_rank(f["severity"]), f["kind"].startswith("received_"),
                                 -f["count"]))
