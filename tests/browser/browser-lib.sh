# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Shared by the browser tests (after fixture_setup): a test CA, a server
# certificate for 127.0.0.1, a client EC P-256 key and certificate imported
# onto the soft token, and the HTTPS server requiring that client certificate.
#   browser_pki          writes $T/pki/{ca,server,client}.{pem,key}, imports
#                        the client pair onto $TOKEN_LABEL; CLIENT_SUBJECT
#   browser_server_start starts tls-server.py; PORT, URL, SUBJECTS (file)
#   wait_for_file FILE SECONDS
BROWSER_DIR="$NETCA_SOURCE_ROOT/tests/browser"
CLIENT_CN="NETCA browser test $$"
CLIENT_SUBJECT="commonName=$CLIENT_CN,organizationName=NETCA test"
SERVER_PID=

# Installs the EXIT trap that also stops the server (call after fixture_setup).
browser_trap() {
        # set +eu: a cleanup step that finds nothing to undo (a test that
        # skipped early) must not stop the others, or netcad is left running.
        trap 'rc=$?; set +eu; browser_server_stop; browser_restore; (exit $rc); fixture_cleanup' EXIT
}
browser_restore() { :; } # tests override it to undo system-wide changes

# issue_cert NAME SUBJECT EXTENSIONS: a P-256 key $T/pki/NAME.key and its
# certificate NAME.pem from the test CA, with EXTENSIONS (printf format).
issue_cert() {
        local d="$T/pki"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
                -keyout "$d/$1.key" -out "$d/$1.csr" 2>"$d/err" || { cat "$d/err" >&2; fail "$1 key"; }
        # shellcheck disable=SC2059 # the extensions are a format on purpose
        printf "$3" >"$d/$1.ext"
        openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
                -extfile "$d/$1.ext" -out "$d/$1.pem" 2>"$d/err" || { cat "$d/err" >&2; fail "$1 cert"; }
}

browser_pki() {
        local d="$T/pki"
        mkdir -p "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                -subj "/O=NETCA test/CN=NETCA browser test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
                -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
                2>"$d/err" || { cat "$d/err" >&2; fail "test CA"; }
        issue_cert server "/O=NETCA test/CN=127.0.0.1" \
                'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n'
        issue_cert client "/O=NETCA test/CN=$CLIENT_CN" \
                'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n'
        "$NETCA_TOOL" --token "$TOKEN_LABEL" --pin "$USER_PIN" import "$d/client.pem" --key "$d/client.key" \
                --label "browser-client" >"$d/import.out" 2>&1 || { cat "$d/import.out" >&2; fail "import"; }
        rm -f "$d/client.key" # only the token has it now
}

wait_for_file() {
        local i
        for i in $(seq $(($2 * 10))); do
                [[ -s "$1" ]] && return 0
                sleep 0.1
        done
        return 1
}

browser_server_start() {
        SUBJECTS="$T/subjects.txt"
        : >"$SUBJECTS"
        /usr/bin/python3 "$BROWSER_DIR/tls-server.py" "$T/pki/server.pem" "$T/pki/server.key" "$T/pki/ca.pem" \
                "$T/port" "$SUBJECTS" >"$T/server.log" 2>&1 </dev/null &
        SERVER_PID=$!
        wait_for_file "$T/port" 20 || { cat "$T/server.log" >&2; fail "tls-server did not start"; }
        PORT=$(cat "$T/port")
        URL="https://127.0.0.1:$PORT/"
}

browser_server_stop() {
        if [[ -n "$SERVER_PID" ]]; then
                kill -KILL "$SERVER_PID" 2>/dev/null
                wait "$SERVER_PID" 2>/dev/null || true
                SERVER_PID=
        fi
}
