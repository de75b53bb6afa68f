#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# OpenSSL with libp11's pkcs11 engine signs with the PIV keys through netca
# (openssl dgst -sign, RSA 9A and ECDSA 9E); openssl alone verifies against the
# card's certificates, and refuses the signatures over modified data.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
piv_setup
openssl_engine_setup
head -c 5000 /dev/urandom >"$T/data"
cp "$T/data" "$T/data2"
# The first byte plus one (through od and printf's octal escape: a command
# substitution would drop a NUL or a newline, 1 time in 128).
b=$(od -An -tu1 -N1 "$T/data" | tr -d ' ')
printf "\\$(printf '%03o' $(((b + 1) % 256)))" | dd of="$T/data2" bs=1 count=1 conv=notrunc 2>/dev/null
cmp -s "$T/data" "$T/data2" && fail "could not modify the data"

# 9A (RSA) and 9E (ECDSA P-256).  Not 9C: libp11 0.4.12 asks the PIN of an
# ALWAYS_AUTHENTICATE key again through an interactive UI prompt that
# `openssl dgst` cannot answer (-passin does not reach it).
for k in 9a:01 9e:04; do
        slot=${k%%:*} id=${k##*:}
        ossl dgst -sha256 -engine pkcs11 -keyform engine -sign "$(piv_uri "$id" private)" \
                -out "$T/$slot.sig" "$T/data" >"$T/dgst-$slot.out" 2>&1 ||
                { cat "$T/dgst-$slot.out"; fail "openssl dgst -sign with the engine ($slot)"; }
        openssl x509 -in "$(card_cert $slot)" -noout -pubkey >"$T/$slot.pub"
        openssl dgst -sha256 -verify "$T/$slot.pub" -signature "$T/$slot.sig" "$T/data" ||
                fail "openssl does not verify the engine's $slot signature"
        expect_fail "$slot signature over modified data" "^Verification [Ff]ailure" \
                openssl dgst -sha256 -verify "$T/$slot.pub" -signature "$T/$slot.sig" "$T/data2"
done
echo "ok"
