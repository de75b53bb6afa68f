#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The example driver (example/, one line in table.c) served by netcad-example:
# a driver added the way docs/drivers.md says reaches real clients.  Its
# token is listed by pkcs11-tool next to the soft token, its private data
# object shows after a login with its PIN and not before, a wrong PIN is
# CKR_PIN_INCORRECT (the listing's describe members: test-registry.c).
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
NETCAD="$NETCA_BUILD_ROOT/tests/drivers/netcad-example"
export NETCA_USB=0
fixture_setup

ex() {
        foreign pkcs11-tool --module "$MODULE" --token-label example "$@"
}

foreign pkcs11-tool --module "$MODULE" -L >"$T/L.out" 2>&1 || { cat "$T/L.out" >&2; fail "pkcs11-tool -L"; }
assert_file_contains "$T/L.out" "token label +: example$" "pkcs11-tool -L lists the example token"
assert_file_contains "$T/L.out" "token label +: $TOKEN_LABEL$" "and the soft token next to it"
assert_file_contains "$T/L.out" "token manufacturer +: NETCA tests" "the example token's manufacturer"

ex -O >"$T/O0.out" 2>&1 || { cat "$T/O0.out" >&2; fail "pkcs11-tool -O without login"; }
assert_file_not_contains "$T/O0.out" "example data" "the private data object before login"

ex --login --pin 1234 -O >"$T/O1.out" 2>&1 || { cat "$T/O1.out" >&2; fail "pkcs11-tool --login -O"; }
assert_file_contains "$T/O1.out" "label: +'example data'" "the data object after login"

expect_fail "wrong PIN" "C_Login failed: rv = CKR_PIN_INCORRECT" ex --login --pin 9999 -O

grep -q "driver example" "$T/netcad.log" && fail "netcad logged a problem with the example driver"
log "ok"
