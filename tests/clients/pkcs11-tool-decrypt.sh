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

# Raw RSA (CKM_RSA_X_509): a full-size block below the modulus (first byte
# 0) that openssl encrypted without padding decrypts to that block.
head -c 256 /dev/urandom >"$T/block"
printf '\000' | dd of="$T/block" bs=1 count=1 conv=notrunc 2>/dev/null
openssl pkeyutl -encrypt -pubin -inkey "$T/test-rsa.pub" -pkeyopt rsa_padding_mode:none \
        -in "$T/block" -out "$T/enc5" || fail "openssl encrypt (raw RSA)"
decrypt "$T/enc5" "$T/dec5" -m RSA-X-509 || { cat "$T/dec5.log"; fail "pkcs11-tool --decrypt -m RSA-X-509"; }
cmp "$T/block" "$T/dec5" || fail "RSA-X-509 decryption gave other bytes"

# A ciphertext whose plaintext is not PKCS#1 v1.5 type 2 padded (00 03 ...,
# encrypted raw by openssl: no 1-in-65536 chance of valid padding, as a
# randomly corrupted ciphertext has) is refused as invalid.
{ printf '\000\003'; head -c 254 /dev/urandom; } >"$T/badpad"
openssl pkeyutl -encrypt -pubin -inkey "$T/test-rsa.pub" -pkeyopt rsa_padding_mode:none \
        -in "$T/badpad" -out "$T/enc3" || fail "openssl encrypt (raw RSA)"
# (pkcs11-tool retries a failed C_Decrypt part by part: SoftHSM2, the
# stand-in, has no multi-part RSA decryption and reports that instead.)
pat="CKR_ENCRYPTED_DATA_INVALID"
standin_lacks "multi-part RSA decryption" && pat="C_DecryptUpdate failed: rv = CKR_FUNCTION_NOT_SUPPORTED"
expect_fail -o "$T/dec3.log" "RSA-PKCS decryption of a badly padded block" "$pat" \
        p11 --login --pin "$USER_PIN" --decrypt --id 01 -m RSA-PKCS --input-file "$T/enc3" --output-file "$T/dec3"

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
