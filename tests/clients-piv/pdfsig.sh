#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# poppler's pdfsig signs a PDF with the PIV key's RSA 9A key and its
# certificate, through NSS and netca; pdfsig then says the signature is
# valid, and not valid once the signed content is modified.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
need_cmd pdfsig modutil certutil
piv_setup

. "$(dirname "$0")/../lib/pdf.sh"

make_pdf "$T/in.pdf"
db="sql:$T/nssdb"
mkdir -p "$T/nssdb"
certutil -N -d "$db" --empty-password || fail "certutil -N"
foreign modutil -force -dbdir "$db" -add netca-piv -libfile "$MODULE" >"$T/add.out" 2>&1 ||
        { cat "$T/add.out"; fail "modutil -add"; }

nick="$TOKEN_LABEL:Certificate for PIV Authentication"
foreign pdfsig -nssdir "$db" -nss-pwd "$USER_PIN" -add-signature -nick "$nick" -kpw "$USER_PIN" \
        -reason "netca PIV test" "$T/in.pdf" "$T/signed.pdf" >"$T/sign.out" 2>&1 ||
        { cat "$T/sign.out"; fail "pdfsig -add-signature"; }
[[ -s "$T/signed.pdf" ]] || fail "pdfsig wrote no signed PDF"

foreign pdfsig -nssdir "$db" -nss-pwd "$USER_PIN" "$T/signed.pdf" >"$T/verify.out" 2>&1 ||
        { cat "$T/verify.out"; fail "pdfsig (verify)"; }
cat "$T/verify.out"
assert_file_contains "$T/verify.out" "Signer Certificate Common Name: vpiv 9A PIV Authentication" "pdfsig"
assert_file_contains "$T/verify.out" "Signature Validation: Signature is Valid\." "pdfsig"
assert_file_contains "$T/verify.out" "Total document signed" "pdfsig"

off=$(grep -abo 'netca test) Tj' "$T/signed.pdf" | head -n1 | cut -d: -f1)
[[ -n "$off" ]] || fail "signed PDF lost its content"
cp "$T/signed.pdf" "$T/tampered.pdf"
printf 'N' | dd of="$T/tampered.pdf" bs=1 seek="$off" conv=notrunc 2>/dev/null
# pdfsig reports a digest mismatch (and exits 0: it did its job).
rc=0
foreign pdfsig -nssdir "$db" -nss-pwd "$USER_PIN" "$T/tampered.pdf" >"$T/tampered.out" 2>&1 || rc=$?
cat "$T/tampered.out"
[[ $rc -eq 0 ]] || fail "pdfsig on a tampered PDF exited $rc"
assert_file_contains "$T/tampered.out" "Signature #1:" "pdfsig on a tampered PDF"
assert_file_contains "$T/tampered.out" "Signature Validation: Digest Mismatch\." "pdfsig on a tampered PDF"
assert_file_not_contains "$T/tampered.out" "Signature is Valid\." "pdfsig on a tampered PDF"
echo "ok"
