#!/bin/bash
# RSA --decrypt on the token of data that openssl encrypted with the token's
# public key (PKCS#1 v1.5 and OAEP with SHA-1 and SHA-256).
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
fixture_setup
fixture_add_rsa 01 test-rsa

head -c 100 /dev/urandom >"$T/msg"

decrypt() { # IN OUT ARGS...
        local in=$1 out=$2
        shift 2
        p11 --login --pin "$USER_PIN" --decrypt --id 01 "$@" --input-file "$in" --output-file "$out" \
                >"$out.log" 2>&1
}

openssl pkeyutl -encrypt -pubin -inkey "$T/test-rsa.pub" -in "$T/msg" -out "$T/enc1" || fail "openssl encrypt"
decrypt "$T/enc1" "$T/dec1" -m RSA-PKCS || { cat "$T/dec1.log"; fail "pkcs11-tool --decrypt -m RSA-PKCS"; }
cmp "$T/msg" "$T/dec1" || fail "RSA-PKCS decryption gave other bytes"

# A corrupted ciphertext must not decrypt to the message.
cp "$T/enc1" "$T/enc3"
printf '\x00\x01\x02\x03' | dd of="$T/enc3" bs=1 seek=100 conv=notrunc 2>/dev/null
if decrypt "$T/enc3" "$T/dec3" -m RSA-PKCS && cmp -s "$T/msg" "$T/dec3"; then
        fail "a corrupted ciphertext decrypted to the message"
fi

# OAEP with SHA-1.
openssl pkeyutl -encrypt -pubin -inkey "$T/test-rsa.pub" -in "$T/msg" -out "$T/enc4" \
        -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 || fail "openssl encrypt"
decrypt "$T/enc4" "$T/dec4" -m RSA-PKCS-OAEP --hash-algorithm SHA-1 --mgf MGF1-SHA1 ||
        { cat "$T/dec4.log"; fail "pkcs11-tool --decrypt -m RSA-PKCS-OAEP (SHA-1)"; }
cmp "$T/msg" "$T/dec4" || fail "RSA-OAEP (SHA-1) decryption gave other bytes"

# OAEP with SHA-256 (SoftHSM2, the stand-in, does not have it).
if [[ $P11_TEST_MODULE = softhsm ]]; then
        log "SoftHSM2 has no OAEP with SHA-256: not tried"
        echo "ok"
        exit 0
fi
openssl pkeyutl -encrypt -pubin -inkey "$T/test-rsa.pub" -in "$T/msg" -out "$T/enc2" \
        -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 || fail "openssl encrypt"
decrypt "$T/enc2" "$T/dec2" -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 ||
        { cat "$T/dec2.log"; fail "pkcs11-tool --decrypt -m RSA-PKCS-OAEP (SHA-256)"; }
cmp "$T/msg" "$T/dec2" || fail "RSA-OAEP (SHA-256) decryption gave other bytes"
echo "ok"
