#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A tiny HTTPS server on 127.0.0.1 that requires a client certificate issued
# by the test CA.  Usage: tls-server.py CERT KEY CA PORTFILE SUBJECTFILE
# It binds an ephemeral port (written to PORTFILE), answers each request with
# the client certificate's subject, and appends that subject (one line per
# authenticated request, e.g. "CN=...,O=...") to SUBJECTFILE.  Handshakes
# without an acceptable certificate are logged to stderr and refused.
import http.server
import ssl
import sys

cert, key, ca, portfile, subjfile = sys.argv[1:6]


def subject_str(peer):
    return ",".join("%s=%s" % kv for rdn in peer.get("subject", ()) for kv in rdn)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        subj = subject_str(self.connection.getpeercert() or {})
        with open(subjfile, "a") as f:
            f.write(subj + "\n")
        body = ("<html><body><p id=subject>client certificate: %s</p></body></html>\n" % subj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("tls-server: " + (fmt % args) + "\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    # The TLS handshake runs in the request's thread, not in accept(): a
    # browser opens speculative connections it never completes, and one of
    # those must not block the server for the real one.
    def finish_request(self, request, client_address):
        request.settimeout(30)
        request.do_handshake()
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        sys.stderr.write("tls-server: handshake/request error from %s: %s\n" % (client_address, sys.exc_info()[1]))


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
srv = Server(("127.0.0.1", 0), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
