"""Analysis: one host's raw run files into rates, findings and a verdict; a run into a summary.

`hostfiles` reads a host folder, `classify` explains each reset and groups them into findings,
`severity` is the alarm policy, `links` ties the hosts of one run together, `host` drives it all.
"""

from .classify import endpoint
from .host import analyze_host, analyze_run, verdict
from .links import link_hosts
from .severity import SEVERITIES, severity_rank

__all__ = ["SEVERITIES", "analyze_host", "analyze_run", "endpoint", "link_hosts", "severity_rank",
           "verdict"]
