#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Quick start: installs the packages, builds build/, starts netcad in the
# background with a demo soft token (an RSA-2048 key pair and a self-signed
# certificate on it) and shows the token through pkcs11-tool.  Safe to run
# again: it reuses a running demo daemon and an existing demo token.
#
# Demo files live in build/demo/ (socket, data dir, log, pid).  To use the
# demo token from another shell:
#     export NETCA_SOCKET=$PWD/build/demo/netcad.sock
#     pkcs11-tool --module build/pkcs11/netca-pkcs11.so -L
# Stop the demo daemon:  kill "$(cat build/demo/netcad.pid)"
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/build/demo
SOCK=$DEMO/netcad.sock
DATA=$DEMO/data
LABEL=demo
PIN=123456
SO_PIN=12345678
MODULE=$ROOT/build/pkcs11/netca-pkcs11.so
TOOL=$ROOT/build/cli/netca-tool
NETCAD=$ROOT/build/daemon/netcad

say() { echo "==> $*"; }

say "installing packages"
bash ./scripts/install-deps.sh

say "building build/"
if [[ ! -f build/build.ninja ]]; then
        log=$(mktemp)
        meson setup build --buildtype=debugoptimized >"$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
        rm -f "$log"
fi
ninja -C build -j 2 >/dev/null || ninja -C build -j 1

export NETCA_SOCKET=$SOCK NETCA_DATA_DIR=$DATA
mkdir -p "$DEMO" "$DATA"
chmod 0700 "$DEMO"

running() {
        [[ -f "$DEMO/netcad.pid" ]] && kill -0 "$(cat "$DEMO/netcad.pid")" 2>/dev/null && [[ -S "$SOCK" ]]
}

if running; then
        say "netcad already running (pid $(cat "$DEMO/netcad.pid"))"
else
        say "starting netcad (socket $SOCK, data $DATA, log $DEMO/netcad.log)"
        rm -f "$SOCK"
        setsid "$NETCAD" --foreground --socket "$SOCK" --data-dir "$DATA" >>"$DEMO/netcad.log" 2>&1 </dev/null &
        echo $! >"$DEMO/netcad.pid"
        for _ in $(seq 100); do
                [[ -S "$SOCK" ]] && break
                kill -0 "$(cat "$DEMO/netcad.pid")" 2>/dev/null || { tail -20 "$DEMO/netcad.log"; exit 1; }
                sleep 0.1
        done
        [[ -S "$SOCK" ]] || { echo "netcad did not start; see $DEMO/netcad.log" >&2; exit 1; }
fi

p11() { pkcs11-tool --module "$MODULE" --token-label "$LABEL" "$@"; }

if ! pkcs11-tool --module "$MODULE" -L 2>/dev/null | grep -Eq "token label +: $LABEL\$"; then
        say "creating the soft token '$LABEL' (user PIN $PIN, SO PIN $SO_PIN)"
        "$TOOL" token create-soft --label "$LABEL" --pin "$PIN" --so-pin "$SO_PIN"
fi

if ! p11 --type cert -O 2>/dev/null | grep -q '^Certificate Object'; then
        if ! p11 --type pubkey -O 2>/dev/null | grep -q '^Public Key Object; RSA'; then
                say "generating an RSA-2048 key pair on the token"
                p11 --login --pin "$PIN" --keypairgen --key-type rsa:2048 --id 01 --label "$LABEL-key" >/dev/null
        fi
        say "making a self-signed certificate with the token key (OpenSSL + libp11 engine)"
        engine=$(ls /usr/lib/*/engines-3/pkcs11.so | head -n1)
        cat >"$DEMO/openssl.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $MODULE
init = 0
[req]
distinguished_name = dn
[dn]
[v3]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation,keyEncipherment
subjectKeyIdentifier = hash
CNF
        OPENSSL_CONF=$DEMO/openssl.cnf openssl req -new -x509 -engine pkcs11 -keyform engine \
                -key "pkcs11:token=$LABEL;id=%01;type=private;pin-value=$PIN" \
                -subj "/CN=NETCA demo/O=NETCA demo" -days 365 -sha256 -extensions v3 \
                -out "$DEMO/demo.crt" 2>"$DEMO/req.log" || { cat "$DEMO/req.log"; exit 1; }
        openssl x509 -in "$DEMO/demo.crt" -outform DER -out "$DEMO/demo.der"
        p11 --login --pin "$PIN" --write-object "$DEMO/demo.der" --type cert --id 01 --label "$LABEL-key" >/dev/null
fi

say "pkcs11-tool --module build/pkcs11/netca-pkcs11.so -L -O"
pkcs11-tool --module build/pkcs11/netca-pkcs11.so -L -O
echo
say "netcad is running in the background (pid $(cat "$DEMO/netcad.pid")); to use it:"
echo "    export NETCA_SOCKET=$SOCK"
echo "    pkcs11-tool --module build/pkcs11/netca-pkcs11.so --login --pin $PIN -O"
echo "    build/cli/netca-tool list"
echo "    kill \$(cat build/demo/netcad.pid)    # stop it"
