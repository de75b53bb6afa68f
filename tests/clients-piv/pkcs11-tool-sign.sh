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
        if openssl dgst "$md" -verify "$T/$slot.pub" -signature "$sig" "$@" "$T/other" >/dev/null 2>&1; then
                fail "$slot signature $sig verifies over other data"
        fi
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
if openssl dgst -sha256 -verify "$T/9e.pub" -signature "$T/9c.sig" "$T/data" >/dev/null 2>&1; then
        fail "the 9C signature verifies with the 9E key"
fi
# A wrong PIN signs nothing.
if p11 --login --pin 654321 --sign --id 01 -m SHA256-RSA-PKCS -i "$T/data" -o "$T/bad.sig" >"$T/bad.log" 2>&1; then
        fail "signed with a wrong PIN"
fi
assert_file_contains "$T/bad.log" "CKR_PIN_INCORRECT" "wrong PIN"
echo "ok"
