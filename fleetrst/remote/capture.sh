#!/bin/sh
# fleetrst host side: capture TCP resets and counters for one window, then clean up.
#
# Needs only a POSIX sh, coreutils, iproute2 and tcpdump. No Python on the host.
#
#   capture.sh prepare DIR
#   capture.sh preflight DIR
#   capture.sh run DIR START DURATION CAP_BLOCKS COLLECT_TIMEOUT TRACE [lease=FILE] -- IFNAME TAG [IFNAME TAG ...]
#   capture.sh sweep BASE OWNER_TAG CURRENT_DIR
#   capture.sh remove DIR
#   capture.sh version
#
# Installed root-owned (for example /usr/local/lib/fleetrst/capture.sh) it is the one command
# a restricted user needs in sudoers: every argument is checked, DIR can only be a new
# directory directly under /tmp or /var/tmp, and the files are handed to the login user
# (SUDO_UID) only once the capture is over.
#
# DIR is the private per-run directory the orchestrator created (0700). In `run` mode
# stdin is a lease held open by the orchestrator: when it reaches EOF (collection done,
# orchestrator killed or connection lost) everything this script started is stopped
# and DIR is removed. With lease=FILE the lease is that file instead (for orchestrators
# such as Ansible that cannot hold a channel open across tasks): it must exist at the
# start, and removing it ends the lease. Every capture is also bounded by `timeout` and
# a file-size limit, so nothing outlives the window by more than a few seconds even if
# this shell dies.

set -u
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL
# A closed SSH channel must not kill us with SIGPIPE before cleanup has run.
trap '' PIPE

FILTER='(tcp[tcpflags] & (tcp-rst) != 0) or (ip6 and ip6[6] = 6 and ip6[53] & 4 != 0)'
SNAPLEN=128
LEAD=1      # tcpdump starts this many seconds before the window
TAIL=1      # and stops this many seconds after it

now() { date +%s.%N; }

die() {
    printf 'error=%s\n' "$*"
    exit 2
}

# Only fleetrst's own run directories, directly under /tmp or /var/tmp: run as root through
# sudo, this script must never be pointed at anything else.
check_dir() {
    case $1 in
        /tmp/fleetrst-* | /var/tmp/fleetrst-*) ;;
        *) die "refusing run directory $1 (must be /tmp/fleetrst-* or /var/tmp/fleetrst-*)" ;;
    esac
    case ${1#/*/fleetrst-} in
        *[!A-Za-z0-9-]* | '') die "refusing run directory $1 (bad characters)" ;;
    esac
}

check_number() {
    case $1 in
        '' | *[!0-9.]* | *.*.*) die "not a number: $1" ;;
    esac
}

say() { printf '%s\n' "$*"; }

# Seconds (fractional) from now until epoch $1, never negative.
until_epoch() {
    awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; if (d < 0) d = 0; printf "%.3f\n", d }'
}

# Sleep in the background and wait, so that a trapped signal interrupts the wait at once.
nap() {
    sleep "$1" &
    NAP_PID=$!
    wait "$NAP_PID" 2>/dev/null
    NAP_PID=
}

tracefs_root() {
    for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
        if [ -e "$t/instances" ]; then
            say "$t"
            return 0
        fi
    done
    return 1
}

section() {
    say "--- $1"
    shift
    "$@" 2>/dev/null
}

prepare() {
    check_dir "$1"
    mkdir -m 700 -- "$1" || die "cannot create $1"
    say "prepared=$1"
}

remove() {
    check_dir "$1"
    rm -rf -- "$1"
}

preflight() {
    dir=$1
    check_dir "$dir"
    say "fleetrst_remote=1"
    say "time=$(now)"
    say "uid=$(id -u)"
    say "hostname=$(uname -n)"
    say "kernel=$(uname -r)"
    for tool in tcpdump timeout ip ss awk sha256sum nsenter; do
        say "tool.$tool=$(command -v "$tool" 2>/dev/null)"
    done
    if command -v tcpdump >/dev/null 2>&1; then
        say "tcpdump_version=$(tcpdump --version 2>&1 | head -n 1)"
    fi
    say "free_kb=$(df -Pk "$dir" 2>/dev/null | awk 'NR == 2 { print $4 }')"
    if t=$(tracefs_root); then
        say "tracefs=$t"
    elif grep -q tracefs /proc/filesystems 2>/dev/null; then
        say "tracefs=unmounted"
    else
        say "tracefs="
    fi
    fmt=$(tracefs_root 2>/dev/null)/events/tcp/tcp_send_reset/format
    if [ -r "$fmt" ] && grep -q 'field:.* reason;' "$fmt"; then
        say "tcp_send_reset=reason"
    elif [ -r "$fmt" ]; then
        say "tcp_send_reset=noreason"
    else
        say "tcp_send_reset="
    fi
    section "ip -o link" ip -o link show
    section "ip -o addr" ip -o addr show
}

