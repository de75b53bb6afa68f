#!/bin/bash
# pkcs11-tool --sign with RSA (PKCS#1 v1.5, PSS) and ECDSA keys on the token;
# every signature is verified by openssl with the public key read from the
# token.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
fixture_setup
fixture_add_rsa 01 test-rsa
fixture_add_ec 02 test-ec

head -c 1000 /dev/urandom >"$T/data"
openssl dgst -sha256 -binary "$T/data" >"$T/data.sha256"

sign() { # ID MECH OUT [extra args]
        local id=$1 mech=$2 out=$3
        shift 3
        p11 --login --pin "$USER_PIN" --sign --id "$id" -m "$mech" "$@" \
                --input-file "$T/data" --output-file "$out" >"$out.log" 2>&1 ||
                { cat "$out.log"; fail "pkcs11-tool --sign -m $mech"; }
}

# RSA PKCS#1 v1.5 with SHA-256.
sign 01 SHA256-RSA-PKCS "$T/sig1"
[[ $(stat -c %s "$T/sig1") -eq 256 ]] || fail "RSA-2048 signature is not 256 bytes"
openssl dgst -sha256 -verify "$T/test-rsa.pub" -signature "$T/sig1" "$T/data" || fail "openssl rejects SHA256-RSA-PKCS"

# RSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
sign 01 SHA256-RSA-PKCS-PSS "$T/sig2" --mgf MGF1-SHA256 --salt-len 32
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256 \
        -verify "$T/test-rsa.pub" -signature "$T/sig2" "$T/data" || fail "openssl rejects SHA256-RSA-PKCS-PSS"

# ECDSA with SHA-256 (DER signature, as openssl wants it).
if ! standin_lacks ECDSA-SHA256; then
        sign 02 ECDSA-SHA256 "$T/sig3" --signature-format openssl
        openssl dgst -sha256 -verify "$T/test-ec.pub" -signature "$T/sig3" "$T/data" ||
                fail "openssl rejects ECDSA-SHA256"
fi

# Raw ECDSA over a digest computed outside.
p11 --login --pin "$USER_PIN" --sign --id 02 -m ECDSA --signature-format openssl \
        --input-file "$T/data.sha256" --output-file "$T/sig4" >"$T/sig4.log" 2>&1 ||
        { cat "$T/sig4.log"; fail "pkcs11-tool --sign -m ECDSA"; }
openssl pkeyutl -verify -pubin -inkey "$T/test-ec.pub" -in "$T/data.sha256" -sigfile "$T/sig4" ||
        fail "openssl rejects raw ECDSA"

# Raw RSA (CKM_RSA_X_509) over a full-size block below the modulus (first
# byte 0): openssl recovers the block from the signature with the public key.
head -c 256 /dev/urandom >"$T/block"
printf '\000' | dd of="$T/block" bs=1 count=1 conv=notrunc 2>/dev/null
p11 --login --pin "$USER_PIN" --sign --id 01 -m RSA-X-509 \
        --input-file "$T/block" --output-file "$T/sig6" >"$T/sig6.log" 2>&1 ||
        { cat "$T/sig6.log"; fail "pkcs11-tool --sign -m RSA-X-509"; }
[[ $(stat -c %s "$T/sig6") -eq 256 ]] || fail "RSA-X-509 signature is not 256 bytes"
openssl pkeyutl -verifyrecover -pubin -inkey "$T/test-rsa.pub" -pkeyopt rsa_padding_mode:none \
        -in "$T/sig6" -out "$T/sig6.rec" || fail "openssl pkeyutl -verifyrecover (raw RSA)"
cmp "$T/block" "$T/sig6.rec" || fail "RSA-X-509 signature does not recover the signed block"

# A signature of other data must not verify (the check above could fail).
head -c 1000 /dev/urandom >"$T/other"
expect_fail "openssl dgst -verify over other data" "^Verification [Ff]ailure" \
        openssl dgst -sha256 -verify "$T/test-rsa.pub" -signature "$T/sig1" "$T/other"

# Signing without login: the token says CKF_LOGIN_REQUIRED and the private key
# is not visible before C_Login, so pkcs11-tool logs in on its own and, with
# no PIN to read, gives up before C_Sign; nothing is signed.
expect_fail -o "$T/sig5.log" "pkcs11-tool --sign without a PIN" "Please enter User PIN: error: util_getpass error" \
        p11 --sign --id 01 -m SHA256-RSA-PKCS --input-file "$T/data" --output-file "$T/sig5" </dev/null
[[ ! -s "$T/sig5" ]] || fail "pkcs11-tool wrote a signature without logging in"
echo "ok"
