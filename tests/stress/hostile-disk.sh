#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The soft token on a full file system (issue 23, item 8): a 2 MB tmpfs
# under the daemon's tokens/ is filled with objects until the token says it
# is full; then nothing committed may be lost (across a restart and a kill),
# reads work while the disk is full, and logins with either PIN work as soon
# as a little space is free again.  ROUNDS rounds (default 8), each on a new
# tmpfs, show the outcome does not depend on luck.  Needs root (mount); it
# skips (77) when mounting is refused, except under CI=true where it fails.

ROUNDS=${1:-8}
: "${NETCA_SOURCE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export P11_TEST_MODULE=netca
# shellcheck source=../lib/fixture.sh
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
# shellcheck source=../cli/tool.sh
. "$NETCA_SOURCE_ROOT/tests/cli/tool.sh"

MNT=
OBJ_BYTES=4000 # pkcs11-tool writes at most 5000 bytes
BALLAST=64K    # freed once the token is full
ROOM=384       # KB left free for the token

# disk_cleanup: the tmpfs goes (lazily, the daemon may still hold it) before
# the fixture removes the temp dir.
disk_cleanup() {
        local rc=$?
        [[ -n "$MNT" ]] && mountpoint -q "$MNT" && umount -l "$MNT"
        (exit $rc)
        fixture_cleanup
}

# disk_mount: a new 2 MB tmpfs on tokens/ holding a copy of the seed token.
disk_mount() {
        mountpoint -q "$MNT" && umount -l "$MNT"
        if ! mount -t tmpfs -o size=2m,mode=0700 tmpfs "$MNT" 2>"$T/mount.err"; then
                cat "$T/mount.err" >&2
                [[ "${CI:-}" = true ]] && fail "mounting a tmpfs was refused under CI"
                skip "mounting a tmpfs was refused (not root?)"
        fi
        cp -a "$T/seed/." "$MNT/"
}

# count TYPE [LOGIN-ARGS...]: objects of TYPE pkcs11-tool lists.
count() {
        local ty=$1
        shift
        p11 "$@" -O --type "$ty" >"$T/list" 2>&1 || { cat "$T/list" >&2; fail "listing ${ty} objects $*"; }
        grep -ci "^[a-z ]* object" "$T/list" || true
}

# fill: data objects of OBJ_BYTES until the token is full; sets N (the stored ones).
fill() {
        N=0
        local i
        for i in $(seq 200); do
                if ! p11 --login --pin "$USER_PIN" --write-object "$T/blob" --type data \
                        --label "d$i" >"$T/write.out" 2>&1; then
                        assert_file_contains "$T/write.out" "CKR_DEVICE_MEMORY" "the refusal of object $i"
                        return 0
                fi
                N=$i
        done
        fail "200 objects of $OBJ_BYTES bytes fitted on a 2 MB file system"
}

# check WHEN: the key and the N data objects are there, both PINs work.
check() {
        assert_eq "$(count privkey --login --pin "$USER_PIN")" 1 "private keys $1"
        assert_eq "$(count data)" "$N" "public data objects $1"
        p11 --session-rw --login --login-type so --so-pin "$SO_PIN" --list-objects >"$T/so.out" 2>&1 ||
                { cat "$T/so.out" >&2; fail "SO login $1"; }
}

# round R: one fill, free, restart and kill on a new tmpfs.
round() {
        netcad_stop TERM
        disk_mount
        netcad_start
        p11 --login --pin "$USER_PIN" --write-object "$T/key.der" --type privkey --id 01 \
                --label disk-key >"$T/key.out" 2>&1 || { cat "$T/key.out" >&2; fail "writing the key"; }
        # Only ROOM KB stay for the token (fewer objects to write), BALLAST of
        # them to be freed once it is full.
        head -c $(($(df -k --output=avail "$MNT" | tail -n1) - ROOM))K /dev/zero >"$MNT/filler"
        head -c "$BALLAST" /dev/zero >"$MNT/ballast"
        fill
        local wal
        wal=$(stat -c %s "$MNT"/*.token-wal 2>/dev/null || echo 0)
        log "round $1: $N objects stored, then full; WAL $wal bytes; df: $(df -k --output=avail "$MNT" | tail -n1) KB free"
        ((wal <= 65536)) || fail "the WAL holds $wal bytes on the full disk (at most 64 KiB wanted)"
        # Full: reads need no write.
        assert_eq "$(count data)" "$N" "public data objects on the full disk"
        netcad_stop KILL
        netcad_start
        assert_eq "$(count data)" "$N" "public data objects on the full disk after a kill"
        rm -f "$MNT/ballast"
        check "after $BALLAST were freed"
        netcad_stop TERM
        netcad_start
        check "after a restart"
        netcad_stop KILL
        netcad_start
        check "after a kill"
}

fixture_setup
trap disk_cleanup EXIT
export NETCA_PKCS11_MODULE="$MODULE"
head -c "$OBJ_BYTES" /dev/urandom >"$T/blob"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER -out "$T/key.der" 2>/dev/null ||
        fail "openssl genpkey failed"
netcad_stop TERM
MNT="$NETCA_DATA_DIR/tokens"
mv "$MNT" "$T/seed"
mkdir -m 0700 "$MNT"
for r in $(seq "$ROUNDS"); do
        round "$r"
done
log "disk: ok ($ROUNDS rounds)"
