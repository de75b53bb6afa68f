#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# netcad itself, as netcad(8) documents it: --version, --workers, detaching
# without --foreground, SIGINT/SIGTERM, the socket's and its directory's
# modes; and NETCA_MODULE_CACHE of netca-pkcs11(8).  One case per meson test:
# daemon.sh CASE.  tests/lib/fixture.sh gives the temp dir (HOME and
# XDG_RUNTIME_DIR in it), a daemon with the soft token "netca-test" and the
# clean-up; the daemons a case starts itself are stopped by daemon_cleanup.
#
# Environment (from meson): NETCA_BUILD_ROOT, NETCA_SOURCE_ROOT,
# NETCA_PROJECT_VERSION (meson's project version), NETCA_TOKEN_INFO_LOOP.

CASE=${1:?usage: daemon.sh CASE}
: "${NETCA_SOURCE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export P11_TEST_MODULE=netca
# shellcheck source=../lib/fixture.sh
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"

fixture_setup
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
# No USB discovery thread in the daemons started here (thread counts).
export NETCA_USB=0

# Daemons started by the cases (pids), stopped at exit before the fixture's.
EXTRA_PIDS=()
DETACHED_SOCKETS=()
daemon_cleanup() {
        local rc=$? p s
        set +e
        # Detached daemons a failed check left unrecorded.
        for s in "${DETACHED_SOCKETS[@]}"; do
                p=$(pid_of_socket "$s") && EXTRA_PIDS+=("$p")
        done
        for p in "${EXTRA_PIDS[@]}"; do
                gone "$p" && continue
                kill -TERM "$p" 2>/dev/null
                for _ in $(seq 100); do
                        gone "$p" && break
                        sleep 0.1
                done
                gone "$p" || kill -KILL "$p" 2>/dev/null
        done
        (exit "$rc")
        fixture_cleanup
}
trap daemon_cleanup EXIT

assert_eq() {
        [[ "$1" == "$2" ]] || fail "${3:-value}: got '$1', expected '$2'"
}

# wait_for COND-COMMAND WHAT: polls for up to 10 s.
wait_for() {
        local i
        for i in $(seq 200); do
                eval "$1" && return 0
                sleep 0.05
        done
        fail "$2 (not within 10 s)"
}

# start_fg NAME ARGS...: `netcad --foreground` on $T/NAME/s and $T/NAME/d,
# stdout and stderr in $T/NAME.log; sets FG_PID once it is serving.
FG_PID=
start_fg() {
        local name=$1
        shift
        mkdir -p "$T/$name"
        "$NETCAD" --foreground --socket "$T/$name/s" --data-dir "$T/$name/d" "$@" \
                >"$T/$name.log" 2>&1 </dev/null &
        FG_PID=$!
        EXTRA_PIDS+=("$FG_PID")
        wait_for "grep -q 'serving ' '$T/$name.log' || ! kill -0 $FG_PID 2>/dev/null" "netcad $name did not start"
        kill -0 "$FG_PID" 2>/dev/null || { cat "$T/$name.log" >&2; fail "netcad $name exited at start"; }
}

# stop_wait PID SIGNAL: signals a child of this shell; its exit status in ST.
ST=
stop_wait() {
        kill "-$2" "$1"
        local i
        for i in $(seq 100); do
                kill -0 "$1" 2>/dev/null || break
                sleep 0.1
        done
        kill -0 "$1" 2>/dev/null && fail "netcad (pid $1) still runs 10 s after SIG$2"
        ST=0
        wait "$1" || ST=$?
        forget_pid "$1"
}

# forget_pid PID: an ended daemon is not signalled at exit (its pid may be reused).
forget_pid() {
        local p keep=()
        for p in "${EXTRA_PIDS[@]}"; do
                [[ $p == "$1" ]] || keep+=("$p")
        done
        EXTRA_PIDS=("${keep[@]}")
}

# gone PID: the process has ended (a zombie whose reaper is slow counts: the
# detached daemon is not our child).
gone() {
        ! kill -0 "$1" 2>/dev/null && return 0
        [[ $(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) == Z ]]
}

threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }

# pid_of_socket SOCKET: the netcad process whose command line has SOCKET.
pid_of_socket() {
        local p cmd
        for p in /proc/[0-9]*; do
                cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
                if [[ $cmd == "$NETCAD "*"--socket $1 "* ]]; then
                        echo "${p#/proc/}"
                        return 0
                fi
        done
        return 1
}

