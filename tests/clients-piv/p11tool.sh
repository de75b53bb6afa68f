#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# GnuTLS p11tool on the PIV key through netca: the token, the five
# certificates, and --test-sign with the RSA 9A and ECDSA 9C keys (its
# output read line by line).
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
need_cmd p11tool
piv_setup
tok="pkcs11:token=$(pct "$TOKEN_LABEL")"

pt() { foreign p11tool --provider "$MODULE" "$@"; }

pt --list-tokens >"$T/tokens.out" 2>&1 || { cat "$T/tokens.out"; fail "p11tool --list-tokens"; }
cat "$T/tokens.out"
assert_file_contains "$T/tokens.out" "Label: $TOKEN_LABEL\$" "--list-tokens"

pt --list-all-certs "$tok" >"$T/certs.out" 2>&1 || { cat "$T/certs.out"; fail "p11tool --list-all-certs"; }
cat "$T/certs.out"
[[ $(grep -c "Type: X.509 Certificate" "$T/certs.out") -eq 5 ]] || fail "expected 5 certificates"
for id in 01 02 03 04 05; do
        assert_file_contains "$T/certs.out" "ID: $id\$" "--list-all-certs"
done
assert_file_contains "$T/certs.out" "Label: Certificate for PIV Authentication\$" "--list-all-certs"

pt --export "$tok;id=%01;type=cert" >"$T/9a.pem" 2>"$T/export.err" || { cat "$T/export.err"; fail "p11tool --export"; }
[[ $(openssl x509 -in "$T/9a.pem" -noout -fingerprint -sha256) == \
   $(openssl x509 -in "$(card_cert 9a)" -noout -fingerprint -sha256) ]] || fail "p11tool exported another certificate"

for id in 01 02; do
        pt --login --set-pin="$USER_PIN" --test-sign "$tok;id=%$id" >"$T/ts-$id.out" 2>&1 ||
                { cat "$T/ts-$id.out"; fail "p11tool --test-sign id $id"; }
        cat "$T/ts-$id.out"
        assert_file_contains "$T/ts-$id.out" "Signing using .*\.\.\. ok" "--test-sign $id"
        assert_file_contains "$T/ts-$id.out" "Verifying against private key parameters\.\.\. ok" "--test-sign $id"
        assert_file_contains "$T/ts-$id.out" "Verifying against public key in the token\.\.\. ok" "--test-sign $id"
        assert_file_not_contains "$T/ts-$id.out" "[Ff]ailed|[Ee]rror|Cannot" "--test-sign $id"
done
echo "ok"
