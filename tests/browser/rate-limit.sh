#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The rate limit of failed logins (daemon/core.c, login_fail_check): 10,000
# rapid C_Login calls with the same wrong PIN from one process cost the token
# exactly one try; a different PIN from that process is tried; a success
# forgets the refused PIN; another process gets its own first try.
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
fixture_setup
: "${NETCA_LOGIN_STORM:?}"
"$NETCA_TOOL" token create-soft --label storm --pin 24682468 --so-pin 13571357 --max-tries 8 >/dev/null

tries() {
        "$NETCA_TOOL" --token storm pin status --json >"$T/st.json"
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["user"]["tries_left"])' "$T/st.json"
}
storm() { foreign "$NETCA_LOGIN_STORM" "$MODULE" storm "$@" >"$T/storm.out" 2>&1 || { cat "$T/storm.out" >&2; fail "login-storm"; }; cat "$T/storm.out" >&2; }
line() { sed -n "${1}p" "$T/storm.out"; }
expect_line() { [[ "$(line "$1")" == "$1 $2 "* ]] || fail "step $1: '$(line "$1")', expected '$2'"; }

[[ $(tries) -eq 8 ]] || fail "tries at start: $(tries)"
# 10,000 retries of one wrong PIN, then a different wrong PIN once, then the
# first one again 100 times (it is no longer the last refused PIN: tried once),
# then the right PIN, then the first wrong PIN again (the success forgot it).
storm 11111111:10000
expect_line 1 "ok=0 incorrect=10000 other=0"
[[ $(tries) -eq 7 ]] || fail "10,000 retries of a wrong PIN cost $((8 - $(tries))) tries, not 1"
storm 11111111:1 22222222:1 11111111:100
expect_line 1 "ok=0 incorrect=1 other=0"
expect_line 2 "ok=0 incorrect=1 other=0"
expect_line 3 "ok=0 incorrect=100 other=0"
# A new process: its first try reaches the token (1), the different PIN (1),
# the first one again (1, then refused in the daemon).
[[ $(tries) -eq 4 ]] || fail "after a new process, a different PIN and a switch back: $(tries) tries left, want 4"
storm 24682468:1 11111111:3
expect_line 1 "ok=1 incorrect=0 other=0"
expect_line 2 "ok=0 incorrect=3 other=0"
# The success reset the counter; the wrong PIN after it reached the token once.
[[ $(tries) -eq 7 ]] || fail "after a success and a wrong PIN: $(tries) tries left, want 7"
# The daemon's log never holds the PINs.
assert_file_not_contains "$T/netcad.log" "11111111|22222222|24682468"
log "ok"