case_version() {
        local out rc
        : "${NETCA_PROJECT_VERSION:?meson sets NETCA_PROJECT_VERSION}"
        for opt in --version -V; do
                rc=0
                "$NETCAD" "$opt" >"$T/v.out" 2>"$T/v.err" || rc=$?
                assert_eq "$rc" 0 "exit status of netcad $opt"
                assert_eq "$(cat "$T/v.out")" "netcad $NETCA_PROJECT_VERSION" "netcad $opt"
                [[ ! -s "$T/v.err" ]] || { cat "$T/v.err" >&2; fail "netcad $opt wrote to stderr"; }
        done
        # The daemon reports the same version over the socket.
        "$NETCA_TOOL" daemon status --json >"$T/st.json"
        assert_eq "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$T/st.json")" \
                "$NETCA_PROJECT_VERSION" "version in daemon status"
        # --help: exit 0, lists the options; usage errors: exit 2.
        rc=0
        "$NETCAD" --help >"$T/h.out" 2>&1 || rc=$?
        assert_eq "$rc" 0 "netcad --help"
        assert_file_contains "$T/h.out" "--workers N" "help"
        assert_file_contains "$T/h.out" "--foreground" "help"
        for bad in --no-such-option extra-argument; do
                rc=0
                "$NETCAD" --foreground --socket "$T/bad/s" "$bad" >"$T/u.out" 2>&1 || rc=$?
                assert_eq "$rc" 2 "netcad $bad"
                assert_file_contains "$T/u.out" "Usage: netcad" "usage for $bad"
        done
        [[ ! -e "$T/bad/s" ]] || fail "netcad made a socket despite a usage error"
}

case_workers() {
        local bad rc
        # Out of 1..256, or not a number: exit 2 with a clear message, no socket.
        for bad in 0 257 -1 abc 8x "" 99999999999999999999; do
                rc=0
                timeout 10 "$NETCAD" --foreground --socket "$T/w/s" --data-dir "$T/w/d" --workers "$bad" \
                        >"$T/w.out" 2>&1 </dev/null || rc=$?
                assert_eq "$rc" 2 "exit status of --workers '$bad'"
                assert_file_contains "$T/w.out" "^netcad: --workers wants a number from 1 to 256$" "--workers '$bad'"
                [[ ! -e "$T/w/s" ]] || fail "--workers '$bad': a socket was created"
        done
        rc=0
        timeout 10 "$NETCAD" --foreground --socket "$T/w/s" --workers >"$T/w.out" 2>&1 </dev/null || rc=$?
        assert_eq "$rc" 2 "--workers without a value"

        # Accepted: the bounds, and -w.  Each runs that many general workers
        # from the start (threads of the process; nothing else varies, and
        # lane threads only start for requests).
        start_fg w1 --workers 1
        local t1 p1=$FG_PID
        start_fg w6 -w 6
        local t6 p6=$FG_PID
        start_fg wdef
        local tdef pdef=$FG_PID
        start_fg w256 --workers 256
        local t256 p256=$FG_PID
        # Every thread (workers, the usage-record writer) starts before
        # "serving" is logged: the counts are final once start_fg returns.
        t1=$(threads_of "$p1") t6=$(threads_of "$p6") tdef=$(threads_of "$pdef") t256=$(threads_of "$p256")
        log "threads: --workers 1: $t1, 6: $t6, default: $tdef, 256: $t256"
        assert_eq "$((t6 - t1))" 5 "threads of --workers 6 minus --workers 1"
        assert_eq "$((tdef - t1))" 7 "threads of the default (8 workers) minus --workers 1"
        assert_eq "$((t256 - t1))" 255 "threads of --workers 256 minus --workers 1"
        # And one worker serves (token operations go to their own lane).
        NETCA_SOCKET="$T/w1/s" "$NETCA_TOOL" token create-soft --label one --pin 11112222 --so-pin 33334444 \
                >"$T/w1.out" 2>&1 || { cat "$T/w1.out" >&2; fail "create-soft on a daemon with one worker"; }
        NETCA_SOCKET="$T/w1/s" "$NETCA_TOOL" key gen --type ec-p256 --pin 11112222 >"$T/w1.out" 2>&1 ||
                { cat "$T/w1.out" >&2; fail "key gen on a daemon with one worker"; }
}

