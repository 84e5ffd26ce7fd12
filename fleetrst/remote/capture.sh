#!/bin/sh
# fleetrst host side: capture TCP resets and counters for one window, then clean up.
#
# Needs only a POSIX sh, coreutils, iproute2 and tcpdump. No Python on the host.
#
#   capture.sh prepare DIR
#   capture.sh preflight DIR
#   capture.sh run DIR START DURATION CAP_BLOCKS COLLECT_TIMEOUT TRACE [lease=FILE] [ns=SEL] [nsmax=N]
#                  -- IFNAME TAG [IFNAME TAG ...]
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
#
# Network namespaces (containers, pods): preflight lists every one (section "--- netns") and
# leaves its sample of their counters in DIR. `run` reads the counters of every namespace at the
# window's start and end (nsINODE.counters-*.txt) and captures inside up to nsmax of them
# (default 16), those that sent the most resets since preflight first: ns=all (default),
# ns=host (only count them), ns=none (no captures at all) or ns=INODE,INODE,... (only these).
# Every file of a namespace is named nsINODE.FILE; netns.txt says which were captured and why
# not, cost.txt what the run cost the host. When some namespace's cgroup names a container, the
# preflight also asks the container runtimes' CLIs found on the host (docker, podman, crictl,
# nerdctl) for their containers' names: sections "--- runtime NAME", raw, kept in containers.txt.

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
STOP_GRACE=15  # how long a capture may outlive the window when this shell is late to stop it
TAB=$(printf '\t')
NS_COUNT_LIMIT=4096 # namespaces counted at most
NS_CAPTURE_LIMIT=64 # namespaces captured at most, whatever nsmax says
NS_IFACE_LIMIT=8    # interfaces captured per namespace at most
NS_TIMEOUT=5        # seconds any one command inside a namespace may take
NS_BUDGET=5         # seconds all of them may take, per step (listing interfaces, each snapshot)
RT_TIMEOUT=3        # seconds one container runtime's listing may take (then 1 more to die)
RT_BUDGET=8         # seconds all of them may take: a hung daemon must not hold up the preflight
RT_CAP=262144       # bytes kept of one listing
# docker, podman and nerdctl read "\t" in a format as a tab.
RT_FORMAT='{{.ID}}\t{{.Names}}'
# Runs inside a namespace nsenter entered: go on only if it is the namespace meant (its inode),
# so that a PID reused since discovery never sends a command into another namespace.
# shellcheck disable=SC2016
NS_EXEC='[ "$(stat -L -c %i /proc/self/ns/net 2>/dev/null)" = "$1" ] || exit 97; shift; exec "$@"'

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

is_number() {
    case $1 in
        '' | *[!0-9.]* | *.*.*) return 1 ;;
    esac
}

check_number() {
    is_number "$1" || die "not a number: $1"
}

# DIR must be fleetrst's own: a real directory, not a symlink, owned by whoever runs this, or the
# one this very copy was uploaded into (`sudo sh DIR/capture.sh`: full sudo anyway). Run as root
# through sudo, the installed copy must never write into a look-alike directory a user made.
private_dir() {
    [ -d "$1" ] && [ ! -L "$1" ] || return 1
    [ -O "$1" ] || [ "$0" = "$1/capture.sh" ]
}

say() { printf '%s\n' "$*"; }

# True once epoch $1 has passed.
past() {
    awk -v d="$1" -v n="$(now)" 'BEGIN { exit !(n > d) }'
}

# Epoch NS_BUDGET seconds from now.
budget() {
    awk -v n="$(now)" -v b="$NS_BUDGET" 'BEGIN { printf "%.3f\n", n + b }'
}

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
    say "netns_self=$(stat -L -c %i "/proc/$$/ns/net" 2>/dev/null)"
    section "ip -o link" ip -o link show
    section "ip -o addr" ip -o addr show
    # Every network namespace, with the counters sample that run ranks them by later on, then
    # what the container runtimes call the containers among them (kept for `fleetrst analyze`).
    if private_dir "$dir"; then
        netns_discover full >"$dir/netns-preflight.txt"
        section netns cat "$dir/netns-preflight.txt"
        runtimes_list <"$dir/netns-preflight.txt" >"$dir/containers.txt"
        if [ -s "$dir/containers.txt" ]; then
            cat "$dir/containers.txt"
        else
            rm -f -- "$dir/containers.txt"
        fi
    else
        pf_netns=$(netns_discover full)
        section netns printf '%s\n' "$pf_netns"
        printf '%s\n' "$pf_netns" | runtimes_list
    fi
}

