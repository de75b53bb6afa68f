#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `netca-tool pin unblock --puk-file FILE --new-pin-file FILE` on the virtual
# PIV key (run under tests/clients-piv/usbenv.py): the PUK and the new PIN
# are read from files (the first line; "-" is standard input), the PIN is
# unblocked, the new PIN logs in and the old one does not.  A wrong PUK from
# a file is refused with the tries left.  The PUK never shows in the daemon's
# log.
set -euo pipefail
. "$(dirname "$0")/../clients-piv/piv-lib.sh"
piv_setup

RC=0
tool() {
        RC=0
        foreign "$NETCA_TOOL" --module "$MODULE" "$@" >"$T/out" 2>"$T/err" </dev/null || RC=$?
}
expect_rc() {
        local want=$1
        shift
        tool "$@"
        [[ $RC -eq $want ]] || { cat "$T/out" "$T/err" >&2; fail "netca-tool $* exited $RC, expected $want"; }
}

# Lock the PIN (3 tries on the card).
for _ in 1 2 3; do
        expect_rc 3 pin change --pin 000000 --new-pin 111111
done
assert_file_contains "$T/err" "locked" "the PIN is locked"

printf '87654321\n' >"$T/wrong.puk"
printf '%s\nsecond line\n' "$SO_PIN" >"$T/puk"
printf '654321\n' >"$T/new.pin"
expect_rc 3 pin unblock --puk-file "$T/wrong.puk" --new-pin-file "$T/new.pin"
assert_file_contains "$T/err" "wrong PUK.*2 tries left" "wrong PUK from a file"

expect_rc 0 pin unblock --puk-file "$T/puk" --new-pin-file "$T/new.pin"
assert_file_contains "$T/out" "unblocked with the PUK" "pin unblock --puk-file"
# The new PIN (from the file) logs in; the old one does not.
p11 --login --pin 654321 -O --type privkey >"$T/login.out" 2>&1 || { cat "$T/login.out" >&2; fail "login with the new PIN"; }
if p11 --login --pin "$USER_PIN" -O --type privkey >"$T/old.out" 2>&1; then
        fail "the old PIN still logs in"
fi

# --puk-file - : the PUK on standard input (the new PIN from its file).
for _ in 1 2 3; do
        expect_rc 3 pin change --pin 000000 --new-pin 111111
done
RC=0
printf '%s\n' "$SO_PIN" | foreign "$NETCA_TOOL" --module "$MODULE" pin unblock --puk-file - --new-pin-file "$T/new.pin" \
        >"$T/out" 2>"$T/err" || RC=$?
[[ $RC -eq 0 ]] || { cat "$T/out" "$T/err" >&2; fail "pin unblock --puk-file - exited $RC"; }
p11 --login --pin 654321 -O --type privkey >"$T/login.out" 2>&1 || { cat "$T/login.out" >&2; fail "login after --puk-file -"; }

if [[ -n "${USBENV_NETCAD_LOG:-}" && -f "$USBENV_NETCAD_LOG" ]] && grep -q "$SO_PIN" "$USBENV_NETCAD_LOG"; then
        fail "the PUK is in the daemon's log"
fi
log "piv-puk-file: ok"
