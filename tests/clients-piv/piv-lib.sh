# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the tests of tests/clients-piv: real clients against the virtual
# PIV card that netcad serves through the emulated USB CCID reader.  Each test
# runs under usbenv.py (see meson.build), which gives NETCA_SOCKET and
# USBENV_CARD_DIR (the card directory: its certificates are the reference).
# The helpers of tests/lib/fixture.sh (p11, foreign, ossl, asserts...) are
# reused; the token is not created here, it is the card.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/fixture.sh"

USER_PIN=123456
SO_PIN=12345678         # the PUK
CARD=
declare -A SLOT_ID=([9a]=01 [9c]=02 [9d]=03 [9e]=04 [82]=05)

# piv_setup: temp dir, traps, MODULE, TOKEN_LABEL (the card's).
piv_setup() {
        need_cmd pkcs11-tool openssl readelf
        : "${NETCA_SOCKET:?run under usbenv.py (tests/clients-piv/meson.build)}"
        : "${USBENV_CARD_DIR:?run under usbenv.py}"
        CARD=$USBENV_CARD_DIR
        T=$(mktemp -d "${TMPDIR:-/tmp}/netca-piv-test.XXXXXX")
        trap fixture_cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        export XDG_RUNTIME_DIR="$T/run" HOME="$T/home" NETCA_AUTOSTART=0
        mkdir -p "$XDG_RUNTIME_DIR" "$HOME"
        chmod 0700 "$XDG_RUNTIME_DIR"
        MODULE="$NETCA_MODULE"
        [[ -f "$MODULE" ]] || fail "$MODULE not built"
        detect_sanitizers
        foreign pkcs11-tool --module "$MODULE" -L >"$T/L.out" 2>&1 || { cat "$T/L.out" >&2; fail "pkcs11-tool -L"; }
        TOKEN_LABEL=$(sed -n 's/^ *token label *: *//p' "$T/L.out" | head -n1)
        [[ $TOKEN_LABEL == PIV\ * ]] || { cat "$T/L.out" >&2; fail "no PIV token in the slot list"; }
        log "module $MODULE, PIV token '$TOKEN_LABEL', card $CARD, temp dir $T, asan=$SANITIZED"
}

# pct STRING: percent-encoding for a pkcs11 URI attribute value.
pct() {
        local s=$1 out= c i
        for ((i = 0; i < ${#s}; i++)); do
                c=${s:i:1}
                case $c in
                [A-Za-z0-9._~-]) out+=$c ;;
                *) out+=$(printf '%%%02X' "'$c") ;;
                esac
        done
        printf '%s' "$out"
}

# piv_uri ID TYPE: pkcs11 URI of an object of the card, with the PIN.
piv_uri() {
        echo "pkcs11:token=$(pct "$TOKEN_LABEL");id=$(echo -n "$1" | sed 's/../%&/g');type=$2;pin-value=$USER_PIN"
}

# card_cert SLOT: the card directory's certificate of SLOT (PEM path).
card_cert() { echo "$CARD/$1.crt.pem"; }