# The container runtimes' own listings of their containers and pods (ids and names), one
# section "--- runtime NAME" each, raw, for the discovery lines on stdin: only when one of their
# cgroups names a container at all, only the CLIs that are there. Cheap however it goes: each
# listing time-boxed and cut short, all within RT_BUDGET seconds; a runtime that fails, is not
# running or is not ours to ask prints nothing, and never fails the preflight.
runtimes_list() {
    awk -F '\t' '$5 ~ /docker|cri-containerd-|crio-|libpod-|nerdctl-|kubepods/ { found = 1 }
        END { exit !found }' || return 0
    RT_UNTIL=$(awk -v n="$(now)" -v b="$RT_BUDGET" 'BEGIN { printf "%.3f\n", n + b }')
    RT_UID=$(id -u)
    # Run as root through sudo, the login user's environment must not steer a runtime's CLI
    # (DOCKER_HOST, a docker context over ssh, CONTAINER_RUNTIME_ENDPOINT, a config under a
    # HOME of theirs): as root they run with a clean one, root's own configuration only.
    RT_HOME=$(awk -F: '$3 == 0 { print $6; exit }' /etc/passwd 2>/dev/null)
    [ -n "$RT_HOME" ] || RT_HOME=/
    runtime_list docker docker ps --no-trunc --format "$RT_FORMAT"
    runtime_list podman podman ps --no-trunc --format "$RT_FORMAT"
    runtime_list "crictl ps" crictl ps -o json
    runtime_list "crictl pods" crictl pods -o json
    runtime_list nerdctl nerdctl ps --no-trunc --format "$RT_FORMAT"
    return 0
}

# One runtime listing: section "--- runtime $1", then what the command after it printed (always
# ending in a newline, so a listing cut short cannot run into the next section's header).
runtime_list() {
    rl_name=$1
    shift
    command -v "$1" >/dev/null 2>&1 || return 0
    past "$RT_UNTIL" && return 0
    if [ "$RT_UID" = 0 ]; then
        set -- env -i PATH="$PATH" LC_ALL=C HOME="$RT_HOME" "$@"
    fi
    rl_out=$(timeout -k 1 "$RT_TIMEOUT" "$@" </dev/null 2>/dev/null | head -c "$RT_CAP")
    [ -n "$rl_out" ] || return 0
    say "--- runtime $rl_name"
    printf '%s\n' "$rl_out"
}

# The counters of the host's own namespace into $1. Its time= is the clock on the inner side of
# the reading: after it at the window's start ($2 = start), before it at the end, so that every
# reset sent between the two times is in the counters' delta.
snapshot_counters() {
    sc_out=$1 sc_when=$2
    set --
    for f in snmp netstat snmp6; do
        [ -r "/proc/net/$f" ] && set -- "$@" "/proc/net/$f"
    done
    [ "$sc_when" = start ] || sc_t=$(now)
    # One process for all of them: at the start instant every fork counts.
    sc_body=$(awk 'FNR == 1 { print "--- " FILENAME } 1' "$@" 2>/dev/null)
    [ "$sc_when" = start ] && sc_t=$(now)
    {
        say "# fleetrst counters"
        say "time=$sc_t"
        printf '%s\n' "$sc_body"
    } >"$sc_out" 2>/dev/null
}

# ss listeners and sockets with their owners, into $1; with more arguments, ss runs through
# them (in_ns INODE HANDLE: inside a namespace).
snapshot_sockets() {
    ss_out=$1
    shift
    {
        say "# fleetrst sockets"
        say "time=$(now)"
        # One `ss -p` (it reads every process's file descriptors): the listeners are its
        # LISTEN lines.
        ss_all=$("$@" ss -Htanp 2>/dev/null)
        say "--- listen"
        printf '%s\n' "$ss_all" | grep '^LISTEN'
        say "--- all"
        [ -n "$ss_all" ] && printf '%s\n' "$ss_all"
        say "--- procs"
        printf '%s\n' "$ss_all" | grep -o 'pid=[0-9]*' | sort -u | procs_table
    } >"$ss_out"
}

