# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# netca-tool helpers for tests that source tests/lib/fixture.sh: tool, ok,
# expect_rc, json, assert_eq, netcad_stop, netcad_start (tests/cli/cli.sh,
# tests/stress/hostile-soft.sh, tests/stress/hostile-disk.sh).

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

# tool ARGS...: netca-tool; stdout in $T/out, stderr in $T/err, status in $RC.
RC=0
tool() {
        RC=0
        # A hang is a failure, not a stuck test.
        timeout 60 "$NETCA_TOOL" "$@" >"$T/out" 2>"$T/err" || RC=$?
        [[ $RC -ne 124 ]] || fail "netca-tool $* did not finish within 60 s"
}

# ok ARGS...: netca-tool must succeed.
ok() {
        tool "$@"
        if [[ $RC -ne 0 ]]; then
                cat "$T/out" "$T/err" >&2
                fail "netca-tool $* exited $RC"
        fi
}

# expect_rc N ARGS...: netca-tool must exit with N.
expect_rc() {
        local want=$1
        shift
        tool "$@"
        if [[ $RC -ne $want ]]; then
                cat "$T/out" "$T/err" >&2
                fail "netca-tool $* exited $RC, expected $want"
        fi
}

# json EXPR: evaluates a Python expression on the JSON in $T/out (as j);
# fails on invalid JSON (bytes that are not UTF-8 included).
json() {
        $PY -c 'import json,sys; j=json.load(open(sys.argv[1], encoding="utf-8", errors="strict")); print(eval(sys.argv[2]))' \
                "$T/out" "$1" || { cat "$T/out" >&2; fail "netca-tool printed invalid JSON"; }
}

assert_eq() {
        [[ "$1" == "$2" ]] || fail "${3:-value}: got '$1', expected '$2'"
}

# netcad_stop SIGNAL: stops the daemon (and waits for it).
netcad_stop() {
        kill "-$1" "$NETCAD_PID" 2>/dev/null || true
        wait "$NETCAD_PID" 2>/dev/null || true
        NETCAD_PID=
        rm -f "$NETCA_SOCKET"
}

# netcad_start: the daemon again on the same data dir (no new token); the
# socket answering a status request is the proof it serves.
netcad_start() {
        "$NETCAD" --foreground --socket "$NETCA_SOCKET" --data-dir "$NETCA_DATA_DIR" \
                >>"$T/netcad.log" 2>&1 </dev/null &
        NETCAD_PID=$!
        local i
        for i in $(seq 200); do
                [[ -S "$NETCA_SOCKET" ]] && "$NETCA_TOOL" daemon status >/dev/null 2>&1 && return 0
                kill -0 "$NETCAD_PID" 2>/dev/null || { NETCAD_PID=; fail "netcad exited at start"; }
                sleep 0.05
        done
        fail "netcad did not answer within 10 s"
}
