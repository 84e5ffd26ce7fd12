#!/bin/sh
# Set up fleetrst on a Debian machine, as root: system tools, then a virtualenv in ./.venv.
# Usage: ./install.sh [--test]   (--test adds what the test suite needs)
set -eu
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# openssh-server and tcpdump are what the demo fleet (fleetrst lab) runs on; fleetrst itself
# only needs python3 locally and sh, coreutils, iproute2 and tcpdump on the hosts it scans.
apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-pip openssh-server openssh-client tcpdump iproute2 procps \
    >/dev/null
extra=""
if [ "${1:-}" = "--test" ]; then
    extra="[test]"
    # The browser test opens the reports in Debian's Chromium, driven by Playwright's Python
    # package pointed at /usr/bin/chromium (no browser download), with a font to draw them.
    # sudo: the restricted-user tests; shellcheck: the host script's lint test; faketime: a
    # test host whose clock is an hour off.
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core sudo shellcheck \
        faketime >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e ".$extra"
echo "fleetrst installed: $(pwd)/.venv/bin/fleetrst"