# PID TAB COMM TAB CMDLINE for each "pid=N" line on stdin, in one awk however many processes
# (a busy host has hundreds with sockets). Full process names: ss cuts a name at its first ')'.
# Names are untrusted text: tabs, newlines and NULs inside them become spaces.
procs_table() {
    awk -F= -v max=512 '
        function slurp(path,   text, chunk, rc) {
            text = ""
            while ((rc = (getline chunk < path)) > 0) {
                text = text chunk
                if (length(text) >= max) break
            }
            close(path)
            return rc < 0 && text == "" ? "\001" : text
        }
        function clean(text,   n, i, parts, out) {
            n = split(text, parts, "\0")
            out = parts[1]
            for (i = 2; i <= n; i++) out = out " " parts[i]
            gsub(/[\t\n]/, " ", out)
            return substr(out, 1, max)
        }
        { pids[++count] = $2 }
        END {
            RS = "\001"
            for (i = 1; i <= count; i++) {
                comm = slurp("/proc/" pids[i] "/comm")
                if (comm == "\001") continue
                sub(/\n$/, "", comm)
                printf "%s\t%s\t%s\n", pids[i], clean(comm), clean(slurp("/proc/" pids[i] "/cmdline"))
            }
        }'
}

# --- network namespaces ----------------------------------------------------------------------

