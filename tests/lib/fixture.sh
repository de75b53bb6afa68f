# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# Shell fixture for tests that drive real programs against a PKCS#11 token.
# Source it from a bash test script, then call fixture_setup:
#
#     . "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
#     fixture_setup                  # temp dir, daemon, soft token
#     fixture_add_rsa 01 test-rsa    # RSA-2048 key pair + self-signed cert
#     fixture_add_ec 02 test-ec      # EC P-256 key pair
#     p11 -O                         # pkcs11-tool on that token
#
# Environment (meson sets the first two for every test):
#   NETCA_BUILD_ROOT   build directory (netcad, netca-tool, netca-pkcs11.so)
#   NETCA_SOURCE_ROOT  source directory
#   P11_TEST_MODULE    "netca" (default) or "softhsm": run the same tests
#                      against SoftHSM2 as a stand-in (no netca code involved)
#   NETCA_TEST_KEEP=1  keep the temp dir (and say where it is) for debugging
#
# After fixture_setup:
#   T            the temp dir (removed on exit)
#   MODULE       path of the PKCS#11 module under test
#   TOKEN_LABEL  label of the token created for the test
#   USER_PIN, SO_PIN
#   NETCA_SOCKET, NETCA_DATA_DIR (netca) or SOFTHSM2_CONF (softhsm), exported
#
# Foreign programs (pkcs11-tool, openssl, certutil, ...) must be run through
# `foreign` (p11/p11tool/ossl do it): when the module was built with ASan, it
# preloads the sanitizer runtimes into them and turns off leak detection for
# them (their own leaks are not ours).  A test exits 77 (skipped) only when a
# build output it needs does not exist.
#
# Exit: the trap stops the daemon (SIGTERM, then SIGKILL), removes the temp dir,
# and fails the test if the daemon's log holds a sanitizer report.

set -euo pipefail

: "${NETCA_BUILD_ROOT:?NETCA_BUILD_ROOT must point at the build directory}"
: "${NETCA_SOURCE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${P11_TEST_MODULE:=netca}"

USER_PIN=123456
SO_PIN=12345678
TOKEN_LABEL=netca-test
T=
NETCAD_PID=
SANITIZED=0
FOREIGN_ENV=()

NETCAD="$NETCA_BUILD_ROOT/daemon/netcad"
NETCA_TOOL="$NETCA_BUILD_ROOT/cli/netca-tool"
NETCA_MODULE="$NETCA_BUILD_ROOT/pkcs11/netca-pkcs11.so"
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
OPENSSL_ENGINE_SO=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -n1 || true)

log() { echo "# $*" >&2; }

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

skip() {
        echo "SKIP: $*" >&2
        exit 77
}

# need_cmd CMD...: the test needs these programs (installed by
# scripts/install-deps.sh); their absence is a failure, not a skip.
need_cmd() {
        local c
        for c in "$@"; do
                command -v "$c" >/dev/null || fail "$c is not installed (scripts/install-deps.sh)"
        done
}

# assert_contains FILE-OR-STRING PATTERN [what]: grep -E on a file's content.
assert_file_contains() {
        grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "${3:-$1} does not match /$2/"; }
}

assert_file_not_contains() {
        if grep -Eq -- "$2" "$1"; then
                cat "$1" >&2
                fail "${3:-$1} matches /$2/"
        fi
}

