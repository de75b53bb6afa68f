#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Firefox ESR headless logs in to a local HTTPS site with the token's
# certificate.  policies.json (SecurityDevices: the module; Certificates: the
# test CA; Preferences: security.default_personal_cert "Select Automatically")
# is written to /usr/lib/firefox-esr/distribution/ and restored on exit.  The
# token advertises CKF_PROTECTED_AUTHENTICATION_PATH; Firefox's C_Login with
# a NULL PIN is answered by the scripted pinentry the daemon runs.
export FAKE_PINENTRY_CONTROL="${TMPDIR:-/tmp}/netca-ff-pinentry.$$"
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
. "$NETCA_SOURCE_ROOT/tests/browser/browser-lib.sh"
need_cmd firefox-esr openssl
fixture_setup
browser_trap
POLICY_DIR=/usr/lib/firefox-esr/distribution
POLICY="$POLICY_DIR/policies.json"
[[ -w "$POLICY_DIR" || -w /usr/lib/firefox-esr ]] || skip "cannot write $POLICY (not root)"
browser_restore() {
        if [[ -e "$T/policies.json.saved" ]]; then
                cp "$T/policies.json.saved" "$POLICY"
        else
                rm -f "$POLICY"
        fi
        rm -f "$FAKE_PINENTRY_CONTROL" "$FAKE_PINENTRY_CONTROL.log"
}
# Save the system's file, unless it is one a killed run of this test left
# (it names a netca-test temp dir): that one is simply removed at the end.
if [[ -e "$POLICY" ]] && ! grep -q '/netca-test\.' "$POLICY"; then
        cp "$POLICY" "$T/policies.json.saved"
fi

# An ASan-built module cannot live in Debian's Firefox: without the runtime
# preloaded NSS fails to load it ("ASan runtime does not come first"), with it
# preloaded Firefox (its own jemalloc) dies of SIGSEGV at start.  The plain
# build runs this test; the ASan build covers the same daemon paths through
# the other suites.
[[ $SANITIZED = 1 ]] && skip "Firefox cannot load an ASan-built module (see the comment above)"
browser_pki
browser_server_start
printf 'answer:%s\n' "$USER_PIN" >"$FAKE_PINENTRY_CONTROL"
"$NETCA_TOOL" pinentry set --program "$NETCA_SOURCE_ROOT/tests/pin/fake-pinentry.py" --protected-path soft >/dev/null

