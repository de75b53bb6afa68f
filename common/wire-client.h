/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client end of the wire, once for every client (netca-pkcs11.so,
 * netca-tool, the tests) and for the daemon's own default: where the
 * socket is, connecting, whole-frame writes and reads, and HELLO.
 *
 * Everything here is safe in someone else's process: sockets are
 * O_CLOEXEC, writes use MSG_NOSIGNAL, the environment is read with
 * secure_getenv(), nothing is printed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The socket path: $NETCA_SOCKET, else $XDG_RUNTIME_DIR/netca/netcad.sock
 * when XDG_RUNTIME_DIR is an absolute path (the XDG Base Directory spec
 * says a relative one is invalid and must be ignored), else
 * /run/user/<uid>/netca/netcad.sock.  malloc'd; NULL on -ENOMEM. */
char *wire_socket_path(void);

/* Connects a stream socket to path.  0 or -errno (-ENAMETOOLONG, -ENOENT,
 * -ECONNREFUSED, ...). */
int wire_connect(const char *path, int *ret_fd);

/* Writes all n bytes (MSG_NOSIGNAL, EINTR retried).  0 or -errno (-EPIPE
 * when the daemon has gone). */
int wire_write_all(int fd, const uint8_t *p, size_t n);

/* Reads one whole frame: *ret (malloc'd, header included), *ret_len.  The
 * length is checked against WIRE_FRAME_MAX before anything is allocated.
 * timeout_ms < 0 waits forever, else bounds each wait for more bytes.
 * 0, -ECONNRESET (end of stream), -ETIMEDOUT, -EPROTO (bad header),
 * -ENOMEM, -errno. */
int wire_read_frame(int fd, int timeout_ms, uint8_t **ret, size_t *ret_len);

struct wire_hello_info {
        uint64_t version;   /* the daemon's WIRE_VERSION */
        uint64_t caps;      /* WIRE_CAP_* it offers */
        char name[64];      /* "netcad 0.1.0" (cut if longer) */
};

/* Sends HELLO (our WIRE_VERSION, caps, client_name) and reads its reply,
 * the first frame the daemon sends.  0 when the daemon accepted us and
 * speaks our major version (*ret filled when not NULL); -ECONNREFUSED the
 * daemon closed the connection without an answer; -EPROTONOSUPPORT it
 * refused us or speaks another major version; -EPROTO malformed reply;
 * -ETIMEDOUT no answer within timeout_ms; -errno. */
int wire_hello(int fd, uint64_t caps, const char *client_name, int timeout_ms, struct wire_hello_info *ret);
