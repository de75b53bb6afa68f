#!/bin/bash
# ssh-keygen -D lists the token's public keys, equal to the ones read by
# pkcs11-tool.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
need_cmd ssh-keygen
fixture_setup
fixture_add_rsa 01 test-rsa
fixture_add_ec 02 test-ec

foreign ssh-keygen -D "$MODULE" >"$T/D.out" 2>"$T/D.err" || { cat "$T/D.out" "$T/D.err"; fail "ssh-keygen -D"; }
cat "$T/D.out"
for k in test-rsa test-ec; do
        ssh-keygen -i -m PKCS8 -f "$T/$k.pub" >"$T/$k.ssh" || fail "ssh-keygen -i ($k)"
        want=$(cut -d' ' -f1,2 "$T/$k.ssh")
        grep -qF "$want" "$T/D.out" || fail "ssh-keygen -D does not list $k ($want)"
done
grep -q '^ssh-rsa ' "$T/D.out" || fail "no ssh-rsa key"
grep -q '^ecdsa-sha2-nistp256 ' "$T/D.out" || fail "no ecdsa-sha2-nistp256 key"
# Each key once (the certificate and the public key object are one key).
[[ $(cut -d' ' -f2 "$T/D.out" | sort -u | wc -l) -eq 2 ]] || fail "expected 2 distinct keys"
echo "ok"
