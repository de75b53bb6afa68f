#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The cross-check of issue 4: ONE virtual PIV card directory, copied twice
# (same keys, certificates, PINs and counters), served to OpenSC's
# opensc-pkcs11.so through pcscd + vpcd and to netca-pkcs11.so through the
# emulated USB CCID reader and netcad.  Both must list the same certificates
# (byte-equal DER) and public keys (same SubjectPublicKeyInfo: modulus or EC
# point), and a signature made through each verifies (openssl) against the
# certificate the other one read: RSA 9A (ID 01), ECDSA P-256 9C (ID 02,
# ALWAYS_AUTHENTICATE) and ECDSA P-256 9E (ID 04); OpenSC gives the retired
# EC key (82, ID 05) derive usage only, so its certificate and key are compared
# but it signs nothing.
# Environment (tests/crosscheck/meson.build): XC_VPIV_CARD, XC_MAKE_CARD,
# XC_NETCAD, XC_HARNESS, XC_USBENV, XC_VPCDENV, XC_PYTHON, NETCA_BUILD_ROOT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
for v in XC_VPIV_CARD XC_MAKE_CARD XC_NETCAD XC_HARNESS XC_USBENV XC_VPCDENV XC_PYTHON NETCA_BUILD_ROOT; do
        [[ -n ${!v:-} ]] || fail "$v not set (run through meson test --suite opensc)"
done
command -v umockdev-wrapper >/dev/null || fail "umockdev-wrapper missing (scripts/install-deps.sh)"
opensc=
for m in /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so /usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so; do
        [[ -f $m ]] && { opensc=$m; break; }
done
[[ -n $opensc ]] || fail "opensc-pkcs11.so missing (opensc)"

W=$(mktemp -d "${TMPDIR:-/tmp}/netca-crosscheck.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$XC_MAKE_CARD" "$W/card" >/dev/null
cp -a "$W/card" "$W/card-netca"
cp -a "$W/card" "$W/card-opensc"
head -c 4000 /dev/urandom >"$W/data"
mkdir -p "$W/netca" "$W/opensc"

echo "# netca: netca-pkcs11.so, netcad, emulated USB CCID reader"
umockdev-wrapper "$XC_PYTHON" "$XC_USBENV" --harness "$XC_HARNESS" --card-exe "$XC_VPIV_CARD" \
        --netcad "$XC_NETCAD" --card-dir "$W/card-netca" -- \
        bash "$here/side.sh" netca "$NETCA_BUILD_ROOT/pkcs11/netca-pkcs11.so" "$W/netca" || fail "the netca side failed"
echo "# opensc: opensc-pkcs11.so, pcscd, vpcd"
"$XC_PYTHON" "$XC_VPCDENV" "$XC_VPIV_CARD" "$W/card-opensc" -- \
        bash "$here/side.sh" opensc "$opensc" "$W/opensc" || fail "the OpenSC side failed"

for side in netca opensc; do
        [[ $(grep -c '^Certificate Object' "$W/$side/O.out") -eq 5 ]] || { cat "$W/$side/O.out"; fail "$side: expected 5 certificates"; }
        [[ $(grep -c '^Public Key Object' "$W/$side/O.out") -eq 5 ]] || { cat "$W/$side/O.out"; fail "$side: expected 5 public keys"; }
done
spki() { openssl pkey -pubin -in "$1" -outform DER | od -An -tx1 | tr -d ' \n'; }
certspki() { openssl x509 -inform DER -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | od -An -tx1 | tr -d ' \n'; }
for id in 01 02 03 04 05; do
        cmp "$W/netca/cert-$id.der" "$W/opensc/cert-$id.der" || fail "certificate $id: netca and OpenSC read different DER"
        openssl x509 -in "$W/card/$(case $id in 01) echo 9a ;; 02) echo 9c ;; 03) echo 9d ;; 04) echo 9e ;; 05) echo 82 ;; esac).crt.pem" \
                -outform DER | cmp - "$W/netca/cert-$id.der" || fail "certificate $id is not the card's"
        n=$(spki "$W/netca/pub-$id.pem") o=$(spki "$W/opensc/pub-$id.pem")
        [[ $n == "$o" ]] || fail "public key $id: netca and OpenSC differ"
        [[ $n == "$(certspki "$W/netca/cert-$id.der")" ]] || fail "public key $id is not its certificate's"
        echo "ID $id: certificate ($(stat -c %s "$W/netca/cert-$id.der") bytes DER) and public key ($(openssl pkey -pubin \
                -in "$W/netca/pub-$id.pem" -noout -text | head -n1)) equal"
done
# RSA: the modulus printed by each side's key, for the log.
[[ $(openssl rsa -pubin -in "$W/netca/pub-01.pem" -noout -modulus) == \
   $(openssl rsa -pubin -in "$W/opensc/pub-01.pem" -noout -modulus) ]] || fail "RSA 9A modulus differs"

verify() { # SIGNER OTHER ID MD
        openssl x509 -inform DER -in "$W/$2/cert-$3.der" -noout -pubkey >"$W/$2-$3.pub"
        openssl dgst "$4" -verify "$W/$2-$3.pub" -signature "$W/$1/sig-$3" "$W/data" >/dev/null ||
                fail "the $1 signature with $3 does not verify against the certificate $2 read"
        echo "ID $3: signature made through $1 verifies against the certificate read through $2"
}
for pair in "netca opensc" "opensc netca"; do
        set -- $pair
        verify "$1" "$2" 01 -sha256
        verify "$1" "$2" 02 -sha256
        verify "$1" "$2" 04 -sha256
done
# And not over other data.
printf 'x' >>"$W/data"
if openssl dgst -sha256 -verify "$W/opensc-01.pub" -signature "$W/netca/sig-01" "$W/data" >/dev/null 2>&1; then
        fail "a signature verified over other data"
fi
echo "ok"
