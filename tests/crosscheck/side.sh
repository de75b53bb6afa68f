#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# side.sh NAME MODULE OUTDIR: what one PKCS#11 module sees of the PIV card
# and signs with it, for crosscheck.sh: OUTDIR/cert-ID.der (CKA_VALUE),
# OUTDIR/pub-ID.pem (the public key object), OUTDIR/sig-ID (a signature of
# OUTDIR/../data: SHA256-RSA-PKCS for 01, ECDSA-SHA256 for 02 and 04,
# DER-encoded ECDSA).  Runs inside usbenv.py (netca) or vpcdenv.py
# (OpenSC), which put the card behind the module.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
name=$1 MODULE=$2 out=$3
USER_PIN=123456
need_cmd pkcs11-tool openssl readelf
mkdir -p "$out"
T=$(mktemp -d "${TMPDIR:-/tmp}/netca-xcheck-$name.XXXXXX")
trap fixture_cleanup EXIT
detect_sanitizers

foreign pkcs11-tool --module "$MODULE" -L >"$out/L.out" 2>&1 || { cat "$out/L.out" >&2; fail "$name: pkcs11-tool -L"; }
TOKEN_LABEL=$(sed -n 's/^ *token label *: *//p' "$out/L.out" | head -n1)
[[ -n $TOKEN_LABEL ]] || { cat "$out/L.out" >&2; fail "$name: no token"; }
log "$name: module $MODULE, token '$TOKEN_LABEL'"
p11 -O >"$out/O.out" 2>&1 || { cat "$out/O.out" >&2; fail "$name: pkcs11-tool -O"; }

for id in 01 02 03 04 05; do
        p11 --read-object --type cert --id "$id" --output-file "$out/cert-$id.der" >"$T/rc-$id.log" 2>&1 ||
                { cat "$T/rc-$id.log" >&2; fail "$name: reading certificate $id"; }
        fixture_read_pubkey "$id" "$out/pub-$id.pem"
done

sign() { # ID MECH [extra...]
        local id=$1 mech=$2
        shift 2
        p11 --login --pin "$USER_PIN" --sign --id "$id" -m "$mech" -i "$out/../data" -o "$out/sig-$id" "$@" \
                >"$T/sign-$id.log" 2>&1 || { cat "$T/sign-$id.log" >&2; fail "$name: signing with $id ($mech)"; }
}
sign 01 SHA256-RSA-PKCS
sign 02 ECDSA-SHA256 --signature-format openssl
sign 04 ECDSA-SHA256 --signature-format openssl
log "$name: done"
