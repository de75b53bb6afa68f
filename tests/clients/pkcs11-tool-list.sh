#!/bin/bash
# pkcs11-tool -L, -M, -O against the module: the token, its mechanisms and its
# objects are seen by OpenSC's tool as we present them.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
fixture_setup
fixture_add_rsa 01 test-rsa
fixture_add_ec 02 test-ec

foreign pkcs11-tool --module "$MODULE" -L >"$T/L.out" 2>&1 || { cat "$T/L.out"; fail "pkcs11-tool -L"; }
cat "$T/L.out"
assert_file_contains "$T/L.out" "token label +: $TOKEN_LABEL" "-L output"
assert_file_contains "$T/L.out" "token flags +:.*login required" "-L output"
assert_file_contains "$T/L.out" "token flags +:.*PIN initialized" "-L output"
assert_file_contains "$T/L.out" "token flags +:.*token initialized" "-L output"

p11 -M >"$T/M.out" 2>&1 || { cat "$T/M.out"; fail "pkcs11-tool -M"; }
cat "$T/M.out"
for m in RSA-PKCS-KEY-PAIR-GEN RSA-PKCS SHA256-RSA-PKCS RSA-PKCS-PSS RSA-PKCS-OAEP \
        ECDSA-KEY-PAIR-GEN ECDSA ECDSA-SHA256 SHA256; do
        [[ $m = ECDSA-SHA256 ]] && standin_lacks "$m" && continue
        assert_file_contains "$T/M.out" "^ *$m[,: ]|^ *$m\$" "-M output (mechanism $m)"
done

# Public objects, without login: the certificate and both public keys, no
# private key.
p11 -O >"$T/O.out" 2>&1 || { cat "$T/O.out"; fail "pkcs11-tool -O"; }
cat "$T/O.out"
assert_file_contains "$T/O.out" "^Certificate Object" "-O output"
assert_file_contains "$T/O.out" "subject: +DN: CN ?= ?netca test test-rsa" "-O output"
assert_file_contains "$T/O.out" "^Public Key Object; RSA 2048 bits" "-O output"
assert_file_contains "$T/O.out" "^Public Key Object; EC" "-O output"
assert_file_not_contains "$T/O.out" "^Private Key Object" "-O output without login"

# With login: the private keys too.
p11 --login --pin "$USER_PIN" -O >"$T/O2.out" 2>&1 || { cat "$T/O2.out"; fail "pkcs11-tool -O --login"; }
cat "$T/O2.out"
assert_file_contains "$T/O2.out" "^Private Key Object; RSA" "-O --login output"
assert_file_contains "$T/O2.out" "^Private Key Object; EC" "-O --login output"
[[ $(grep -c '^Private Key Object' "$T/O2.out") -eq 2 ]] || fail "expected exactly 2 private keys"
echo "ok"