snapshot_counters() {
    {
        say "# fleetrst counters"
        say "time=$(now)"
        for f in snmp netstat snmp6; do
            if [ -r "/proc/net/$f" ]; then
                say "--- /proc/net/$f"
                cat "/proc/net/$f"
            fi
        done
    } >"$1" 2>/dev/null
}

snapshot_sockets() {
    {
        say "# fleetrst sockets"
        say "time=$(now)"
        say "--- listen"
        ss -Hltnp 2>/dev/null
        say "--- all"
        ss -Htanp 2>/dev/null
        say "--- procs"
        # Full process names: ss cuts a name at its first ')'. Names are untrusted text,
        # so tabs and newlines inside them become spaces.
        ss -Htanp 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u | while IFS='=' read -r _ pid; do
            [ -r "/proc/$pid/comm" ] || continue
            # $(...) drops the trailing newline; any inside the name become spaces.
            comm=$(cat "/proc/$pid/comm" 2>/dev/null)
            comm=$(printf '%s' "$comm" | tr '\t\n' '  ')
            cmd=$(head -c 512 "/proc/$pid/cmdline" 2>/dev/null | tr '\0\t\n' '   ')
            printf '%s\t%s\t%s\n' "$pid" "$comm" "$cmd"
        done
    } >"$1"
}

# tracefs: our own instance, so that other users of tracing are not disturbed.
trace_start() {
    TRACE_INSTANCE=
    TRACE_MOUNTED=
    root=$(tracefs_root) || {
        if grep -q tracefs /proc/filesystems 2>/dev/null &&
            mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; then
            TRACE_MOUNTED=/sys/kernel/tracing
            root=/sys/kernel/tracing
            say "note=mounted tracefs on /sys/kernel/tracing for this run"
        else
            say "note=tracefs not available: no kernel reset reasons"
            return 0
        fi
    }
    [ -r "$root/events/tcp/tcp_send_reset/format" ] || {
        say "note=kernel has no tcp:tcp_send_reset tracepoint: no kernel reset reasons"
        return 0
    }
    inst="$root/instances/fleetrst-$(basename "$DIR")"
    mkdir "$inst" 2>/dev/null || {
        say "note=cannot create a tracefs instance: no kernel reset reasons"
        return 0
    }
    TRACE_INSTANCE=$inst
    cp "$root/events/tcp/tcp_send_reset/format" "$DIR/tcp_send_reset.format" 2>/dev/null
    echo 1024 >"$inst/buffer_size_kb" 2>/dev/null
    echo mono >"$inst/trace_clock" 2>/dev/null
    echo 1 >"$inst/events/tcp/tcp_send_reset/enable" 2>/dev/null
    # connect() runs in the caller's context: SYN-SENT transitions name the client process
    # of a refused connection, which the reset itself (sent from softirq) cannot.
    ss_ev="$inst/events/sock/inet_sock_set_state"
    if [ -w "$ss_ev/enable" ]; then
        echo 'newstate == 2 && protocol == 6' >"$ss_ev/filter" 2>/dev/null
        echo 1 >"$ss_ev/enable" 2>/dev/null
    fi
    # A marker ties the trace clock to wall-clock time.
    echo "fleetrst-sync $(now)" >"$inst/trace_marker" 2>/dev/null
}

trace_stop() {
    [ -n "${TRACE_INSTANCE:-}" ] || { trace_unmount; return 0; }
    echo "fleetrst-sync $(now)" >"$TRACE_INSTANCE/trace_marker" 2>/dev/null
    if [ -n "$1" ]; then
        echo 0 >"$TRACE_INSTANCE/tracing_on" 2>/dev/null
        head -c 16777216 "$TRACE_INSTANCE/trace" >"$1" 2>/dev/null
    fi
    echo 0 >"$TRACE_INSTANCE/events/tcp/tcp_send_reset/enable" 2>/dev/null
    echo 0 >"$TRACE_INSTANCE/events/sock/inet_sock_set_state/enable" 2>/dev/null
    rmdir "$TRACE_INSTANCE" 2>/dev/null
    TRACE_INSTANCE=
    trace_unmount
}

trace_unmount() {
    if [ -n "${TRACE_MOUNTED:-}" ]; then
        umount "$TRACE_MOUNTED" 2>/dev/null
        TRACE_MOUNTED=
    fi
}

stop_children() {
    for p in ${CAPTURE_PIDS:-}; do
        kill -INT "$p" 2>/dev/null
    done
    # TERM, not INT: a background job of a non-interactive shell ignores SIGINT, and the
    # `wait` in cleanup would sit out the rest of the nap (up to the whole window).
    [ -n "${NAP_PID:-}" ] && kill "$NAP_PID" 2>/dev/null
    return 0
}

