#!/bin/bash
# NSS (what Firefox and Chromium see): modutil -add into a fresh database,
# then certutil -L -h TOKEN lists the certificate and certutil -K -h TOKEN
# (with the PIN from a password file) lists the private keys.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
need_cmd modutil certutil
fixture_setup
fixture_add_rsa 01 test-rsa
fixture_add_ec 02 test-ec

db="sql:$T/nssdb"
mkdir -p "$T/nssdb"
certutil -N -d "$db" --empty-password || fail "certutil -N"
foreign modutil -force -dbdir "$db" -add netca-test -libfile "$MODULE" >"$T/add.out" 2>&1 ||
        { cat "$T/add.out"; fail "modutil -add"; }
foreign modutil -force -dbdir "$db" -list netca-test >"$T/list.out" 2>&1 ||
        { cat "$T/list.out"; fail "modutil -list"; }
cat "$T/list.out"
assert_file_contains "$T/list.out" "Token Name: *$TOKEN_LABEL" "modutil -list"
assert_file_contains "$T/list.out" "Status: *Enabled" "modutil -list"

# certutil -L -h also logs in (it asks for the PIN without a terminal).
echo "$USER_PIN" >"$T/pw"
foreign certutil -L -d "$db" -h "$TOKEN_LABEL" -f "$T/pw" >"$T/L.out" 2>&1 || { cat "$T/L.out"; fail "certutil -L"; }
cat "$T/L.out"
assert_file_contains "$T/L.out" "^$TOKEN_LABEL:test-rsa +u,u,u" "certutil -L"

# The certificate NSS reads off the token is the one we put there.
foreign certutil -L -d "$db" -h "$TOKEN_LABEL" -n "$TOKEN_LABEL:test-rsa" -f "$T/pw" -a >"$T/cert.pem" 2>"$T/cert.err" ||
        { cat "$T/cert.err"; fail "certutil -L -n -a"; }
[[ $(openssl x509 -in "$T/cert.pem" -noout -fingerprint -sha256) == \
   $(openssl x509 -in "$T/test-rsa.crt" -noout -fingerprint -sha256) ]] || fail "NSS read another certificate"

foreign certutil -K -d "$db" -h "$TOKEN_LABEL" -f "$T/pw" >"$T/K.out" 2>&1 || { cat "$T/K.out"; fail "certutil -K"; }
cat "$T/K.out"
assert_file_contains "$T/K.out" "rsa +01 +($TOKEN_LABEL:)?test-rsa" "certutil -K"
assert_file_contains "$T/K.out" "ec +02 +($TOKEN_LABEL:)?test-ec" "certutil -K"
[[ $(grep -cE '^< *[0-9]+>' "$T/K.out") -eq 2 ]] || fail "certutil -K: expected 2 keys"

# A wrong PIN lists no key.
echo 000000 >"$T/badpw"
# certutil exits 255 (its exit(-1)) when NSS's C_Login gets CKR_PIN_INCORRECT.
expect_fail -s 255 -o "$T/K2.out" "certutil -K with a wrong PIN" \
        "could not authenticate to token $TOKEN_LABEL\.: SEC_ERROR_BAD_PASSWORD" \
        foreign certutil -K -d "$db" -h "$TOKEN_LABEL" -f "$T/badpw"
assert_file_not_contains "$T/K2.out" '^< *[0-9]+>' "certutil -K with a wrong PIN"
echo "ok"
