#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# pkcs11-tool signs with the PIV key through netca (RSA 9A: PKCS#1 v1.5 and
# PSS, the host hashing; ECDSA P-256 9C with its context-specific login;
# P-384 82); openssl verifies each signature against the card's certificate,
# and refuses it over other data.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
piv_setup

head -c 3000 /dev/urandom >"$T/data"
printf 'other' >"$T/other"

sign() { # SLOT MECH OUT [extra...]
        local slot=$1 mech=$2 out=$3
        shift 3
        p11 --login --pin "$USER_PIN" --sign --id "${SLOT_ID[$slot]}" -m "$mech" -i "$T/data" -o "$out" "$@" \
                >"$out.log" 2>&1 || { cat "$out.log"; fail "pkcs11-tool --sign $slot $mech"; }
}
verify() { # SLOT SIG [openssl dgst options...]
        local slot=$1 sig=$2 md=${HASH:--sha256}
        shift 2
        openssl x509 -in "$(card_cert $slot)" -noout -pubkey >"$T/$slot.pub"
        openssl dgst "$md" -verify "$T/$slot.pub" -signature "$sig" "$@" "$T/data" ||
                fail "openssl does not verify the $slot signature $sig"
        expect_fail "$slot signature $sig over other data" "^Verification [Ff]ailure" \
                openssl dgst "$md" -verify "$T/$slot.pub" -signature "$sig" "$@" "$T/other"
}

sign 9a SHA256-RSA-PKCS "$T/9a.sig"
verify 9a "$T/9a.sig"
sign 9a SHA256-RSA-PKCS-PSS "$T/9a-pss.sig" --mgf MGF1-SHA256 --salt-len -1
verify 9a "$T/9a-pss.sig" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1
# 9C is ALWAYS_AUTHENTICATE: pkcs11-tool logs in again (CKU_CONTEXT_SPECIFIC)
# with the same PIN before C_Sign.
sign 9c ECDSA-SHA256 "$T/9c.sig" --signature-format openssl
verify 9c "$T/9c.sig"
HASH=-sha384 sign 82 ECDSA-SHA384 "$T/82.sig" --signature-format openssl
HASH=-sha384 verify 82 "$T/82.sig"
# The 9C signature does not verify with the 9E key of the same curve.
openssl x509 -in "$(card_cert 9e)" -noout -pubkey >"$T/9e.pub"
expect_fail "the 9C signature with the 9E key" "^Verification [Ff]ailure" \
        openssl dgst -sha256 -verify "$T/9e.pub" -signature "$T/9c.sig" "$T/data"

# Raw RSA (CKM_RSA_X_509) with 9A over a full-size block below the modulus
# (first byte 0): openssl recovers the block with the certificate's key.
head -c 256 /dev/urandom >"$T/block"
printf '\000' | dd of="$T/block" bs=1 count=1 conv=notrunc 2>/dev/null
p11 --login --pin "$USER_PIN" --sign --id 01 -m RSA-X-509 -i "$T/block" -o "$T/9a-raw.sig" >"$T/9a-raw.log" 2>&1 ||
        { cat "$T/9a-raw.log"; fail "pkcs11-tool --sign 9a RSA-X-509"; }
[[ $(stat -c %s "$T/9a-raw.sig") -eq 256 ]] || fail "RSA-X-509 signature is not 256 bytes"
openssl pkeyutl -verifyrecover -pubin -inkey "$T/9a.pub" -pkeyopt rsa_padding_mode:none \
        -in "$T/9a-raw.sig" -out "$T/9a-raw.rec" || fail "openssl pkeyutl -verifyrecover (raw RSA, 9a)"
cmp "$T/block" "$T/9a-raw.rec" || fail "the 9a RSA-X-509 signature does not recover the signed block"

# A wrong PIN signs nothing.
expect_fail -o "$T/bad.log" "signing with a wrong PIN" "C_Login failed: rv = CKR_PIN_INCORRECT" \
        p11 --login --pin 654321 --sign --id 01 -m SHA256-RSA-PKCS -i "$T/data" -o "$T/bad.sig"
[[ ! -s "$T/bad.sig" ]] || fail "a signature was written after a wrong PIN"
echo "ok"