case_detach() {
        local rc=0 pid
        mkdir -p "$T/det"
        DETACHED_SOCKETS+=("$T/det/s" "$T/bad/s")
        # Without --foreground the command returns once the daemon serves.
        NETCA_LOG_FILE="$T/det.log" timeout 20 "$NETCAD" --socket "$T/det/s" --data-dir "$T/det/d" \
                >"$T/det.out" 2>&1 </dev/null &
        local parent=$!
        wait "$parent" || rc=$?
        assert_eq "$rc" 0 "exit status of the detaching netcad"
        [[ -S "$T/det/s" ]] || { cat "$T/det.log" >&2; fail "the parent exited before the socket was there"; }
        [[ ! -s "$T/det.out" ]] || { cat "$T/det.out" >&2; fail "the detached daemon wrote to the terminal"; }
        pid=$(pid_of_socket "$T/det/s") || fail "no netcad process serves $T/det/s after the parent exited"
        EXTRA_PIDS+=("$pid")
        [[ $pid != "$parent" ]] || fail "the daemon is the process that was started"
        kill -0 "$pid" 2>/dev/null || fail "the detached daemon is not running"
        # It has its own session (setsid), away from the starting terminal.
        local sid
        sid=$(awk '{ sub(/^.*\) /, ""); print $4 }' "/proc/$pid/stat")
        assert_eq "$sid" "$pid" "session of the detached daemon"
        # It serves, and says who it is.
        NETCA_SOCKET="$T/det/s" "$NETCA_TOOL" token create-soft --label det --pin 11112222 --so-pin 33334444 \
                >"$T/det.ct" 2>&1 || { cat "$T/det.ct" >&2; fail "create-soft on the detached daemon"; }
        NETCA_SOCKET="$T/det/s" "$NETCA_TOOL" daemon status --json >"$T/det.json" ||
                fail "daemon status of the detached daemon"
        assert_eq "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$T/det.json")" "$pid" \
                "pid in daemon status of the detached daemon"
        assert_file_contains "$T/det.log" "serving $T/det/s" "log of the detached daemon (NETCA_LOG_FILE)"
        # (netcad(8) documents no pid file: none is looked for.)

        # A second one on the same socket cannot start: the parent says so (1).
        rc=0
        NETCA_LOG_FILE="$T/det2.log" timeout 20 "$NETCAD" --socket "$T/det/s" --data-dir "$T/det/d2" \
                >"$T/det2.out" 2>&1 </dev/null || rc=$?
        assert_eq "$rc" 1 "exit status of a detaching netcad whose socket is taken"
        assert_file_contains "$T/det2.log" "another netcad is already serving" "log of the second daemon"
        kill -0 "$pid" 2>/dev/null || fail "the first daemon died when a second one was started"

        # A daemon that fails after detaching (its state database cannot be
        # opened) makes the parent exit 1 too.
        mkdir -p "$T/bad/d/state.db"
        rc=0
        NETCA_LOG_FILE="$T/bad.log" timeout 20 "$NETCAD" --socket "$T/bad/s" --data-dir "$T/bad/d" \
                >/dev/null 2>&1 </dev/null || rc=$?
        assert_eq "$rc" 1 "exit status of a detaching netcad that cannot open its state"
        assert_file_contains "$T/bad.log" "cannot open the state database" "log of the failed daemon"

        # SIGTERM: it stops and removes its socket.
        kill -TERM "$pid"
        wait_for "gone $pid" "the detached daemon did not stop on SIGTERM"
        forget_pid "$pid"
        DETACHED_SOCKETS=()
        [[ ! -e "$T/det/s" ]] || fail "the detached daemon left its socket behind"
        assert_file_contains "$T/det.log" "stopped" "log of the stopped daemon"
}

case_sigint() {
        start_fg int
        local pid=$FG_PID
        export NETCA_SOCKET="$T/int/s"
        "$NETCA_TOOL" token create-soft --label sig --pin 11112222 --so-pin 33334444 >"$T/o" 2>&1 ||
                { cat "$T/o" >&2; fail "create-soft"; }
        "$NETCA_TOOL" key gen --type ec-p256 --label before-sigint --pin 11112222 >"$T/o" 2>&1 ||
                { cat "$T/o" >&2; fail "key gen"; }
        # A client holding a session and a login while the daemon stops.
        "$NETCA_TOOL" list >/dev/null
        stop_wait "$pid" INT
        assert_eq "$ST" 0 "exit status of netcad on SIGINT"
        [[ ! -e "$T/int/s" ]] || fail "netcad left its socket behind on SIGINT"
        assert_file_contains "$T/int.log" "signal 2: shutting down" "log on SIGINT"
        assert_file_contains "$T/int.log" "stopped$" "log on SIGINT"
        # The soft token was flushed: the key is there after a restart.
        start_fg int
        "$NETCA_TOOL" list --json >"$T/l.json" || fail "list after the restart"
        assert_eq "$($PY -c 'import json,sys; print([k["label"] for k in json.load(open(sys.argv[1]))["tokens"][0]["keys"]])' "$T/l.json")" \
                "['before-sigint']" "keys after SIGINT and restart"
        # SIGTERM likewise.
        stop_wait "$FG_PID" TERM
        assert_eq "$ST" 0 "exit status of netcad on SIGTERM"
        [[ ! -e "$T/int/s" ]] || fail "netcad left its socket behind on SIGTERM"
}

