#!/bin/bash
# --change-pin and back; a wrong PIN gives CKR_PIN_INCORRECT; the old PIN no
# longer works after a change.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
fixture_setup
NEW_PIN=24681357

# A wrong PIN.
expect_fail -o "$T/wrong.out" "login with a wrong PIN" "C_Login failed: rv = CKR_PIN_INCORRECT" \
        p11 --login --pin 99999999 -O
# The token now says a wrong PIN was entered (CKF_USER_PIN_COUNT_LOW)...
p11 -L >"$T/L1.out" 2>&1 || { cat "$T/L1.out"; fail "pkcs11-tool -L"; }
assert_file_contains "$T/L1.out" "token flags .*user PIN count low" "-L after a wrong PIN"
assert_file_not_contains "$T/L1.out" "user PIN locked|final user PIN try" "-L after one wrong PIN"
# ...until the right PIN is given.
p11 --login --pin "$USER_PIN" -O >"$T/right.out" 2>&1 || { cat "$T/right.out"; fail "login with the PIN"; }
p11 -L >"$T/L2.out" 2>&1 || { cat "$T/L2.out"; fail "pkcs11-tool -L"; }
assert_file_not_contains "$T/L2.out" "user PIN count low" "-L after a good login"

p11 --login --pin "$USER_PIN" --change-pin --new-pin "$NEW_PIN" >"$T/c1.out" 2>&1 ||
        { cat "$T/c1.out"; fail "--change-pin"; }
p11 --login --pin "$NEW_PIN" -O >"$T/n.out" 2>&1 || { cat "$T/n.out"; fail "login with the new PIN"; }
expect_fail -o "$T/old.out" "the old PIN after --change-pin" "C_Login failed: rv = CKR_PIN_INCORRECT" \
        p11 --login --pin "$USER_PIN" -O

p11 --login --pin "$NEW_PIN" --change-pin --new-pin "$USER_PIN" >"$T/c2.out" 2>&1 ||
        { cat "$T/c2.out"; fail "--change-pin back"; }
p11 --login --pin "$USER_PIN" -O >"$T/back.out" 2>&1 || { cat "$T/back.out"; fail "login with the original PIN"; }

# The SO PIN sets a new user PIN (C_InitPIN); needs --login --login-type so.
p11 --login --login-type so --so-pin "$SO_PIN" --init-pin --new-pin "$NEW_PIN" >"$T/i.out" 2>&1 ||
        { cat "$T/i.out"; fail "--init-pin with the SO PIN"; }
p11 --login --pin "$NEW_PIN" -O >"$T/i2.out" 2>&1 || { cat "$T/i2.out"; fail "login with the PIN set by the SO"; }
echo "ok"
