#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# NSS (modutil, certutil) on the PIV key through netca: the module and its
# token, certutil -L -h TOKEN lists the five certificates, the one it exports
# is the card's 9A certificate, certutil -K lists the keys after login and
# fails with a wrong PIN.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
need_cmd modutil certutil
piv_setup

db="sql:$T/nssdb"
mkdir -p "$T/nssdb"
certutil -N -d "$db" --empty-password || fail "certutil -N"
foreign modutil -force -dbdir "$db" -add netca-piv -libfile "$MODULE" >"$T/add.out" 2>&1 ||
        { cat "$T/add.out"; fail "modutil -add"; }
foreign modutil -force -dbdir "$db" -list netca-piv >"$T/list.out" 2>&1 || { cat "$T/list.out"; fail "modutil -list"; }
cat "$T/list.out"
assert_file_contains "$T/list.out" "Token Name: *$TOKEN_LABEL" "modutil -list"

echo "$USER_PIN" >"$T/pw"
foreign certutil -L -d "$db" -h "$TOKEN_LABEL" -f "$T/pw" >"$T/L.out" 2>&1 || { cat "$T/L.out"; fail "certutil -L"; }
cat "$T/L.out"
[[ $(grep -c "^$TOKEN_LABEL:" "$T/L.out") -eq 5 ]] || fail "certutil -L: expected 5 certificates of the token"
assert_file_contains "$T/L.out" "^$TOKEN_LABEL:Certificate for PIV Authentication +u,u,u" "certutil -L"

foreign certutil -L -d "$db" -h "$TOKEN_LABEL" -n "$TOKEN_LABEL:Certificate for PIV Authentication" -f "$T/pw" -a \
        >"$T/cert.pem" 2>"$T/cert.err" || { cat "$T/cert.err"; fail "certutil -L -n -a"; }
[[ $(openssl x509 -in "$T/cert.pem" -noout -fingerprint -sha256) == \
   $(openssl x509 -in "$(card_cert 9a)" -noout -fingerprint -sha256) ]] || fail "NSS read another certificate"

foreign certutil -K -d "$db" -h "$TOKEN_LABEL" -f "$T/pw" >"$T/K.out" 2>&1 || { cat "$T/K.out"; fail "certutil -K"; }
cat "$T/K.out"
[[ $(grep -cE '^< *[0-9]+>' "$T/K.out") -eq 5 ]] || fail "certutil -K: expected 5 keys"
assert_file_contains "$T/K.out" "rsa +01 +($TOKEN_LABEL:)?PIV AUTH key" "certutil -K"
assert_file_contains "$T/K.out" "ec +02 +($TOKEN_LABEL:)?SIGN key" "certutil -K"

echo 000000 >"$T/badpw"
# certutil exits 255 (its exit(-1)) when NSS's C_Login gets CKR_PIN_INCORRECT.
expect_fail -s 255 -o "$T/K2.out" "certutil -K with a wrong PIN" \
        "could not authenticate to token $TOKEN_LABEL\.: SEC_ERROR_BAD_PASSWORD" \
        foreign certutil -K -d "$db" -h "$TOKEN_LABEL" -f "$T/badpw"
assert_file_not_contains "$T/K2.out" '^< *[0-9]+>' "certutil -K with a wrong PIN"
echo "ok"