# expect_fail [-s STATUS] [-o OUT] WHAT PATTERN CMD ARGS...: CMD must fail the
# way a program fails on purpose, and say why: its exit status must be STATUS
# (with -s), else 1..123 -- never 0, nor a timeout of `foreign` (124, 137), a
# death by a signal (>128) or a command that could not run (126, 127) -- and
# its output (stdout and stderr, left in OUT, default $T/fail.out) must match
# PATTERN (grep -E).  The output is shown either way.
expect_fail() {
        local want= out="$T/fail.out" rc=0
        while [[ $# -gt 0 ]]; do
                case $1 in
                -s) want=$2; shift 2 ;;
                -o) out=$2; shift 2 ;;
                *) break ;;
                esac
        done
        local what=$1 pat=$2
        shift 2
        "$@" >"$out" 2>&1 || rc=$?
        cat "$out" >&2
        if [[ -n "$want" ]]; then
                [[ $rc -eq $want ]] || fail "$what: exit status $rc, expected $want"
        elif [[ $rc -eq 0 ]]; then
                fail "$what: succeeded (exit status 0), expected a failure"
        elif [[ $rc -ge 124 ]]; then
                fail "$what: exit status $rc (a timeout, a signal or a command that did not run), expected 1..123"
        fi
        assert_file_contains "$out" "$pat" "$what"
}

fixture_cleanup() {
        local rc=$?
        set +e
        if [[ -n "$NETCAD_PID" ]]; then
                local st=0
                if ! kill -0 "$NETCAD_PID" 2>/dev/null; then
                        wait "$NETCAD_PID" 2>/dev/null || st=$?
                        echo "# netcad died during the test (exit status $st)" >&2
                        [[ $rc -eq 0 || $rc -eq 77 ]] && rc=1
                else
                        # A clean shutdown on SIGTERM exits 0.
                        kill -TERM "$NETCAD_PID" 2>/dev/null
                        for _ in $(seq 100); do
                                kill -0 "$NETCAD_PID" 2>/dev/null || break
                                sleep 0.1
                        done
                        if kill -0 "$NETCAD_PID" 2>/dev/null; then
                                echo "# netcad did not stop within 10 s of SIGTERM; killing it" >&2
                                kill -KILL "$NETCAD_PID" 2>/dev/null
                                [[ $rc -eq 0 ]] && rc=1
                        fi
                        wait "$NETCAD_PID" 2>/dev/null || st=$?
                        if [[ $st -ne 0 ]]; then
                                echo "# netcad exited with status $st on SIGTERM" >&2
                                [[ $rc -eq 0 ]] && rc=1
                        fi
                fi
                NETCAD_PID=
        fi
        if [[ -n "$T" && -f "$T/netcad.log" ]]; then
                if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/netcad.log"; then
                        echo "# sanitizer report in the netcad log:" >&2
                        cat "$T/netcad.log" >&2
                        [[ $rc -eq 0 || $rc -eq 77 ]] && rc=1
                elif [[ $rc -ne 0 && $rc -ne 77 ]]; then
                        echo "# netcad log (last 40 lines):" >&2
                        tail -n 40 "$T/netcad.log" >&2
                fi
        fi
        if [[ -n "$T" && -d "$T" ]]; then
                if [[ "${NETCA_TEST_KEEP:-0}" = 1 ]]; then
                        echo "# kept $T" >&2
                else
                        rm -rf "$T"
                fi
        fi
        exit "$rc"
}

# Sets FOREIGN_ENV when the module under test carries ASan.
detect_sanitizers() {
        FOREIGN_ENV=()
        SANITIZED=0
        if readelf -d "$MODULE" 2>/dev/null | grep -q 'NEEDED.*libasan'; then
                SANITIZED=1
                local preload asan ubsan
                asan=$(readelf -d "$MODULE" | sed -n 's/.*NEEDED.*\[\(libasan[^]]*\)\].*/\1/p' | head -n1)
                ubsan=$(readelf -d "$MODULE" | sed -n 's/.*NEEDED.*\[\(libubsan[^]]*\)\].*/\1/p' | head -n1)
                preload=$(gcc -print-file-name="$asan")
                [[ -n "$ubsan" ]] && preload="$preload:$(gcc -print-file-name="$ubsan")"
                FOREIGN_ENV=(env "LD_PRELOAD=$preload"
                        "ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:verify_asan_link_order=0"
                        "UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1")
        fi
}

