#!/bin/bash
# GnuTLS p11tool: --list-tokens, --list-all-certs, --test-sign.  --test-sign
# exits 0 even when it finds no key, so its output is what is checked.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
need_cmd p11tool
fixture_setup
fixture_add_rsa 01 test-rsa
fixture_add_ec 02 test-ec
# The EC key gets a certificate too, so that p11tool can find it by label.
fixture_self_signed 02 test-ec "netca test test-ec"

pt() { foreign p11tool --provider "$MODULE" "$@"; }

pt --list-tokens >"$T/tokens.out" 2>&1 || { cat "$T/tokens.out"; fail "p11tool --list-tokens"; }
cat "$T/tokens.out"
assert_file_contains "$T/tokens.out" "Label: $TOKEN_LABEL\$" "--list-tokens"
assert_file_contains "$T/tokens.out" "URL: pkcs11:.*token=$TOKEN_LABEL" "--list-tokens"

pt --list-all-certs "pkcs11:token=$TOKEN_LABEL" >"$T/certs.out" 2>&1 ||
        { cat "$T/certs.out"; fail "p11tool --list-all-certs"; }
cat "$T/certs.out"
[[ $(grep -c "Type: X.509 Certificate" "$T/certs.out") -eq 2 ]] || fail "expected 2 certificates"
assert_file_contains "$T/certs.out" "Label: test-rsa\$" "--list-all-certs"
assert_file_contains "$T/certs.out" "Label: test-ec\$" "--list-all-certs"
assert_file_contains "$T/certs.out" "ID: 01\$" "--list-all-certs"

for label in test-rsa test-ec; do
        pt --login --set-pin="$USER_PIN" --test-sign "pkcs11:token=$TOKEN_LABEL;object=$label" \
                >"$T/ts-$label.out" 2>&1 || { cat "$T/ts-$label.out"; fail "p11tool --test-sign $label"; }
        cat "$T/ts-$label.out"
        assert_file_contains "$T/ts-$label.out" "Signing using .*\.\.\. ok" "--test-sign $label"
        assert_file_contains "$T/ts-$label.out" "Verifying against private key parameters\.\.\. ok" \
                "--test-sign $label"
        assert_file_contains "$T/ts-$label.out" "Verifying against public key in the token\.\.\. ok" \
                "--test-sign $label"
        assert_file_not_contains "$T/ts-$label.out" "[Ff]ailed|[Ee]rror|Cannot" "--test-sign $label"
done
echo "ok"
