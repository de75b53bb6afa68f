#!/bin/bash
# OpenSSL with the libp11 engine: `req -x509` with token keys (RSA and EC)
# gives certificates whose self-signature and public key check out, and
# `dgst -sign` through the engine gives signatures openssl verifies.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
fixture_setup
openssl_engine_setup
cat >>"$T/openssl.cnf" <<'CNF'

[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,digitalSignature
subjectKeyIdentifier = hash
CNF

p11 --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 --id 11 --label eng-rsa >/dev/null 2>&1 ||
        fail "RSA keypairgen"
p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 --id 12 --label eng-ec >/dev/null 2>&1 ||
        fail "EC keypairgen"
fixture_read_pubkey 11 "$T/rsa.pub"
fixture_read_pubkey 12 "$T/ec.pub"
head -c 5000 /dev/urandom >"$T/data"

for k in rsa:11 ec:12; do
        name=${k%%:*} id=${k##*:}
        ossl req -new -x509 -engine pkcs11 -keyform engine -key "$(p11_uri "$id" private)" \
                -subj "/CN=engine $name" -days 1 -sha256 -extensions v3_ca -out "$T/$name.crt" \
                >"$T/req-$name.out" 2>&1 || { cat "$T/req-$name.out"; fail "openssl req -x509 ($name)"; }
        # The certificate carries the token's public key...
        openssl x509 -in "$T/$name.crt" -noout -pubkey >"$T/$name.crt.pub"
        cmp "$T/$name.crt.pub" "$T/$name.pub" || fail "certificate ($name) does not hold the token's public key"
        # ...and its self-signature verifies.
        openssl verify -CAfile "$T/$name.crt" "$T/$name.crt" >"$T/verify-$name.out" 2>&1 ||
                { cat "$T/verify-$name.out"; fail "self-signed certificate ($name) does not verify"; }

        ossl dgst -sha256 -engine pkcs11 -keyform engine -sign "$(p11_uri "$id" private)" \
                -out "$T/$name.sig" "$T/data" >"$T/dgst-$name.out" 2>&1 ||
                { cat "$T/dgst-$name.out"; fail "openssl dgst -sign ($name)"; }
        openssl dgst -sha256 -verify "$T/$name.pub" -signature "$T/$name.sig" "$T/data" ||
                fail "openssl does not verify the engine's $name signature"
        # A flipped byte of data must fail verification.
        cp "$T/data" "$T/data2"
        printf 'X' | dd of="$T/data2" bs=1 seek=17 conv=notrunc 2>/dev/null
        if cmp -s "$T/data" "$T/data2"; then printf 'Y' | dd of="$T/data2" bs=1 seek=17 conv=notrunc 2>/dev/null; fi
        expect_fail "$name signature over modified data" "^Verification [Ff]ailure" \
                openssl dgst -sha256 -verify "$T/$name.pub" -signature "$T/$name.sig" "$T/data2"
done
echo "ok"