# foreign CMD ARGS...: run a program that was not built here and loads MODULE.
# A hang is a failure of that command (after FOREIGN_TIMEOUT seconds), so that
# the test still cleans up instead of being killed by meson's timeout.
: "${FOREIGN_TIMEOUT:=90}"
foreign() {
        local rc=0
        if [[ $SANITIZED = 1 ]]; then
                timeout -k 5 "$FOREIGN_TIMEOUT" "${FOREIGN_ENV[@]}" "$@" || rc=$?
        else
                timeout -k 5 "$FOREIGN_TIMEOUT" "$@" || rc=$?
        fi
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then
                echo "# TIMEOUT: $1 did not finish within ${FOREIGN_TIMEOUT}s" >&2
        fi
        return $rc
}

start_netcad() {
        [[ -x "$NETCAD" ]] || skip "$NETCAD not built"
        [[ -x "$NETCA_TOOL" ]] || skip "$NETCA_TOOL not built"
        [[ -f "$NETCA_MODULE" ]] || skip "$NETCA_MODULE not built"
        MODULE="$NETCA_MODULE"
        export NETCA_SOCKET="$T/s" NETCA_DATA_DIR="$T/d"
        mkdir -p "$T/d"
        "$NETCAD" --foreground --socket "$NETCA_SOCKET" --data-dir "$NETCA_DATA_DIR" \
                >"$T/netcad.log" 2>&1 </dev/null &
        NETCAD_PID=$!
        local i
        for i in $(seq 200); do
                [[ -S "$NETCA_SOCKET" ]] && break
                kill -0 "$NETCAD_PID" 2>/dev/null || {
                        cat "$T/netcad.log" >&2
                        NETCAD_PID=
                        fail "netcad exited before creating its socket"
                }
                sleep 0.05
        done
        [[ -S "$NETCA_SOCKET" ]] || fail "netcad did not create $NETCA_SOCKET within 10 s"
        timeout -k 5 "$FOREIGN_TIMEOUT" "$NETCA_TOOL" token create-soft --label "$TOKEN_LABEL" \
                --pin "$USER_PIN" --so-pin "$SO_PIN" \
                >"$T/create-soft.out" 2>&1 || {
                cat "$T/create-soft.out" >&2
                fail "netca-tool token create-soft failed"
        }
}

start_softhsm() {
        need_cmd softhsm2-util
        [[ -f "$SOFTHSM_MODULE" ]] || fail "$SOFTHSM_MODULE missing (softhsm2)"
        MODULE="$SOFTHSM_MODULE"
        mkdir -p "$T/softhsm-tokens"
        printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
                "$T/softhsm-tokens" >"$T/softhsm2.conf"
        export SOFTHSM2_CONF="$T/softhsm2.conf"
        softhsm2-util --init-token --free --label "$TOKEN_LABEL" --pin "$USER_PIN" --so-pin "$SO_PIN" \
                >"$T/init-token.out" 2>&1 || {
                cat "$T/init-token.out" >&2
                fail "softhsm2-util --init-token failed"
        }
}

fixture_setup() {
        need_cmd pkcs11-tool openssl readelf
        T=$(mktemp -d "${TMPDIR:-/tmp}/netca-test.XXXXXX")
        trap fixture_cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        # Never let a test touch a user's real daemon or p11-kit config.
        export XDG_RUNTIME_DIR="$T/run" HOME="$T/home"
        # The module must never start a daemon of its own behind the test.
        export NETCA_AUTOSTART=0
        mkdir -p "$XDG_RUNTIME_DIR" "$HOME"
        chmod 0700 "$XDG_RUNTIME_DIR"
        case "$P11_TEST_MODULE" in
        netca) start_netcad ;;
        softhsm) start_softhsm ;;
        *) fail "P11_TEST_MODULE must be netca or softhsm, not '$P11_TEST_MODULE'" ;;
        esac
        detect_sanitizers
        log "module $MODULE ($P11_TEST_MODULE), token '$TOKEN_LABEL', temp dir $T, asan=$SANITIZED"
}

