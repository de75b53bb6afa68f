#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/piv-enum.sh [--rounds N] [--delay-ms MS] [--build DIR]
#
# Issue 4's benchmark: enumeration of the virtual PIV card (4 certificates:
# 9A, 9C, 9D, 9E; MS ms per APDU, default 3, like a real token) by
#   opensc  opensc-pkcs11.so with OpenSC's default configuration (the system
#           opensc.conf: its file cache is whatever the default is), through
#           a private pcscd + vpcd (tests/opensc/vpcdenv.py);
#   netca   netca-pkcs11.so, netcad and the emulated USB CCID reader
#           (umockdev, tests/clients-piv/usbenv.py).
# "Enumeration" is bench/piv-enum.c: C_Initialize, slot, session, every
# object with CKA_CLASS, CKA_ID, CKA_LABEL, CKA_VALUE of the certificates,
# C_Finalize, timed inside the process.  Each round inserts a fresh copy of
# the same card: "cold" is the first process after the insertion, "warm" the
# second.  Prints min / median / max over the rounds and the ratios
# opensc/netca (targets: warm >= 20x, cold >= 1x).  For netca it also prints
# the time from plugging the reader to the token being served (netcad start,
# CCID bring-up and the one read of the card's public objects).
# Not a test: nothing here fails on a timing.

set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${NETCA_BUILD_ROOT:-$SRC/build}
ROUNDS=3
DELAY=3
while [[ $# -gt 0 ]]; do
        case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --delay-ms) DELAY=$2; shift ;;
        --build) BUILD=$2; shift ;;
        -h | --help) sed -n '3,22p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
        esac
        shift
done
BUILD=$(cd "$BUILD" && pwd)
VPIV=$BUILD/tests/emulators/vpiv-card
NETCAD=$BUILD/daemon/netcad
MODULE=$BUILD/pkcs11/netca-pkcs11.so
OPENSC=
for m in /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so /usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so; do
        [[ -f $m ]] && { OPENSC=$m; break; }
done
for f in "$VPIV" "$NETCAD" "$MODULE" "$OPENSC"; do
        [[ -n $f && -e $f ]] || { echo "missing: ${f:-opensc-pkcs11.so} (ninja -C $BUILD; scripts/install-deps.sh)" >&2; exit 1; }
done
command -v umockdev-wrapper >/dev/null || { echo "umockdev-wrapper missing" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/piv-enum.XXXXXX")
trap 'rm -rf "$W"' EXIT
cc -O2 -Wall -Wextra -o "$W/piv-enum" "$SRC/bench/piv-enum.c" $(pkg-config --cflags p11-kit-1) -ldl
"$SRC/tests/emulators/make-card.sh" "$W/card" >/dev/null
rm -f "$W/card/82.key.pem" "$W/card/82.crt.pem"          # 4 certificates

# Two processes, one after the other, on a freshly inserted card.
cat >"$W/two.sh" <<TWO
#!/bin/bash
set -e
"$W/piv-enum" "\$1" | sed 's/^/cold /'
"$W/piv-enum" "\$1" | sed 's/^/warm /'
TWO
chmod +x "$W/two.sh"

for r in $(seq "$ROUNDS"); do
        rm -rf "$W/c-netca" "$W/c-opensc"
        cp -a "$W/card" "$W/c-netca"
        cp -a "$W/card" "$W/c-opensc"
        umockdev-wrapper /usr/bin/python3 "$SRC/tests/clients-piv/usbenv.py" --harness "$SRC/tests/usb/ccid-harness.py" \
                --card-exe "$VPIV" --netcad "$NETCAD" --card-dir "$W/c-netca" --delay-ms "$DELAY" --report-ready \
                -- "$W/two.sh" "$MODULE" >"$W/netca-$r.out" 2>"$W/netca-$r.err" ||
                { cat "$W/netca-$r.err" >&2; exit 1; }
        grep -h 'USBENV ready_ms' "$W/netca-$r.err" | sed 's/^USBENV /ready /' >>"$W/netca-$r.out"
        # OpenSC's default configuration: no OPENSC_CONF (vpcdenv.py's own
        # file turns the file cache off); HOME is vpcdenv's fresh temp dir.
        /usr/bin/python3 "$SRC/tests/opensc/vpcdenv.py" "$VPIV" "$W/c-opensc" --delay-ms "$DELAY" -- \
                env -u OPENSC_CONF "$W/two.sh" "$OPENSC" >"$W/opensc-$r.out" 2>"$W/opensc-$r.err" ||
                { cat "$W/opensc-$r.err" >&2; exit 1; }
        echo "round $r: netca $(tr '\n' ' ' <"$W/netca-$r.out")" >&2
        echo "round $r: opensc $(tr '\n' ' ' <"$W/opensc-$r.out")" >&2
done

# stats SUBJECT KIND: "min median max" of the ms values.
stats() {
        cat "$W/$1"-*.out | awk -v k="$2" '$1 == k { for (i = 2; i <= NF; i++) if ($i ~ /_?ms=/) { sub(/.*ms=/, "", $i); print $i } }' |
                sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f %.1f %.1f", v[1], v[int((NR + 1) / 2)], v[NR] }'
}
objs() { awk '$1 == "cold" { print $4, $5; exit }' "$W/$1-1.out"; }

echo
echo "PIV enumeration, virtual card with 4 certificates, ${DELAY} ms per APDU, $ROUNDS rounds (ms: min / median / max)"
echo "  netca:  $(objs netca)    opensc: $(objs opensc)"
printf '%-8s %-26s %-26s %s\n' "" "opensc-pkcs11 (pcscd)" "netca (netcad, USB CCID)" "opensc/netca (median)"
for k in cold warm; do
        read -r omin omed omax <<<"$(stats opensc $k)"
        read -r nmin nmed nmax <<<"$(stats netca $k)"
        ratio=$(awk -v a="$omed" -v b="$nmed" 'BEGIN { printf "%.1fx", a / b }')
        printf '%-8s %-26s %-26s %s\n' "$k" "$omin / $omed / $omax" "$nmin / $nmed / $nmax" "$ratio"
done
read -r rmin rmed rmax <<<"$(stats netca ready)"
echo "netca, reader plugged -> token served (netcad start + card read): $rmin / $rmed / $rmax ms"
echo "targets: warm >= 20x, cold >= 1x"