cleanup() {
    stop_children
    trace_stop ""
    [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null
    [ -n "${TIMER_PID:-}" ] && kill "$TIMER_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf -- "$DIR"
}

on_lease_end() {
    # Lease gone before we were done: the orchestrator died or the connection dropped.
    exec >/dev/null 2>&1
    cleanup
    exit 3
}

run() {
    # The whole run is time-boxed, whatever happens to the orchestrator or this shell.
    if [ -z "${FLEETRST_TIMEBOXED:-}" ] && [ "$#" -ge 6 ]; then
        first=$2
        # START=wait: the start instant comes later on stdin; allow a few minutes for it.
        [ "$first" = wait ] && first=$(awk -v n="$(now)" 'BEGIN { printf "%.3f\n", n + 300 }')
        check_number "$first"
        check_number "$3"
        check_number "$5"
        life=$(awk -v s="$first" -v d="$3" -v c="$5" -v n="$(now)" \
            'BEGIN { x = s - n; if (x < 0) x = 0; x = x + d + c + 30; if (x > 14400) x = 14400; printf "%d\n", x }')
        FLEETRST_TIMEBOXED=1
        export FLEETRST_TIMEBOXED
        exec timeout -s TERM -k 5 "$life" sh "$0" run "$@"
    fi
    # tracefs not mounted: mount it in a private mount namespace of this run, so that nothing
    # is left mounted and concurrent runs on the same host cannot unmount it under each other.
    if [ "${6:-0}" = 1 ] && [ -z "${FLEETRST_PRIVATE_MNT:-}" ] && ! tracefs_root >/dev/null &&
        command -v unshare >/dev/null 2>&1 && unshare -m true 2>/dev/null; then
        FLEETRST_PRIVATE_MNT=1
        export FLEETRST_PRIVATE_MNT
        exec unshare -m --propagation private sh "$0" run "$@"
    fi
    DIR=$1 start=$2 duration=$3 cap_blocks=$4 collect_timeout=$5 trace=$6
    check_dir "$DIR"
    for n in "$duration" "$cap_blocks" "$collect_timeout"; do check_number "$n"; done
    [ "$start" = wait ] || check_number "$start"
    shift 6
    lease_file=
    case ${1:-} in
        lease=?*) lease_file=${1#lease=}; shift ;;
    esac
    [ "${1:-}" = "--" ] && shift
    [ -d "$DIR" ] || { say "error=run directory $DIR is missing"; exit 2; }
    if [ -n "$lease_file" ] && [ ! -e "$lease_file" ]; then
        say "error=lease file $lease_file is missing"
        exit 2
    fi
    CAPTURE_PIDS=
    TRACE_INSTANCE=
    TRACE_MOUNTED=
    NAP_PID=
    TIMER_PID=
    me=$$
    waited=
    if [ "$start" = wait ]; then
        waited=1
        # Armed first, started later: the orchestrator sends "start=EPOCH" (this host's clock)
        # once every host is armed, so a slow host cannot make the others start early.
        say "armed pid=$$ time=$(now)"
        IFS= read -r go || { rm -rf -- "$DIR"; exit 3; }
        start=${go#start=}
        check_number "$start"
    fi
    if [ -n "$lease_file" ]; then
        # The lease is a file: it ends when the orchestrator removes it.
        (
            while [ -e "$lease_file" ]; do sleep 0.5; done
            kill -USR1 "$me" 2>/dev/null
        ) </dev/null >/dev/null 2>&1 &
        WATCH_PID=$!
        exec 0</dev/null
    else
        # The lease: stdin stays open while the orchestrator wants us. Background jobs get
        # /dev/null as stdin unless told otherwise, hence the explicit fd 3.
        exec 3<&0
        ( cat <&3 >/dev/null 2>&1; kill -USR1 "$me" 2>/dev/null ) &
        WATCH_PID=$!
        exec 0</dev/null 3<&-
    fi
    trap on_lease_end USR1 HUP TERM INT
    # Who owns this directory: a later run's sweep leaves it alone while we live.
    say "$$" >"$DIR/owner.pid"

    # Tell the orchestrator we are alive, then wait for the capture to be armed.
    [ -n "$waited" ] || say "armed pid=$$ time=$(now)"
    nap "$(until_epoch "$(awk -v s="$start" -v l="$LEAD" 'BEGIN { printf "%.6f", s - l }')")"

    ip -o link show >"$DIR/ip-link.txt" 2>/dev/null
    ip -o addr show >"$DIR/ip-addr.txt" 2>/dev/null
    # Whole seconds for timeout(1), rounded up: the window may be fractional.
    tdur=$(awk -v d="$duration" -v l="$LEAD" -v t="$TAIL" \
        'BEGIN { x = l + d + t; printf "%d\n", (x == int(x)) ? x : int(x) + 1 }')
    while [ "$#" -ge 2 ]; do
        ifname=$1 tag=$2
        case $tag in *[!A-Za-z0-9_.@+-]* | '') die "bad capture tag $tag" ;; esac
        shift 2
        # ulimit -f (512-byte blocks) caps the file: tcpdump gets SIGXFSZ at the cap.
        # Writing to stdout keeps tcpdump's privilege drop and AppArmor out of the way.
        (
            ulimit -f "$cap_blocks"
            exec timeout -s INT -k 2 "$tdur" tcpdump -i "$ifname" -n -s "$SNAPLEN" \
                --immediate-mode -U -w - "$FILTER"
        ) >"$DIR/rst-$tag.pcap" 2>"$DIR/tcpdump-$tag.err" &
        CAPTURE_PIDS="$CAPTURE_PIDS $!"
        printf '%s\t%s\t%s\n' "$tag" "$!" "$ifname" >>"$DIR/captures.txt"
    done
    if [ "$trace" = 1 ]; then
        trace_start >>"$DIR/notes.txt"
    fi

    nap "$(until_epoch "$start")"
    snapshot_counters "$DIR/counters-start.txt"
    snapshot_sockets "$DIR/sockets-start.txt"
    say "started time=$(now)"

    end=$(awk -v s="$start" -v d="$duration" 'BEGIN { printf "%.6f", s + d }')
    nap "$(until_epoch "$end")"
    snapshot_counters "$DIR/counters-end.txt"
    snapshot_sockets "$DIR/sockets.txt"
    say "ended time=$(now)"
    if [ "$trace" = 1 ]; then
        trace_stop "$DIR/tcp_send_reset.trace"
    fi

    : >"$DIR/exit-codes.txt"
    for p in $CAPTURE_PIDS; do
        wait "$p"
        printf '%s\t%s\n' "$p" "$?" >>"$DIR/exit-codes.txt"
    done
    CAPTURE_PIDS=

    # Hand the files to the login user, so they can be fetched without privileges.
    if [ -n "${SUDO_UID:-}" ] && [ "$(id -u)" = 0 ]; then
        chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$DIR" 2>/dev/null
    fi
    for f in "$DIR"/*; do
        [ -f "$f" ] || continue
        size=$(wc -c <"$f" | tr -d ' ')
        sum=$(sha256sum "$f" | awk '{ print $1 }')
        say "file $size $sum $(basename "$f")"
    done
    say "done time=$(now)"

    # Wait for the orchestrator to fetch, but not forever: the end of the lease interrupts
    # the nap. (A timer in a subshell would leave its sleep behind, holding our stdout.)
    trap 'exec >/dev/null 2>&1; cleanup; exit 0' USR1 HUP TERM INT
    nap "$collect_timeout"
    exec >/dev/null 2>&1
    cleanup
    exit 0
}

# Remove what earlier runs left behind: only directories named fleetrst-*-OWNER_TAG under
# BASE that belong to us and whose capture processes are gone, never the current one.
sweep() {
    base=$1 tag=$2 current=$3
    case $base in /tmp | /var/tmp) ;; *) die "refusing to sweep $base" ;; esac
    case $tag in *[!A-Za-z0-9]* | '') die "bad owner tag $tag" ;; esac
    for d in "$base"/fleetrst-*-"$tag"; do
        [ -d "$d" ] || continue
        [ "$d" = "$current" ] && continue
        [ -O "$d" ] || continue
        alive=
        if [ -r "$d/owner.pid" ]; then
            read -r owner <"$d/owner.pid" || owner=
            [ -n "$owner" ] && [ -d "/proc/$owner" ] && alive=1
        elif [ -n "$(find "$d" -maxdepth 0 -mmin -30 2>/dev/null)" ]; then
            # Not armed yet: most likely another run starting right now.
            alive=1
        fi
        if [ -r "$d/captures.txt" ]; then
            while IFS="$(printf '\t')" read -r _ pid _; do
                # /proc, not kill -0: the captures may belong to root and we may not.
                if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
                    alive=1
                fi
            done <"$d/captures.txt"
        fi
        [ -n "$alive" ] && continue
        rm -rf -- "$d" && say "removed $d"
    done
    return 0
}

mode=${1:-}
[ "$#" -gt 0 ] && shift
case $mode in
    prepare) prepare "$@" ;;
    preflight) preflight "$@" ;;
    run) run "$@" ;;
    sweep) sweep "$@" ;;
    remove) remove "$@" ;;
    version) say "fleetrst-capture sha256=$(sha256sum "$0" | awk '{ print $1 }')" ;;
    *) say "usage: capture.sh prepare|preflight|run|sweep|remove|version ..." >&2; exit 2 ;;
esac