# p11 ARGS...: pkcs11-tool on the test token.
p11() {
        foreign pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" "$@"
}

# Writes $T/openssl.cnf loading the libp11 engine with MODULE; sets
# OPENSSL_CONF for the caller.  ossl ARGS... runs openssl with it.
openssl_engine_setup() {
        [[ -n "$OPENSSL_ENGINE_SO" && -f "$OPENSSL_ENGINE_SO" ]] ||
                fail "libp11's pkcs11 engine is missing (libengine-pkcs11-openssl)"
        cat >"$T/openssl.cnf" <<EOF
openssl_conf = openssl_init

[openssl_init]
engines = engine_section

[engine_section]
pkcs11 = pkcs11_section

[pkcs11_section]
engine_id = pkcs11
dynamic_path = $OPENSSL_ENGINE_SO
MODULE_PATH = $MODULE
init = 0

[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = netca test

[v3_self]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation,keyEncipherment
subjectKeyIdentifier = hash
EOF
}

ossl() {
        OPENSSL_CONF="$T/openssl.cnf" foreign openssl "$@"
}

# pkcs11 URI of an object on the test token.
p11_uri() { # ID TYPE(private|public|cert)
        local id=$1 type=$2 pct
        pct=$(echo -n "$id" | sed 's/../%&/g')
        echo "pkcs11:token=$TOKEN_LABEL;id=$pct;type=$type;pin-value=$USER_PIN"
}

# fixture_add_rsa ID LABEL [CN]: an RSA-2048 key pair generated on the token,
# and a self-signed certificate made by OpenSSL through the libp11 engine with
# that key, stored on the token with the same ID and label.  The certificate
# is left in $T/LABEL.crt (PEM) and the public key in $T/LABEL.pub (PEM).
fixture_add_rsa() {
        local id=$1 label=$2 cn=${3:-netca test $2}
        p11 --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 --id "$id" --label "$label" \
                --usage-sign --usage-decrypt >"$T/keygen-$label.out" 2>&1 || {
                cat "$T/keygen-$label.out" >&2
                fail "RSA key pair generation on the token failed"
        }
        fixture_read_pubkey "$id" "$T/$label.pub"
        fixture_self_signed "$id" "$label" "$cn"
}

# fixture_add_ec ID LABEL: an EC P-256 key pair generated on the token; the
# public key is left in $T/LABEL.pub (PEM).
fixture_add_ec() {
        local id=$1 label=$2
        p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 --id "$id" --label "$label" \
                --usage-sign >"$T/keygen-$label.out" 2>&1 || {
                cat "$T/keygen-$label.out" >&2
                fail "EC P-256 key pair generation on the token failed"
        }
        fixture_read_pubkey "$id" "$T/$label.pub"
}

# der_len N: a DER length field for N bytes, in hex.
der_len() {
        if (($1 < 128)); then
                printf '%02x' "$1"
        elif (($1 < 256)); then
                printf '81%02x' "$1"
        else
                printf '82%04x' "$1"
        fi
}

# der_tlv TAG-HEX CONTENT-HEX
der_tlv() {
        printf '%s%s%s' "$1" "$(der_len $((${#2} / 2)))" "$2"
}

hex_to_file() { # HEX FILE
        printf '%b' "$(printf '%s' "$1" | sed 's/../\\x&/g')" >"$2"
}

# fixture_read_pubkey ID OUT.pem: the public key object with that ID, as PEM.
# RSA keys come from pkcs11-tool --read-object.  EC keys are rebuilt here from
# CKA_EC_PARAMS and CKA_EC_POINT as listed by pkcs11-tool -O: OpenSC 0.23's
# --read-object of an EC public key reads freed memory (an ASan report in
# pkcs11-tool itself, and "cannot create EVP_PKEY" for P-384 without ASan).
fixture_read_pubkey() {
        local id=$1 out=$2 kind point params
        p11 --type pubkey -O >"$out.list" 2>&1 || { cat "$out.list" >&2; fail "pkcs11-tool -O --type pubkey"; }
        read -r kind point params < <(awk -v id="$id" '
                function flush() { if (found) { print kind, (pt == "" ? "-" : pt), (pa == "" ? "-" : pa); done = 1 } }
                /^[A-Z][A-Za-z ]* Object/ { if (!done) flush(); kind = ($0 ~ /; EC/) ? "ec" : "other"; pt = pa = ""; found = 0 }
                /^  EC_POINT:/ { pt = $2 }
                /^  EC_PARAMS:/ { pa = $2 }
                /^  ID:/ { if ($2 == id) found = 1 }
                END { if (!done) flush() }' "$out.list")
        [[ -n "${kind:-}" ]] || { cat "$out.list" >&2; fail "no public key object with ID $id"; }
        if [[ $kind != ec ]]; then
                p11 --read-object --type pubkey --id "$id" --output-file "$out.der" >"$out.log" 2>&1 || {
                        cat "$out.log" >&2
                        fail "reading public key $id from the token failed"
                }
        else
                [[ $point != - && $params != - ]] || { cat "$out.list" >&2; fail "EC key $id lacks EC_POINT/EC_PARAMS"; }
                # CKA_EC_POINT is a DER OCTET STRING holding the point (some
                # tokens give the bare point): unwrap it.
                if [[ ${point:0:2} = 04 && ${#point} -gt 4 ]]; then
                        local n=$((16#${point:2:2})) skip=4
                        if ((n == 0x81)); then
                                n=$((16#${point:4:2})) skip=6
                        fi
                        ((${#point} == skip + 2 * n)) && point=${point:skip}
                fi
                local algid spki
                algid=$(der_tlv 30 "06072a8648ce3d0201$params")
                spki=$(der_tlv 30 "$algid$(der_tlv 03 "00$point")")
                hex_to_file "$spki" "$out.der"
        fi
        openssl pkey -pubin -inform DER -in "$out.der" -out "$out" 2>"$out.log" || {
                cat "$out.log" >&2
                fail "public key $id read from the token is not a valid SubjectPublicKeyInfo"
        }
}

# fixture_self_signed ID LABEL CN: self-signed certificate signed on the token
# by the private key ID, written to the token as a certificate object.
fixture_self_signed() {
        local id=$1 label=$2 cn=$3
        [[ -f "$T/openssl.cnf" ]] || openssl_engine_setup
        ossl req -new -x509 -engine pkcs11 -keyform engine -key "$(p11_uri "$id" private)" \
                -subj "/CN=$cn/O=NETCA test" -days 30 -sha256 -extensions v3_self \
                -set_serial "0x$(openssl rand -hex 8)" \
                -out "$T/$label.crt" >"$T/req-$label.out" 2>&1 || {
                cat "$T/req-$label.out" >&2
                fail "openssl req -x509 with the token key $id failed"
        }
        openssl x509 -in "$T/$label.crt" -outform DER -out "$T/$label.crt.der"
        p11 --login --pin "$USER_PIN" --write-object "$T/$label.crt.der" --type cert --id "$id" \
                --label "$label" >"$T/write-cert-$label.out" 2>&1 || {
                cat "$T/write-cert-$label.out" >&2
                fail "writing the certificate to the token failed"
        }
}

# standin_lacks WHAT: true (and says so) when the module under test is the
# SoftHSM2 stand-in, which lacks WHAT; netca must have everything.
standin_lacks() {
        if [[ $P11_TEST_MODULE = softhsm ]]; then
                log "SoftHSM2 (stand-in) lacks $*: not checked"
                return 0
        fi
        return 1
}
