#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# netca-pkcs11.so exports C_GetFunctionList and nothing else (binutils' nm
# reads the dynamic symbol table: what a client's dlsym can find).  The
# module is PKCS#11 2.40 (no C_GetInterface/C_GetInterfaceList), so every
# other function is reached only through the function list, and no internal
# symbol (mbedTLS, cJSON, our helpers) can clash with the client's own.
# It also never calls getenv(): a setuid or setgid client (a privileged
# signing helper) must not have its module steered by its caller's
# environment, so every variable is read with secure_getenv().
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
need_cmd nm
[[ -f "$NETCA_MODULE" ]] || skip "$NETCA_MODULE not built"

out=$(nm -D --defined-only "$NETCA_MODULE" 2>&1) || { echo "$out" >&2; fail "nm -D --defined-only $NETCA_MODULE"; }
echo "$out"
# Names only (nm prints "ADDRESS TYPE NAME"; a versioned name ends in @VER).
names=$(awk 'NF >= 3 { print $3 }' <<<"$out" | sed 's/@.*//' | sort -u)
[[ "$names" == C_GetFunctionList ]] ||
        fail "netca-pkcs11.so exports $(echo $names) instead of only C_GetFunctionList"
# ...as a function (T: in the text section).
grep -Eq '^[0-9a-f]+ T C_GetFunctionList(@.*)?$' <<<"$out" || fail "C_GetFunctionList is not an exported function"
undef=$(nm -D --undefined-only "$NETCA_MODULE" 2>&1) || fail "nm -D --undefined-only $NETCA_MODULE"
grep -Eq '(^| )secure_getenv(@|$)' <<<"$undef" || fail "netca-pkcs11.so does not import secure_getenv (nm output changed?)"
if grep -Eq '(^| )getenv(@|$)' <<<"$undef"; then
        fail "netca-pkcs11.so calls getenv(): its environment variables must be read with secure_getenv()"
fi
echo "ok"
