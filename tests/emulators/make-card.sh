#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-card.sh DIR [--delay-ms N] [--mgmt-alg 3des|aes128|aes192|aes256 --mgmt-key HEX]
# Creates a complete virtual PIV card directory for vpiv (format: vpiv.h):
# RSA-2048 in 9A, P-256 in 9C, RSA-2048 in 9D, P-256 in 9E, P-384 in retired
# slot 82, each with a self-signed certificate; PIN 123456, PUK 12345678, the
# default 3DES management key 010203040506070801020304050607080102030405060708.
set -euo pipefail

usage() { echo "usage: $0 DIR [--delay-ms N] [--mgmt-alg ALG --mgmt-key HEX] [--guid HEX32]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
dir=$1; shift
delay=0
alg=3des
key=010203040506070801020304050607080102030405060708
guid=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
while [[ $# -gt 0 ]]; do
        case $1 in
        --delay-ms) delay=$2; shift 2 ;;
        --mgmt-alg) alg=$2; shift 2 ;;
        --mgmt-key) key=$2; shift 2 ;;
        --guid) guid=$2; shift 2 ;;
        *) usage ;;
        esac
done

mkdir -p "$dir"
umask 077
cat > "$dir/card.conf" <<CONF
# vpiv card made by make-card.sh
pin = 123456
puk = 12345678
pin_retries = 3
puk_retries = 3
mgmt_alg = $alg
mgmt_key = $key
guid = $guid
delay_ms = $delay
CONF

# slot  key-type  subject
mk() {
        local slot=$1 type=$2 cn=$3
        case $type in
        rsa2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$slot.key.pem" 2>/dev/null ;;
        p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$slot.key.pem" ;;
        p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$dir/$slot.key.pem" ;;
        esac
        openssl req -new -x509 -key "$dir/$slot.key.pem" -out "$dir/$slot.crt.pem" -days 3650 \
                -subj "/O=NETCA test/CN=$cn" -sha256 2>/dev/null
        chmod 0644 "$dir/$slot.crt.pem"
}
mk 9a rsa2048 "vpiv 9A PIV Authentication"
mk 9c p256 "vpiv 9C Digital Signature"
mk 9d rsa2048 "vpiv 9D Key Management"
mk 9e p256 "vpiv 9E Card Authentication"
mk 82 p384 "vpiv 82 Retired Key 1"