case_socket_mode() {
        # The default socket under $XDG_RUNTIME_DIR/netca, with a umask that
        # would leave both open to everyone.
        local rt="$T/rt" pid
        mkdir -p "$rt" && chmod 0700 "$rt"
        (
                umask 000
                unset NETCA_SOCKET
                XDG_RUNTIME_DIR="$rt" exec "$NETCAD" --foreground --data-dir "$T/sm-d" >"$T/sm.log" 2>&1 </dev/null
        ) &
        pid=$!
        EXTRA_PIDS+=("$pid")
        wait_for "[[ -S '$rt/netca/netcad.sock' ]] || ! kill -0 $pid 2>/dev/null" "no socket in $rt/netca"
        [[ -S "$rt/netca/netcad.sock" ]] || { cat "$T/sm.log" >&2; fail "netcad exited"; }
        assert_eq "$(stat -c %a "$rt/netca")" 700 "mode of the socket's directory"
        assert_eq "$(stat -c %a "$rt/netca/netcad.sock")" 600 "mode of the socket"
        assert_eq "$(stat -c %u "$rt/netca/netcad.sock")" "$(id -u)" "owner of the socket"
        assert_eq "$(stat -c %a "$T/sm-d")" 700 "mode of the data directory"
        # Every directory it creates for a socket path is 0700.
        (umask 000; exec "$NETCAD" --foreground --socket "$T/n/a/b/s" --data-dir "$T/n-d" >"$T/n.log" 2>&1 </dev/null) &
        pid=$!
        EXTRA_PIDS+=("$pid")
        wait_for "[[ -S '$T/n/a/b/s' ]] || ! kill -0 $pid 2>/dev/null" "no socket $T/n/a/b/s"
        local d
        for d in "$T/n" "$T/n/a" "$T/n/a/b"; do
                assert_eq "$(stat -c %a "$d")" 700 "mode of $d"
        done
        assert_eq "$(stat -c %a "$T/n/a/b/s")" 600 "mode of $T/n/a/b/s"
}

# NETCA_MODULE_CACHE=0 (netca-pkcs11(8)): every call goes to the daemon.  The
# daemon's own count of PKCS#11 requests (daemon status, p11_requests) is
# the judge: 300 C_GetTokenInfo are 300 requests without the copy, a handful
# with it.
case_module_cache() {
        local loop=${NETCA_TOKEN_INFO_LOOP:?meson sets NETCA_TOKEN_INFO_LOOP} n=300 q0 q1 q2 q3
        requests() {
                "$NETCA_TOOL" daemon status --json >"$T/st.json" || fail "daemon status"
                $PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["p11_requests"]))' "$T/st.json"
        }
        run_loop() {
                foreign "$loop" "$MODULE" "$n" >"$T/loop.out" 2>&1 || { cat "$T/loop.out" >&2; fail "token-info-loop ($*)"; }
                assert_eq "$(sed 's/ *$//' "$T/loop.out")" "$TOKEN_LABEL" "token label ($*)"
        }
        q0=$(requests)
        run_loop "default"
        q1=$(requests)
        NETCA_MODULE_CACHE=0 run_loop "NETCA_MODULE_CACHE=0"
        q2=$(requests)
        NETCA_MODULE_CACHE=1 run_loop "NETCA_MODULE_CACHE=1"
        q3=$(requests)
        log "PKCS#11 requests for $n C_GetTokenInfo: default $((q1 - q0)), NETCA_MODULE_CACHE=0 $((q2 - q1)), =1 $((q3 - q2))"
        (((q1 - q0) < n / 10)) || fail "with the module's copy, $n C_GetTokenInfo made $((q1 - q0)) requests"
        (((q2 - q1) >= n)) || fail "NETCA_MODULE_CACHE=0: $n C_GetTokenInfo made only $((q2 - q1)) requests"
        (((q3 - q2) < n / 10)) || fail "NETCA_MODULE_CACHE=1 turned the copy off ($((q3 - q2)) requests)"
}

fn="case_${CASE//-/_}"
declare -F "$fn" >/dev/null || fail "unknown case $CASE"
"$fn"
log "$CASE: ok"