# Every network namespace on the host, one line each, tab-separated, sorted by inode:
#   INODE PID NAME OUTRSTS CGROUP COMM CMDLINE
# PID is the lowest PID in it (0: a named namespace no process is in), NAME its name under
# /run/netns, "-" for what is unknown. One stat for every process and one awk, however many
# processes run. With "full", also the namespace's Tcp OutRsts and its main process' cgroup,
# comm and cmdline (untrusted text, cut short: tabs, newlines and NULs become spaces).
netns_discover() {
    nd_self=$(stat -L -c '%d %i' "/proc/$$/ns/net" 2>/dev/null) || return 0
    {
        stat -L -c 'N %d %i %n' /run/netns/* 2>/dev/null
        stat -L -c 'P %d %i %n' /proc/[0-9]*/ns/net 2>/dev/null
    } | awk -v self="$nd_self" -v full="${1:-}" -v limit="$NS_COUNT_LIMIT" '
        function clean(s, n) {
            gsub(/[\t\n\r\000]+/, " ", s)
            sub(/^ +/, "", s)
            sub(/ +$/, "", s)
            if (length(s) > n) s = substr(s, 1, n)
            return s == "" ? "-" : s
        }
        function slurp(f,   line, r) {
            RS = "\001"
            line = ""
            r = (getline line < f)
            close(f)
            RS = "\n"
            return r > 0 ? line : ""
        }
        function outrsts(f,   line, hdr, a, b, k, nf, v) {
            v = "-"
            hdr = ""
            while ((getline line < f) > 0) {
                if (line !~ /^Tcp: /) continue
                if (hdr == "") { hdr = line; continue }
                nf = split(hdr, a, " ")
                split(line, b, " ")
                for (k = 2; k <= nf; k++) if (a[k] == "OutRsts" && b[k] ~ /^[0-9]+$/) v = b[k]
                break
            }
            close(f)
            return v
        }
        function cgroup(f,   n, l, k, path, zero, longest) {
            n = split(slurp(f), l, "\n")
            zero = longest = ""
            for (k = 1; k <= n; k++) {
                path = l[k]
                if (!sub(/^[0-9]+:[^:]*:/, "", path)) continue
                if (l[k] ~ /^0::/ && path != "/") zero = path
                if (length(path) > length(longest)) longest = path
            }
            if (zero != "") longest = zero
            return clean(longest == "/" ? "" : longest, 256)
        }
        BEGIN { split(self, me, " ") }
        $2 != me[1] { next }  # not a namespace: a stale file under /run/netns
        $1 == "N" {
            nm = $0
            sub(/^N [0-9]+ [0-9]+ \/run\/netns\//, "", nm)
            gsub(/[^A-Za-z0-9._-]/, "_", nm)
            sub(/^\./, "_", nm)
            if (!($3 in name)) name[$3] = substr(nm, 1, 64)
            seen[$3] = 1
            next
        }
        $1 == "P" {
            p = $4
            sub(/^\/proc\//, "", p)
            sub(/\/ns\/net$/, "", p)
            if (p !~ /^[0-9]+$/) next
            if (!($3 in pid) || p + 0 < pid[$3] + 0) pid[$3] = p
            seen[$3] = 1
        }
        END {
            n = 0
            for (i in seen) {
                if (i != me[2] && ++n > limit) continue
                p = (i in pid) ? pid[i] : 0
                rsts = cg = comm = cmd = "-"
                if (full && p) {
                    rsts = outrsts("/proc/" p "/net/snmp")
                    cg = cgroup("/proc/" p "/cgroup")
                    comm = clean(slurp("/proc/" p "/comm"), 64)
                    cmd = clean(slurp("/proc/" p "/cmdline"), 256)
                }
                printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i, p, (i in name) ? name[i] : "-", rsts, cg, comm, cmd
            }
        }' | sort -n
}

# A way into namespace $1 from a discovery line's PID ($2) and NAME ($3).
ns_handle() {
    if [ "$2" != 0 ]; then
        say "/proc/$2/ns/net"
    elif [ "$3" != - ]; then
        say "/run/netns/$3"
    else
        return 1
    fi
}

# Run a command inside namespace INODE ($1), entered through HANDLE ($2), time-boxed; it exits
# 97 when HANDLE no longer leads to INODE (the process exited, its PID was reused).
in_ns() {
    in_ino=$1 in_handle=$2
    shift 2
    timeout -k 1 "$NS_TIMEOUT" nsenter --net="$in_handle" sh -c "$NS_EXEC" sh "$in_ino" "$@" </dev/null
}

# Counters of every namespace but the host's own, as counters-$1.txt has them for the host, one
# file each (nsINODE.counters-$1.txt): through /proc/PID/net, all in one awk; a named namespace
# no process is in, through nsenter. A file read through a PID that left its namespace
# meanwhile (reused) is removed again. Times are on the inner side of the reading, as for the
# host's own: at the start, the clock after every file was read (put in afterwards).
snapshot_ns_counters() {
    sn_which=$1 sn_list=$DIR/.netns-$1
    netns_discover >"$sn_list"
    sn_t=
    [ "$sn_which" = start ] || sn_t=$(now)
    # One awk reads them all, the next writes each file once the time is known (at the start,
    # the @@time line after the reading).
    {
        awk -F '\t' -v dir="$DIR" -v which="$sn_which" -v self="$NS_SELF" '
            $1 == self || $2 == 0 { next }
            { n++; ino[n] = $1; pid[n] = $2 }
            END {
                split("snmp netstat snmp6", f, " ")
                for (k = 1; k <= n; k++) {
                    printf "@@file %s\t%s\n", dir "/ns" ino[k] ".counters-" which ".txt", pid[k]
                    for (j = 1; j <= 3; j++) {
                        src = "/proc/" pid[k] "/net/" f[j]
                        if ((getline line < src) <= 0) continue
                        printf "--- /proc/net/%s\n%s\n", f[j], line
                        while ((getline line < src) > 0) print line
                        close(src)
                    }
                }
            }' "$sn_list"
        [ "$sn_which" = start ] && say "@@time $(now)"
    } | awk -F '\t' -v t="$sn_t" '
        /^@@time / { t = substr($0, 8); next }
        /^@@file / { n++; out[n] = substr($1, 8); pid[n] = $2; body[n] = ""; next }
        n { body[n] = body[n] $0 "\n" }
        END {
            for (k = 1; k <= n; k++) {
                printf "# fleetrst counters\ntime=%s\npid=%s\n%s", t, pid[k], body[k] > out[k]
                close(out[k])
            }
        }'
    awk -F '\t' -v self="$NS_SELF" '$1 != self && $2 != 0 { print "/proc/" $2 "/ns/net" }' "$sn_list" |
        xargs -r stat -L -c '%i %n' 2>/dev/null |
        awk -F '\t' 'FILENAME == "-" {
                split($0, a, " "); p = a[2]; sub(/^\/proc\//, "", p); sub(/\/ns\/net$/, "", p)
                now[p] = a[1]; next
            }
            $1 != self && $2 != 0 && now[$2] != $1 { print $1 }' self="$NS_SELF" - "$sn_list" |
        while read -r sn_ino; do
            rm -f -- "$DIR/ns$sn_ino.counters-$sn_which.txt"
        done
    [ "$HAVE_NSENTER" = 1 ] || return 0
    awk -F '\t' -v self="$NS_SELF" '$1 != self && $2 == 0 && $3 != "-" { print $1 "\t" $3 }' "$sn_list" |
        while IFS="$TAB" read -r sn_ino sn_name; do
            [ "$sn_which" = start ] || sn_t=$(now)
            # shellcheck disable=SC2016
            if sn_body=$(in_ns "$sn_ino" "/run/netns/$sn_name" sh -c \
                'for f in snmp netstat snmp6; do echo "--- /proc/net/$f"; cat "/proc/self/net/$f"; done' 2>/dev/null); then
                [ "$sn_which" = start ] && sn_t=$(now)
                printf '# fleetrst counters\ntime=%s\npid=0\n%s\n' "$sn_t" "$sn_body" \
                    >"$DIR/ns$sn_ino.counters-$sn_which.txt"
            fi
        done
    return 0
}

# Which namespaces to capture, into .netns-chosen: every one but the host's own that ns= allows,
# those that sent the most resets since preflight first (Tcp OutRsts then against preflight's
# sample), then the most in all, at most nsmax. Each line: INODE PID NAME STATE RECENT TOTAL
# CGROUP COMM CMDLINE; STATE is self, capture, beyond_max, not_selected, host_only,
# no_capture or no_nsenter. The chosen ones' interfaces are listed right away.
ns_prepare() {
    np_pre=$DIR/netns-preflight.txt
    [ -r "$np_pre" ] || np_pre=/dev/null
    netns_discover full >"$DIR/.netns-arm"
    awk -F '\t' -v OFS='\t' -v sel="$ns_sel" -v max="$nsmax" -v self="$NS_SELF" \
        -v nsenter="$HAVE_NSENTER" '
        FILENAME == ARGV[1] { if ($4 ~ /^[0-9]+$/) pre[$1] = $4; next }
        {
            n++
            line[n] = $0
            total[n] = ($4 ~ /^[0-9]+$/) ? $4 + 0 : 0
            recent[n] = ($1 in pre) ? total[n] - pre[$1] : total[n]
            if (recent[n] < 0) recent[n] = total[n]
            st = ""
            if ($1 == self) st = "self"
            else if (sel == "none") st = "no_capture"
            else if (sel == "host") st = "host_only"
            else if (sel != "all" && index("," sel ",", "," $1 ",") == 0) st = "not_selected"
            else if (nsenter != 1) st = "no_nsenter"
            state[n] = st
        }
        END {
            for (c = 0; c < max; c++) {
                best = 0
                for (k = 1; k <= n; k++) {
                    if (state[k] != "") continue
                    if (!best || recent[k] > recent[best] ||
                        (recent[k] == recent[best] && total[k] > total[best])) best = k
                }
                if (!best) break
                state[best] = "capture"
            }
            for (k = 1; k <= n; k++) {
                split(line[k], f, "\t")
                print f[1], f[2], f[3], (state[k] == "" ? "beyond_max" : state[k]), recent[k],
                    total[k], f[5], f[6], f[7]
            }
        }' "$np_pre" "$DIR/.netns-arm" >"$DIR/.netns-chosen"
    np_until=$(budget)
    while IFS="$TAB" read -r np_ino np_pid np_name np_state _; do
        [ "$np_state" = capture ] || continue
        # A namespace that never answers must not hold up the others, nor the arming.
        past "$np_until" && break
        np_h=$(ns_handle "$np_ino" "$np_pid" "$np_name") || continue
        in_ns "$np_ino" "$np_h" ip -o link show >"$DIR/ns$np_ino.ip-link.txt" 2>/dev/null
        in_ns "$np_ino" "$np_h" ip -o addr show >"$DIR/ns$np_ino.ip-addr.txt" 2>/dev/null
    done <"$DIR/.netns-chosen"
}

# The interfaces that are up in an `ip -o link` file: INDEX NAME TAG, at most NS_IFACE_LIMIT.
ns_ifaces() {
    awk -v limit="$NS_IFACE_LIMIT" '
        {
            idx = $1; sub(/:$/, "", idx)
            nm = $2; sub(/:$/, "", nm)
            if (nm ~ /.@/) sub(/@[^@]*$/, "", nm)
            if (idx !~ /^[0-9]+$/ || $3 !~ /^<.*>$/) next
            if (("," substr($3, 2, length($3) - 2) ",") !~ /,UP,/) next
            if (++n > limit) exit 3
            tag = (nm ~ /^[A-Za-z0-9_.@+-]+$/ && length(nm) <= 15) ? nm : "if" idx
            print idx "\t" nm "\t" tag
        }' "$1"
}

# Start the captures inside the chosen namespaces, as the host's own: same filter, snaplen,
# duration, size cap. A namespace whose process is gone is entered through another process
# still in it; one that is gone altogether is skipped. Writes netns.txt: .netns-chosen with
# STATE captured, no_interface (none up in it), slow (not listed in time) or gone for the chosen
# ones, and the PID used.
ns_launch() {
    nl_fresh=
    while IFS="$TAB" read -r nl_ino nl_pid nl_name nl_state nl_rest; do
        if [ "$nl_state" = capture ] && [ ! -e "$DIR/ns$nl_ino.ip-link.txt" ]; then
            nl_state=slow  # its interfaces could not be listed in time
        fi
        if [ "$nl_state" = capture ]; then
            nl_h=$(ns_handle "$nl_ino" "$nl_pid" "$nl_name")
            if [ "$(stat -L -c %i "$nl_h" 2>/dev/null)" != "$nl_ino" ]; then
                # Its process exited (or the PID was reused): any other process in it will do.
                [ -n "$nl_fresh" ] || { netns_discover >"$DIR/.netns-fresh"; nl_fresh=1; }
                nl_pid=$(awk -F '\t' -v i="$nl_ino" '$1 == i { print $2 }' "$DIR/.netns-fresh")
                nl_h=$(ns_handle "$nl_ino" "${nl_pid:-0}" "$nl_name") || nl_h=
                [ -n "$nl_h" ] && [ "$(stat -L -c %i "$nl_h" 2>/dev/null)" = "$nl_ino" ] || nl_state=gone
                nl_pid=${nl_pid:-0}
                # Entered through another process now: list its interfaces again if need be.
                [ "$nl_state" = gone ] || [ -s "$DIR/ns$nl_ino.ip-link.txt" ] ||
                    in_ns "$nl_ino" "$nl_h" ip -o link show >"$DIR/ns$nl_ino.ip-link.txt" 2>/dev/null
            fi
        fi
        if [ "$nl_state" = capture ]; then
            ns_ifaces "$DIR/ns$nl_ino.ip-link.txt" >"$DIR/.ifaces" ||
                say "note=namespace $nl_ino has more than $NS_IFACE_LIMIT interfaces up: only the first $NS_IFACE_LIMIT captured" >>"$DIR/notes.txt"
            nl_state=captured
            [ -s "$DIR/.ifaces" ] || nl_state=no_interface
            while IFS="$TAB" read -r _ nl_if nl_tag; do
                (
                    ulimit -f "$cap_blocks"
                    exec timeout -s INT -k 2 "$tdur" nsenter --net="$nl_h" sh -c "$NS_EXEC" sh "$nl_ino" \
                        tcpdump -i "$nl_if" -n -s "$SNAPLEN" --immediate-mode -U -w - "$FILTER"
                ) >"$DIR/ns$nl_ino.rst-$nl_tag.pcap" 2>"$DIR/ns$nl_ino.tcpdump-$nl_tag.err" &
                CAPTURE_PIDS="$CAPTURE_PIDS $!"
                NS_TCPDUMPS=$((NS_TCPDUMPS + 1))
                printf '%s\t%s\t%s\n' "$nl_tag" "$!" "$nl_if" >>"$DIR/ns$nl_ino.captures.txt"
            done <"$DIR/.ifaces"
            [ "$nl_state" = captured ] && NS_CAPTURED=$((NS_CAPTURED + 1))
        fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$nl_ino" "$nl_pid" "$nl_name" "$nl_state" "$nl_rest"
    done <"$DIR/.netns-chosen" >"$DIR/netns.txt"
}

# Sockets of every captured namespace, into nsINODE.$1, entered through a process in it now
# (from the last counters snapshot's discovery, $2).
snapshot_ns_sockets() {
    ss_until=$(budget)
    awk -F '\t' 'FILENAME == ARGV[1] { pid[$1] = $2; name[$1] = $3; next }
        $4 == "captured" && ($1 in pid) { print $1 "\t" pid[$1] "\t" name[$1] }' "$2" "$DIR/netns.txt" |
        while IFS="$TAB" read -r ss_ino ss_pid ss_name; do
            past "$ss_until" && break
            ss_h=$(ns_handle "$ss_ino" "$ss_pid" "$ss_name") || continue
            snapshot_sockets "$DIR/ns$ss_ino.$1" in_ns "$ss_ino" "$ss_h"
        done
}

# Exit codes of the namespaces' captures, beside their captures.txt.
ns_exit_codes() {
    for ec_file in "$DIR"/ns*.captures.txt; do
        [ -f "$ec_file" ] || continue
        ec_out=${ec_file%.captures.txt}.exit-codes.txt
        : >"$ec_out"
        while IFS="$TAB" read -r _ ec_pid _; do
            wait "$ec_pid"
            printf '%s\t%s\n' "$ec_pid" "$?" >>"$ec_out"
        done <"$ec_file"
    done
}

# tracefs: our own instance, so that other users of tracing are not disturbed.
# The costly part of tracing, done while arming: the instance, its buffer and the events
# enabled, with recording off (enabling a tracepoint takes the kernel's tracing locks, slow when
# many enable at once). trace_go switches recording on at the window's lead-in.
trace_arm() {
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
    echo 0 >"$inst/tracing_on" 2>/dev/null
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
}

# Recording on, and a marker that ties the trace clock to wall-clock time.
trace_go() {
    [ -n "${TRACE_INSTANCE:-}" ] || return 0
    echo 1 >"$TRACE_INSTANCE/tracing_on" 2>/dev/null
    echo "fleetrst-sync $(now)" >"$TRACE_INSTANCE/trace_marker" 2>/dev/null
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
    lease_file='' ns_sel=all nsmax=16
    while [ "$#" -gt 0 ]; do
        case $1 in
            lease=?*) lease_file=${1#lease=} ;;
            ns=?*) ns_sel=${1#ns=} ;;
            nsmax=*) nsmax=${1#nsmax=} ;;
            *) break ;;
        esac
        shift
    done
    case $ns_sel in
        all | host | none) ;;
        *[!0-9,]* | ,* | *, | *,,*) die "bad namespace list $ns_sel" ;;
    esac
    case $nsmax in '' | *[!0-9]* | ?????*) die "not a number: $nsmax" ;; esac
    [ "$nsmax" -le "$NS_CAPTURE_LIMIT" ] || nsmax=$NS_CAPTURE_LIMIT
    [ "${1:-}" = "--" ] && shift
    [ -d "$DIR" ] || { say "error=run directory $DIR is missing"; exit 2; }
    private_dir "$DIR" || die "refusing run directory $DIR (not a private directory of this user)"
    if [ -n "$lease_file" ] && [ ! -e "$lease_file" ]; then
        say "error=lease file $lease_file is missing"
        exit 2
    fi
    CAPTURE_PIDS=
    HOST_PIDS=
    TRACE_INSTANCE=
    TRACE_MOUNTED=
    NAP_PID=
    TIMER_PID=
    NS_CAPTURED=0
    NS_TCPDUMPS=0
    NS_SELF=$(stat -L -c %i "/proc/$$/ns/net" 2>/dev/null)
    HAVE_NSENTER=0
    command -v nsenter >/dev/null 2>&1 && [ -n "$NS_SELF" ] && HAVE_NSENTER=1
    me=$$
    waited=
    # Choose the namespaces to capture now, before the window is agreed on: it takes a moment.
    t_arm=$(now)
    ns_prepare
    t_armed=$(now)
    # Until the lease is watched, a signal or a lost orchestrator ends the run here, and what
    # was set up goes with it.
    trap on_lease_end HUP TERM INT
    # Whatever can be done before the window is done now, not at its start: under load every
    # step at the start instant makes this host's window later than the others'.
    # Whole seconds for timeout(1), rounded up: the window may be fractional. The captures are
    # stopped once the window's end is counted; timeout is the bound if this shell cannot.
    tdur=$(awk -v d="$duration" -v l="$LEAD" -v t="$TAIL" -v g="$STOP_GRACE" \
        'BEGIN { x = l + d + t + g; printf "%d\n", (x == int(x)) ? x : int(x) + 1 }')
    ip -o link show >"$DIR/ip-link.txt" 2>/dev/null
    ip -o addr show >"$DIR/ip-addr.txt" 2>/dev/null
    if [ "$trace" = 1 ]; then
        trace_arm >>"$DIR/notes.txt"
    fi
    if [ "$start" = wait ]; then
        waited=1
        # Armed first, started later: the orchestrator sends "start=EPOCH" (this host's clock)
        # once every host is armed, so a slow host cannot make the others start early.
        say "armed pid=$$ time=$(now)"
        IFS= read -r go || on_lease_end
        start=${go#start=}
        is_number "$start" || { cleanup; die "not a number: $start"; }
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

    t_lead=$(now)
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
        HOST_PIDS="$HOST_PIDS $!"
        printf '%s\t%s\t%s\n' "$tag" "$!" "$ifname" >>"$DIR/captures.txt"
    done
    ns_launch
    trace_go
    t_led=$(now)

    nap "$(until_epoch "$start")"
    # Counters first, host and namespaces, as close to the instant as can be; sockets after.
    t0=$(now)
    snapshot_counters "$DIR/counters-start.txt" start
    snapshot_ns_counters start
    t1=$(now)
    snapshot_sockets "$DIR/sockets-start.txt"
    snapshot_ns_sockets sockets-start.txt "$DIR/.netns-start"
    t2=$(now)
    say "started time=$(now)"

    end=$(awk -v s="$start" -v d="$duration" 'BEGIN { printf "%.6f", s + d }')
    nap "$(until_epoch "$end")"
    t3=$(now)
    snapshot_counters "$DIR/counters-end.txt" end
    snapshot_ns_counters end
    t4=$(now)
    snapshot_sockets "$DIR/sockets.txt"
    snapshot_ns_sockets sockets.txt "$DIR/.netns-end"
    t5=$(now)
    say "ended time=$(now)"
    if [ "$trace" = 1 ]; then
        trace_stop "$DIR/tcp_send_reset.trace"
    fi
    # The captures must cover the counted window even when this host is too loaded to keep
    # time: they stop after the end snapshots, and no earlier than TAIL after the window.
    nap "$(until_epoch "$(awk -v e="$end" -v t="$TAIL" 'BEGIN { printf "%.6f", e + t }')")"
    for p in $CAPTURE_PIDS; do
        kill -INT "$p" 2>/dev/null
    done

    : >"$DIR/exit-codes.txt"
    for p in $HOST_PIDS; do
        wait "$p"
        printf '%s\t%s\n' "$p" "$?" >>"$DIR/exit-codes.txt"
    done
    ns_exit_codes
    CAPTURE_PIDS=
    write_cost "$DIR/cost.txt"

    # Hand the files to the login user, so they can be fetched without privileges.
    if [ -n "${SUDO_UID:-}" ] && [ "$(id -u)" = 0 ]; then
        chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$DIR" 2>/dev/null
    fi
    # One stat and one sha256sum for all files: a host with many namespaces has hundreds.
    (
        cd "$DIR" || exit 0
        stat -c '%s %n' -- * && say "---" && sha256sum -- *
    ) 2>/dev/null | awk '
        $0 == "---" { sums = 1; next }
        !sums { size[$2] = $1; order[++n] = $2; next }
        { sum[$2] = $1 }
        END { for (k = 1; k <= n; k++) if (order[k] in sum) print "file " size[order[k]] " " sum[order[k]] " " order[k] }'
    say "done time=$(now)"

    # Wait for the orchestrator to fetch, but not forever: the end of the lease interrupts
    # the nap. (A timer in a subshell would leave its sleep behind, holding our stdout.)
    trap 'exec >/dev/null 2>&1; cleanup; exit 0' USR1 HUP TERM INT
    nap "$collect_timeout"
    exec >/dev/null 2>&1
    cleanup
    exit 0
}