mkdir -p "$POLICY_DIR"
cat >"$POLICY" <<JSON
{"policies": {
  "SecurityDevices": {"NETCA": "$MODULE"},
  "Certificates": {"Install": ["$T/pki/ca.pem"]},
  "Preferences": {"security.default_personal_cert": {"Value": "Select Automatically", "Status": "locked"}},
  "DisableAppUpdate": true, "DisableTelemetry": true
}}
JSON
# A new profile for each attempt, so that a hung attempt leaves nothing
# (locks, session state) to the next.
new_profile() {
        PROFILE="$T/ff-profile-$1"
        mkdir -p "$PROFILE"
        cat >"$PROFILE/user.js" <<'JS'
user_pref("security.default_personal_cert", "Select Automatically");
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
JS
}
export NETCA_DEBUG=trace NETCA_LOG_FILE="$T/ff-trace.log"
req0=$("$NETCA_TOOL" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("p11_requests", -1))')
# Three attempts.  Firefox sometimes never finishes a TLS handshake during
# which it had to log in to a token (seen about once in 6 runs on a loaded
# 2-core machine, also with the code before issue 3's changes; the same
# Firefox behaviour is reported with OpenSC, OpenSC issue #2987 and Mozilla
# bug 1872998, closed as won't fix): its trace then ends with a successful
# C_Login and nothing after it, for a minute, and the stacks taken then
# (below) show no Firefox thread in the module.  On 2026-12-02 it hung in 1
# attempt of 27 alone, and in both attempts of 2 full-suite runs out of 4.
# On 2026-12-08 one attempt hung in 1 of 4 CI runs (12 of 12 isolated runs
# under load did not): the trace ended "C_Logout = 0x101, C_Login = 0x0",
# no Firefox thread was in the module, and every netcad thread was idle
# (lanes in pthread_cond_wait, the loop in epoll_wait): the wait is in
# Firefox after a login the module had answered.  A new Firefox with a new
# profile usually gets through; three hangs in a row fail the test.
# When an attempt hangs, the stacks of the Firefox process that loaded the
# module go to the log (gdb, if installed): they tell a call blocked in the
# module from a Firefox that never made one (no arguments: a PIN could be one).
dump_stacks() {
        command -v gdb >/dev/null || return 0
        local p
        for p in $(pgrep -f firefox-esr); do
                grep -q netca-pkcs11 "/proc/$p/maps" 2>/dev/null || continue
                timeout 60 gdb -p "$p" -batch -ex "set print frame-arguments none" -ex "thread apply all bt 30" >"$T/gdb.$p.txt" 2>&1 || true
                log "stacks of Firefox pid $p, threads in the module (all: $T/gdb.$p.txt):"
                awk '/^Thread /{t=$0; shown=0} /netca-pkcs11|in nc_|in rpc_|in transport_/ && !shown {print t; shown=1} /netca-pkcs11|in nc_|in rpc_|in transport_/' \
                        "$T/gdb.$p.txt" | head -n 60 >&2
                # And the threads waiting in NSS or NSPR (a handshake or a
                # login dialog waiting for something), their first frames.
                log "stacks of Firefox pid $p, threads in NSS/NSPR:"
                awk '/^Thread /{if (keep) printf "%s", buf; buf=$0 "\n"; keep=0; n=0; next}
                     /^#/ {if (n < 10) buf=buf $0 "\n"; n++; if (/libnss3|libssl3|libnspr4|libsmime3|PK11|SSL_|PR_Wait/) keep=1}
                     END {if (keep) printf "%s", buf}' "$T/gdb.$p.txt" | head -n 120 >&2
        done
        # And netcad's threads that are not idle (a request stuck in it).
        if [[ -n "${NETCAD_PID:-}" ]]; then
                timeout 60 gdb -p "$NETCAD_PID" -batch -ex "set print frame-arguments none" \
                        -ex "thread apply all bt 12" >"$T/gdb.netcad.txt" 2>&1 || true
                log "netcad's threads, the first frames of each (all: $T/gdb.netcad.txt):"
                awk '/^Thread /{if (n) print ""; print; n=0; next} /^#/ && n < 6 {print; n++}' "$T/gdb.netcad.txt" |
                        head -n 150 >&2
        fi
}
ok=0
for attempt in 1 2 3; do
        new_profile "$attempt"
        timeout -k 5 60 firefox-esr --headless --no-remote --profile "$PROFILE" "$URL" >"$T/ff.out" 2>&1 &
        FF=$!
        wait_for_file "$SUBJECTS" 45 && ok=1
        [[ $ok = 1 ]] || dump_stacks
        kill "$FF" 2>/dev/null; wait "$FF" 2>/dev/null || true
        [[ $ok = 1 ]] && break
        log "attempt $attempt: no client certificate within 45 s; module trace ends with:"
        tail -n 3 "$T/ff-trace.log" >&2 || true
done
unset NETCA_DEBUG NETCA_LOG_FILE
if [[ $ok != 1 ]]; then
        tail -n 30 "$T/ff.out" >&2; tail -n 20 "$T/server.log" >&2
        tail -n 30 "$T/ff-trace.log" >&2 || true
        fail "the server saw no client certificate from Firefox in 3 attempts of 45 s"
fi
grep -q "CN=$CLIENT_CN" "$SUBJECTS" || grep -q "commonName=$CLIENT_CN" "$SUBJECTS" ||
        { cat "$SUBJECTS" >&2; fail "wrong subject"; }
req1=$("$NETCA_TOOL" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("p11_requests", -1))')
grep -q GETPIN "$FAKE_PINENTRY_CONTROL.log" || fail "the PIN did not come from the pinentry"
log "Firefox sent: $(head -n1 "$SUBJECTS")"
log "PKCS#11 calls by Firefox (trace): $(grep -c ' = 0x' "$T/ff-trace.log")"
grep -o 'C_[A-Za-z]*' "$T/ff-trace.log" | sort | uniq -c | sort -rn >&2
log "requests that reached the daemon: $((req1 - req0))"
# However many searches the browser made, the daemon read the token's
# objects from the driver once (answered from memory after that).
loads=$("$NETCA_TOOL" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("object_loads", -1))')
log "object lists read from the driver: $loads"
[[ $loads -eq 1 ]] || fail "the token's objects were read from the driver $loads times, not once"
log "ok"
