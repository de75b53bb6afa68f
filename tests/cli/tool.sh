# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# netca-tool helpers for tests that source tests/lib/fixture.sh: tool, ok,
# expect_rc, json, assert_eq (tests/cli/cli.sh, tests/stress/hostile-soft.sh).

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

