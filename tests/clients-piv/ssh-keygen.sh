#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# OpenSSH's ssh-keygen -D lists the PIV key's public keys through netca:
# each key of the card's certificates (9A, 9C, 9D, 9E RSA/P-256, 82 P-384)
# appears, in OpenSSH form.
set -euo pipefail
. "$(dirname "$0")/piv-lib.sh"
need_cmd ssh-keygen
piv_setup

foreign ssh-keygen -D "$MODULE" >"$T/D.out" 2>"$T/D.err" || { cat "$T/D.out" "$T/D.err"; fail "ssh-keygen -D"; }
cat "$T/D.out"
for slot in 9a 9c 9d 9e 82; do
        openssl x509 -in "$(card_cert $slot)" -noout -pubkey >"$T/$slot.pub"
        ssh-keygen -i -m PKCS8 -f "$T/$slot.pub" >"$T/$slot.ssh" || fail "ssh-keygen -i ($slot)"
        want=$(cut -d' ' -f1,2 "$T/$slot.ssh")
        grep -qF "$want" "$T/D.out" || fail "ssh-keygen -D does not list the $slot key ($want)"
done
[[ $(cut -d' ' -f2 "$T/D.out" | sort -u | wc -l) -eq 5 ]] || fail "expected 5 distinct keys"
echo "ok"
