#!/bin/bash
# pkcs11-tool --keypairgen, EC P-256, EC P-384 and RSA-2048: the keys appear
# with the requested label, ID and size, and their public keys parse.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
fixture_setup

p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 --id a1 --label gen-p256 >"$T/g1" 2>&1 ||
        { cat "$T/g1"; fail "EC P-256 keypairgen"; }
p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:secp384r1 --id a2 --label gen-p384 >"$T/g2" 2>&1 ||
        { cat "$T/g2"; fail "EC P-384 keypairgen"; }
p11 --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 --id a3 --label gen-rsa >"$T/g3" 2>&1 ||
        { cat "$T/g3"; fail "RSA-2048 keypairgen"; }
cat "$T/g1" "$T/g2" "$T/g3"

p11 --login --pin "$USER_PIN" -O >"$T/O.out" 2>&1 || { cat "$T/O.out"; fail "pkcs11-tool -O"; }
cat "$T/O.out"
[[ $(grep -c '^Private Key Object' "$T/O.out") -eq 3 ]] || fail "expected 3 private keys"
[[ $(grep -c '^Public Key Object' "$T/O.out") -eq 3 ]] || fail "expected 3 public keys"
for l in gen-p256 gen-p384 gen-rsa; do
        [[ $(grep -cE "label: +$l\$" "$T/O.out") -eq 2 ]] || fail "label $l not on both halves of its key pair"
done

fixture_read_pubkey a1 "$T/p256.pem"
fixture_read_pubkey a3 "$T/rsa.pem"
openssl pkey -pubin -in "$T/p256.pem" -noout -text | grep -q "NIST CURVE: P-256" || fail "a1 is not a P-256 key"
fixture_read_pubkey a2 "$T/p384.pem"
openssl pkey -pubin -in "$T/p384.pem" -noout -text | grep -q "NIST CURVE: P-384" || fail "a2 is not a P-384 key"
openssl pkey -pubin -in "$T/rsa.pem" -noout -text | grep -q "Public-Key: (2048 bit)" || fail "a3 is not RSA-2048"
# Two key pairs generated alike are different keys: a second P-256 and a
# second RSA-2048 key pair differ from the first ones.
p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 --id b1 --label gen-p256-2 >"$T/g4" 2>&1 ||
        { cat "$T/g4"; fail "second EC P-256 keypairgen"; }
p11 --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 --id b3 --label gen-rsa-2 >"$T/g5" 2>&1 ||
        { cat "$T/g5"; fail "second RSA-2048 keypairgen"; }
fixture_read_pubkey b1 "$T/p256-2.pem"
fixture_read_pubkey b3 "$T/rsa-2.pem"
openssl pkey -pubin -in "$T/p256-2.pem" -noout -text | grep -q "NIST CURVE: P-256" || fail "b1 is not a P-256 key"
openssl pkey -pubin -in "$T/rsa-2.pem" -noout -text | grep -q "Public-Key: (2048 bit)" || fail "b3 is not RSA-2048"
cmp -s "$T/p256.pem" "$T/p256-2.pem" && fail "two P-256 key pairs generated alike read back identical"
cmp -s "$T/rsa.pem" "$T/rsa-2.pem" && fail "two RSA-2048 key pairs generated alike read back identical"
echo "ok"
