#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# PIN and PUK of the PIV key through netca: a wrong PIN shows the tries left
# (netca-tool's error and pin status), the third locks it, `netca-tool pin
# unblock --puk` sets a new PIN with the PUK; wrong PUKs count down the same
# way, and once the PUK is locked netca-tool reports it and sends nothing to
# the card (the APDU log of usbenv.py shows no VERIFY/RESET RETRY COUNTER
# with the PUK after the lock).  No PIN or PUK appears in the daemon's log.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
piv_setup
: "${USBENV_APDU_LOG:?run under usbenv.py}"

tool() { foreign "$NETCA_TOOL" --module "$MODULE" "$@"; }
status() { tool pin status >"$T/status.out" 2>&1 || { cat "$T/status.out"; fail "pin status"; }; cat "$T/status.out"; }
# PUK commands the card got: VERIFY (20) or RESET RETRY COUNTER (2C) with data, key reference 81/80.
puk_apdus() { awk '($2 == "20" && $4 == "81" && $5 > 0) || $2 == "2C"' "$USBENV_APDU_LOG" | wc -l; }

status
assert_file_contains "$T/status.out" "user PIN: *3 tries left" "pin status"
assert_file_contains "$T/status.out" "SO PIN: *3 tries left" "pin status"

expect_fail -s 3 "1st wrong PIN" "wrong PIN for token \"$TOKEN_LABEL\": 2 tries left" \
        tool pin change --pin 000000 --new-pin 111111
status
assert_file_contains "$T/status.out" "user PIN: *2 tries left" "pin status after a wrong PIN"
expect_fail -s 3 "2nd wrong PIN" "wrong PIN for token \"$TOKEN_LABEL\": 1 try left" \
        tool pin change --pin 000000 --new-pin 111111
expect_fail -s 3 "3rd wrong PIN" "PIN of token \"$TOKEN_LABEL\" is locked; unblock it with the PUK" \
        tool pin change --pin 000000 --new-pin 111111
status
assert_file_contains "$T/status.out" "user PIN: *(LOCKED|locked|0 tries)" "pin status after 3 wrong PINs"
# The right PIN no longer works.
expect_fail -o "$T/locked.out" "login with the right PIN on a locked PIN" "C_Login failed: rv = CKR_PIN_LOCKED" \
        p11 --login --pin "$USER_PIN" -O --type privkey

# --puk is PIV's unblock: RESET RETRY COUNTER with the PUK.
tool pin unblock --puk "$SO_PIN" --new-pin 654321 >"$T/unblock.out" 2>&1 || { cat "$T/unblock.out"; fail "pin unblock --puk"; }
cat "$T/unblock.out"
assert_file_contains "$T/unblock.out" "unblocked with the PUK" "pin unblock --puk"
[[ $(puk_apdus) -ge 1 ]] || fail "the PUK never reached the card"
status
assert_file_contains "$T/status.out" "user PIN: *3 tries left" "pin status after unblock"
head -c 100 /dev/urandom >"$T/data"
p11 --login --pin 654321 --sign --id 01 -m SHA256-RSA-PKCS -i "$T/data" -o "$T/sig" >"$T/sign.out" 2>&1 ||
        { cat "$T/sign.out"; fail "signing with the new PIN"; }
openssl x509 -in "$(card_cert 9a)" -noout -pubkey >"$T/9a.pub"
openssl dgst -sha256 -verify "$T/9a.pub" -signature "$T/sig" "$T/data" || fail "signature after unblock"

# Wrong PUKs: tries left, then locked.
expect_fail -s 3 "1st wrong PUK" "wrong PUK for token \"$TOKEN_LABEL\": 2 tries left" \
        tool pin unblock --puk 87654321 --new-pin 111111
expect_fail -s 3 "2nd wrong PUK" "wrong PUK for token \"$TOKEN_LABEL\": 1 try left" \
        tool pin unblock --puk 87654321 --new-pin 111111
expect_fail -s 3 "3rd wrong PUK" "PUK of token \"$TOKEN_LABEL\" is locked" \
        tool pin unblock --puk 87654321 --new-pin 111111
status
assert_file_contains "$T/status.out" "SO PIN: *(LOCKED|locked|0 tries)" "pin status after 3 wrong PUKs"
sent=$(puk_apdus)
# Locked: reported, not retried, even with the right PUK.
expect_fail -s 3 "locked PUK" "PUK of token \"$TOKEN_LABEL\" is locked" \
        tool pin unblock --puk "$SO_PIN" --new-pin 111111
[[ $(puk_apdus) -eq $sent ]] || { tail -n 20 "$USBENV_APDU_LOG"; fail "a locked PUK was sent to the card again"; }
# The PIN itself still works.
p11 --login --pin 654321 -O --type privkey >"$T/after.out" 2>&1 || { cat "$T/after.out"; fail "login after the PUK locked"; }

# Secrets never in the daemon's log.
for s in 123456 654321 12345678 87654321 000000 111111; do
        if grep -q -- "$s" "$USBENV_NETCAD_LOG"; then
                fail "the daemon's log holds a PIN/PUK ($s)"
        fi
done
echo "ok"