# What the run cost the host: CPU of this shell and of everything it waited for (the captures
# included), the wall time of the snapshots at the window's start and end (counters, then
# sockets) and of choosing the namespaces, and how many namespaces were counted and captured.
write_cost() {
    {
        say "# fleetrst cost"
        say "namespaces_counted=$(awk -F '\t' -v self="$NS_SELF" '$1 != self' "$DIR/.netns-start" 2>/dev/null | wc -l | tr -d ' ')"
        say "namespaces_captured=$NS_CAPTURED"
        say "tcpdumps=$(($(printf '%s' "$HOST_PIDS" | wc -w) + NS_TCPDUMPS))"
        awk -v a="$t_arm" -v b="$t_armed" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" \
            -v t4="$t4" -v t5="$t5" -v s="$start" \
            -v tl0="$t_lead" -v tl1="$t_led" 'BEGIN {
                printf "choose_s=%.3f\n", b - a
                printf "start_late_s=%.3f\n", t0 - s
                printf "start_captures_s=%.3f\n", tl1 - tl0
                printf "start_counters_s=%.3f\nstart_sockets_s=%.3f\n", t1 - t0, t2 - t1
                printf "end_counters_s=%.3f\nend_sockets_s=%.3f\n", t4 - t3, t5 - t4
            }'
        say "--- times"
        times
    } >"$1" 2>/dev/null
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
        for c in "$d"/captures.txt "$d"/ns*.captures.txt; do
            [ -r "$c" ] || continue
            while IFS="$TAB" read -r _ pid _; do
                # /proc, not kill -0: the captures may belong to root and we may not.
                if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
                    alive=1
                fi
            done <"$c"
        done
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
