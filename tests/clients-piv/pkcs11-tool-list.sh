#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# pkcs11-tool -L and -O on the PIV key through netca: the five certificates
# of the card with their PIV IDs, byte-equal to the card's files, their
# public keys, and the private keys once logged in.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
piv_setup

assert_file_contains "$T/L.out" "token flags *:.*login required" "pkcs11-tool -L"
assert_file_contains "$T/L.out" "token model *: PIV" "pkcs11-tool -L"

p11 -O >"$T/O.out" 2>&1 || { cat "$T/O.out"; fail "pkcs11-tool -O"; }
cat "$T/O.out"
[[ $(grep -c '^Certificate Object' "$T/O.out") -eq 5 ]] || fail "expected 5 certificates"
[[ $(grep -c '^Public Key Object' "$T/O.out") -eq 5 ]] || fail "expected 5 public keys"
assert_file_not_contains "$T/O.out" "^Private Key Object" "private keys listed without login"
assert_file_contains "$T/O.out" "Public Key Object; RSA 2048 bits" "-O"
assert_file_contains "$T/O.out" "Public Key Object; EC  EC_POINT 384 bits" "-O"

for slot in 9a 9c 9d 9e 82; do
        id=${SLOT_ID[$slot]}
        p11 --read-object --type cert --id "$id" --output-file "$T/$slot.der" >"$T/read-$slot.out" 2>&1 ||
                { cat "$T/read-$slot.out"; fail "reading certificate $id"; }
        openssl x509 -in "$(card_cert $slot)" -outform DER -out "$T/$slot.ref.der"
        cmp "$T/$slot.der" "$T/$slot.ref.der" || fail "certificate $id ($slot) differs from the card's"
        fixture_read_pubkey "$id" "$T/$slot.pub"
        openssl x509 -in "$(card_cert $slot)" -noout -pubkey >"$T/$slot.ref.pub"
        cmp "$T/$slot.pub" "$T/$slot.ref.pub" || fail "public key $id ($slot) is not the certificate's"
done

p11 --login --pin "$USER_PIN" -O --type privkey >"$T/priv.out" 2>&1 || { cat "$T/priv.out"; fail "-O --type privkey"; }
cat "$T/priv.out"
[[ $(grep -c '^Private Key Object' "$T/priv.out") -eq 5 ]] || fail "expected 5 private keys after login"
# 9C: the PIV spec's PIN-always policy.
awk '/^Private Key Object/{id=""} /ID:/{id=$2} /Access:.*always authenticate/{print id}' "$T/priv.out" >"$T/aa"
[[ $(cat "$T/aa") == 02 ]] || { cat "$T/aa"; fail "only the 9C key (ID 02) is ALWAYS_AUTHENTICATE"; }
echo "ok"
