#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# netca-tool browser register|unregister|status on throw-away HOME dirs:
# Firefox profiles from profiles.ini (relative, absolute, one in use) and
# Chromium's ~/.pki/nssdb; idempotence; a running browser is reported and its
# database left untouched; NSS's modutil then sees the token through the module.
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
need_cmd modutil certutil python3
fixture_setup

tool() { foreign "$NETCA_TOOL" --module "$MODULE" "$@"; }
FF="$HOME/.mozilla/firefox"
mkdir -p "$FF/rel.default" "$T/abs-profile" "$FF/busy"
certutil -N -d "sql:$FF/rel.default" --empty-password
certutil -N -d "sql:$FF/busy" --empty-password
cat >"$FF/profiles.ini" <<INI
[Install4F96D1932A9F858E]
Default=rel.default

[Profile0]
Name=default
IsRelative=1
Path=rel.default
Default=1

[Profile1]
Name=absolute
IsRelative=0
Path=$T/abs-profile

[Profile2]
Name=busy
IsRelative=1
Path=busy

[General]
StartWithLastProfile=1
Version=2
INI
# A running Firefox holds this symlink (target: address:+pid of a live process).
ln -s "127.0.0.1:+$$" "$FF/busy/lock"
busy_sum=$(sha256sum "$FF/busy/pkcs11.txt" "$FF/busy/cert9.db")

# Firefox only: Chromium's database is not created.
rc=0
tool browser register --firefox >"$T/reg1.out" 2>&1 || rc=$?
cat "$T/reg1.out" >&2
[[ $rc -eq 5 ]] || fail "register with a running profile should exit 5, got $rc"
assert_file_contains "$T/reg1.out" "rel.default: registered"
assert_file_contains "$T/reg1.out" "abs-profile: registered"
assert_file_contains "$T/reg1.out" "busy: skipped: the browser is running"
[[ ! -e "$HOME/.pki" ]] || fail "--firefox touched Chromium's database"
[[ "$(sha256sum "$FF/busy/pkcs11.txt" "$FF/busy/cert9.db")" = "$busy_sum" ]] || fail "the busy profile was modified"
for d in "$FF/rel.default" "$T/abs-profile"; do
        assert_file_contains "$d/pkcs11.txt" "^library=$MODULE\$"
        # NSS itself loads the module from the database and sees the token.
        foreign modutil -dbdir "sql:$d" -list "NETCA Token" </dev/null >"$T/list.out" 2>&1 ||
                { cat "$T/list.out" >&2; fail "modutil -list failed on $d"; }
        assert_file_contains "$T/list.out" "$TOKEN_LABEL" "modutil -list (token label)"
done

# Idempotent: the second run changes nothing.
rm "$FF/busy/lock"
sum1=$(sha256sum "$FF/rel.default/pkcs11.txt")
tool browser register --firefox >"$T/reg2.out" 2>&1 || { cat "$T/reg2.out" >&2; fail "second register failed"; }
assert_file_contains "$T/reg2.out" "rel.default: already registered"
assert_file_contains "$T/reg2.out" "busy: registered"
[[ "$(sha256sum "$FF/rel.default/pkcs11.txt")" = "$sum1" ]] || fail "second register rewrote pkcs11.txt"
[[ $(grep -c "^library=.*netca-pkcs11.so" "$FF/rel.default/pkcs11.txt") -eq 1 ]] || fail "module added twice"

# Chromium: ~/.pki/nssdb created; a running chromium is reported.
cp "$(command -v sleep)" "$T/chromium"
"$T/chromium" 60 &
fake=$!
# Until the fork has exec'd, /proc/PID/exe is bash's (the test failed so
# under load).
for _ in $(seq 100); do
        [[ "$(readlink "/proc/$fake/exe" 2>/dev/null)" = "$T/chromium" ]] && break
        sleep 0.05
done
rc=0
tool browser register --chromium >"$T/reg3.out" 2>&1 || rc=$?
kill "$fake"; wait "$fake" 2>/dev/null || true
[[ $rc -eq 5 ]] || { cat "$T/reg3.out" >&2; fail "register with chromium running should exit 5, got $rc"; }
assert_file_contains "$T/reg3.out" "nssdb: skipped: the browser is running"
[[ ! -e "$HOME/.pki/nssdb/pkcs11.txt" ]] || fail "database written while chromium runs"
tool browser register --chromium >"$T/reg4.out" 2>&1 || { cat "$T/reg4.out" >&2; fail "register --chromium failed"; }
assert_file_contains "$T/reg4.out" "nssdb: registered"
assert_file_contains "$HOME/.pki/nssdb/pkcs11.txt" "^library=$MODULE\$"
foreign modutil -dbdir "sql:$HOME/.pki/nssdb" -list "NETCA Token" </dev/null >"$T/list.out" 2>&1
assert_file_contains "$T/list.out" "$TOKEN_LABEL" "modutil -list on ~/.pki/nssdb"

# A stale registration (another path) is replaced, not duplicated.
ln -s "$MODULE" "$T/netca-pkcs11.so"
foreign "$NETCA_TOOL" --module "$T/netca-pkcs11.so" browser register --chromium >"$T/reg5.out" 2>&1 || true
python3 - "$HOME/.pki/nssdb/pkcs11.txt" <<'PY' || fail "module path not updated exactly once"
import sys
libs = [l.strip()[8:] for l in open(sys.argv[1]) if l.startswith("library=") and "netca" in l]
sys.exit(0 if len(libs) == 1 else 1)
PY

# status --json agrees.
tool browser status --json >"$T/status.json"
python3 - "$T/status.json" "$MODULE" <<'PY' || { cat "$T/status.json" >&2; fail "status --json"; }
import json, sys
s = json.load(open(sys.argv[1]))
dbs = {d["profile"] + "/" + d["browser"]: d for d in s["databases"]}
assert len(dbs) == 4, dbs
for k in ("default/firefox", "absolute/firefox", "busy/firefox"):
    assert dbs[k]["registered"] and dbs[k]["current"], k
assert dbs["default/chromium"]["registered"], dbs
PY

# unregister: gone from every database; twice is fine.
tool browser unregister >"$T/unreg.out" 2>&1 || { cat "$T/unreg.out" >&2; fail "unregister failed"; }
tool browser unregister >"$T/unreg2.out" 2>&1 || { cat "$T/unreg2.out" >&2; fail "second unregister failed"; }
[[ $(grep -c "not registered" "$T/unreg2.out") -eq 4 ]] || { cat "$T/unreg2.out" >&2; fail "unregister left some"; }
for d in "$FF/rel.default" "$T/abs-profile" "$FF/busy" "$HOME/.pki/nssdb"; do
        assert_file_not_contains "$d/pkcs11.txt" "netca-pkcs11"
done
log "ok"
