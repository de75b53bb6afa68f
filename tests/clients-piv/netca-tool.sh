#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# netca-tool on the PIV key: `key gen` generates a key pair on the card
# (GENERATE ASYMMETRIC KEY PAIR after management-key authentication), `csr`
# makes a request openssl verifies and whose public key is the card's, and
# `import` writes the issued certificate to the card (PUT DATA); the card's
# own files then hold that certificate, and `list` shows it.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
piv_setup

tool() { foreign "$NETCA_TOOL" --module "$MODULE" "$@"; }
ok() { tool "$@" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err" >&2; fail "netca-tool $* failed"; }; }

# A new EC P-256 key in the key management slot (9D, CKA_ID 03).
ok key gen --type ec-p256 --id 03 --label "PIV new 9D" --pin "$USER_PIN"
ok csr --id 03 --subject "/CN=PIV renewal test/O=NETCA test/C=CN" -o "$T/req.csr" --pin "$USER_PIN"
openssl req -in "$T/req.csr" -verify -noout 2>"$T/verify.txt" || fail "openssl rejects the request"
assert_file_contains "$T/verify.txt" "verify OK" "request signature"

# Issue it with a throw-away CA and import the certificate onto the card.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=PIV test CA" \
        -days 2 2>/dev/null
printf 'keyUsage=critical,keyEncipherment,keyAgreement\n' >"$T/ext.cnf"
openssl x509 -req -in "$T/req.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -set_serial 0x1234 -days 1 \
        -extfile "$T/ext.cnf" -out "$T/cert.pem" 2>/dev/null || fail "openssl x509 -req"
ok import "$T/cert.pem" --pin "$USER_PIN"

# The card itself has it now (its directory is written on every change),
# and the request's key is the one the certificate certifies.
ok list --json
grep -q "PIV renewal test" "$T/out" || { cat "$T/out" >&2; fail "list does not show the imported certificate"; }
openssl x509 -in "$T/cert.pem" -noout -pubkey >"$T/cert.pub"
openssl req -in "$T/req.csr" -noout -pubkey | cmp -s - "$T/cert.pub" || fail "the certificate's key is not the request's"
foreign pkcs11-tool --module "$MODULE" --read-object --type cert --id 03 -o "$T/read.der" >/dev/null 2>&1 ||
        fail "pkcs11-tool cannot read the new certificate"
openssl x509 -in "$T/cert.pem" -outform DER | cmp -s - "$T/read.der" || fail "the card's 9D certificate is not the imported one"
log "key gen, csr and import on the PIV key: ok"
