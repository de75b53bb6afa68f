#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The soft token and netca-tool against faults of issue 23 (items 6, 7, 9):
# a crash mid-creation or mid-import, hostile names and PINs.
# One case per meson test: hostile-soft.sh CASE.  tests/lib/fixture.sh
# starts netcad and makes the soft token "netca-test".

CASE=${1:?usage: hostile-soft.sh CASE}
: "${NETCA_SOURCE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export P11_TEST_MODULE=netca
# shellcheck source=../lib/fixture.sh
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"

# shellcheck source=../cli/tool.sh
. "$NETCA_SOURCE_ROOT/tests/cli/tool.sh"
P="--pin $USER_PIN"

# Item 7: what a kill during `token create-soft` leaves in tokens/ (the
# temporary database and SQLite's side files) is removed at the next start;
# the tokens, other files and a creation still in progress (its temporary
# file locked) are left alone.
case_tmpfiles() {
        local dir="$NETCA_DATA_DIR/tokens" u i
        netcad_stop TERM
        for i in 1 2 3; do
                u=$(cat /proc/sys/kernel/random/uuid)
                head -c 20000 /dev/urandom >"$dir/.$u.tmp"
                head -c 20000 /dev/urandom >"$dir/.$u.tmp-wal"
                : >"$dir/.$u.tmp-shm"
                : >"$dir/.$u.tmp-journal"
        done
        # Side files whose database is already gone.
        u=$(cat /proc/sys/kernel/random/uuid)
        : >"$dir/.$u.tmp-wal"
        # Not ours: kept.
        echo keep >"$dir/notes.txt"
        echo keep >"$dir/.hidden"
        # A creation in progress elsewhere: its file is locked (flock), kept.
        u=$(cat /proc/sys/kernel/random/uuid)
        : >"$dir/.$u.tmp"
        exec {lockfd}<"$dir/.$u.tmp"
        flock -x "$lockfd"
        local stale_before
        stale_before=$(find "$dir" -name '.*.tmp*' | wc -l)
        log "stale temporary files before the start: $stale_before"
        netcad_start
        local left
        left=$(find "$dir" -name '.*.tmp*' -printf '%f\n' | sort)
        log "temporary files after the start: $(echo "$left" | grep -c . || true)"
        assert_eq "$left" ".$u.tmp" "temporary files left (only the locked one)"
        exec {lockfd}<&-
        [[ -f "$dir/notes.txt" && -f "$dir/.hidden" ]] || fail "files not made by netcad were removed"
        ok list --json
        assert_eq "$(json 'len(j["tokens"])')" 1 "tokens after the cleanup"
        # A real kill loop: whatever the kill leaves is gone after the restart.
        for i in $(seq 5); do
                "$NETCA_TOOL" token create-soft --label "k$i" --pin 11112222 --so-pin 33334444 >/dev/null 2>&1 &
                local cpid=$!
                sleep "0.0$((RANDOM % 9 + 1))"
                netcad_stop KILL
                wait "$cpid" 2>/dev/null || true
                netcad_start
                left=$(find "$dir" -name '.*.tmp*' ! -name ".$u.tmp" | wc -l)
                assert_eq "$left" 0 "temporary files after kill $i and a restart"
        done
}

# Item 9: labels that are not clean UTF-8 are refused at creation; one that
# a file (or a device) gives anyway leaves `list --json` valid JSON and never
# reaches the terminal raw.
case_names() {
        local l
        for l in $'esc\e]0;owned\a' $'bad\xff\xfe' $'csi\xc2\x9b31m' $'new\nline'; do
                tool token create-soft --label "$l" --pin 11112222 --so-pin 33334444
                [[ $RC -ne 0 ]] || fail "label $(printf %q "$l") accepted"
                assert_file_contains "$T/err" "valid UTF-8 without control characters" "refusal of $(printf %q "$l")"
        done
        ok token create-soft --label "网证通 ok" --pin 11112222 --so-pin 33334444
        ok list --json
        assert_eq "$(json 'sorted(t["label"] for t in j["tokens"])')" "['netca-test', '网证通 ok']" "clean labels"

        # A token file whose label is neither UTF-8 nor free of escapes.
        local f
        f=$(ls "$NETCA_DATA_DIR"/tokens/*.token | head -n1)
        netcad_stop TERM
        sqlite3 "$f" "UPDATE meta SET value = X'ff1b5d303b6f776e6564075c' WHERE key = 'label'"
        netcad_start
        ok list --json
        json 'j["tokens"]' >/dev/null
        ok daemon status --json
        json 'j["tokens"]' >/dev/null
        tool list
        cat "$T/out" >&2
        if LC_ALL=C grep -q $'\e' "$T/out" "$T/err"; then
                fail "an escape character from a label reached the terminal"
        fi
        assert_file_contains "$T/out" 'x1b' "the escape shown escaped"
}

# count_objects TYPE ID: objects of that type (privkey, pubkey, cert) with that id.
count_objects() {
        p11 --login --pin "$USER_PIN" -O --type "$1" --id "$2" 2>/dev/null | grep -c '^ *ID: *'"$2" || true
}

# Item 6: an import cut short (netcad killed between its C_CreateObject
# calls) leaves some of the key pair and certificate; importing again must
# complete what is missing.  The cut is reproduced exactly by deleting what
# a crash would not have written yet: after the private key, nothing; after
# the public key, the certificate.
case_import_resume() {
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/k.key" -out "$T/k.pem" \
                -subj "/CN=Resume/O=NETCA test" -days 30 2>/dev/null
        openssl pkcs12 -export -in "$T/k.pem" -inkey "$T/k.key" -name resume -out "$T/k.p12" \
                -passout pass:pw || fail "openssl pkcs12 -export failed"
        local id cut
        for cut in after-private after-public; do
                ok import "$T/k.p12" --password pw $P
                ok cert show --cert Resume --json
                id=$(json 'j["id"]')
                p11 --login --pin "$USER_PIN" --delete-object --type cert --id "$id" >/dev/null 2>&1 ||
                        fail "deleting the certificate failed"
                if [[ $cut = after-private ]]; then
                        p11 --login --pin "$USER_PIN" --delete-object --type pubkey --id "$id" >/dev/null 2>&1 ||
                                fail "deleting the public key failed"
                fi
                log "$cut: private $(count_objects privkey "$id"), public $(count_objects pubkey "$id"), certificates $(count_objects cert "$id")"
                ok import "$T/k.p12" --password pw $P
                cat "$T/out" >&2
                assert_eq "$(count_objects privkey "$id")" 1 "private keys after the second import ($cut)"
                assert_eq "$(count_objects pubkey "$id")" 1 "public keys after the second import ($cut)"
                assert_eq "$(count_objects cert "$id")" 1 "certificates after the second import ($cut)"
                # A third import adds nothing.
                ok import "$T/k.p12" --password pw $P
                assert_file_contains "$T/out" "already on the token" "third import ($cut)"
                assert_eq "$(count_objects pubkey "$id")" 1 "public keys after the third import ($cut)"
                # Start again from nothing for the next cut.
                local ty
                for ty in cert pubkey privkey; do
                        p11 --login --pin "$USER_PIN" --delete-object --type "$ty" --id "$id" >/dev/null 2>&1 ||
                                fail "cleaning up the $ty failed"
                done
        done
}

fn="case_${CASE//-/_}"
declare -F "$fn" >/dev/null || fail "unknown case $CASE"
fixture_setup
export NETCA_PKCS11_MODULE="$MODULE"
"$fn"
log "$CASE: ok"
