/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wire-client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

char *wire_socket_path(void) {
        const char *e = secure_getenv("NETCA_SOCKET");
        char *p = NULL;
        if (e && *e)
                return strdup(e);
        e = secure_getenv("XDG_RUNTIME_DIR");
        if (e && e[0] == '/') {
                if (asprintf(&p, "%s/netca/netcad.sock", e) < 0)
                        return NULL;
                return p;
        }
        if (asprintf(&p, "/run/user/%u/netca/netcad.sock", (unsigned)getuid()) < 0)
                return NULL;
        return p;
}

int wire_connect(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (!path || !ret_fd)
                return -EINVAL;
        size_t n = strlen(path);
        if (n >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

int wire_write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Reads exactly n bytes.  -ECONNRESET on end of stream. */
static int read_all(int fd, uint8_t *p, size_t n, int timeout_ms) {
        while (n > 0) {
                if (timeout_ms >= 0) {
                        struct pollfd pfd = { .fd = fd, .events = POLLIN };
                        int r = poll(&pfd, 1, timeout_ms);
                        if (r < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        if (r == 0)
                                return -ETIMEDOUT;
                }
                ssize_t got = recv(fd, p, n, 0);
                if (got < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (got == 0)
                        return -ECONNRESET;
                p += got;
                n -= (size_t)got;
        }
        return 0;
}

int wire_read_frame(int fd, int timeout_ms, uint8_t **ret, size_t *ret_len) {
        uint8_t hdr[WIRE_HDR_SIZE];
        struct wire_hdr h;
        int r = read_all(fd, hdr, sizeof hdr, timeout_ms);
        if (r < 0)
                return r;
        if (wire_hdr_parse(hdr, &h) < 0)
                return -EPROTO;
        size_t len = (size_t)h.len + 4;
        uint8_t *f = malloc(len);
        if (!f)
                return -ENOMEM;
        memcpy(f, hdr, sizeof hdr);
        r = read_all(fd, f + sizeof hdr, len - sizeof hdr, timeout_ms);
        if (r < 0) {
                free(f);
                return r;
        }
        *ret = f;
        *ret_len = len;
        return 0;
}

int wire_hello(int fd, uint64_t caps, const char *client_name, int timeout_ms, struct wire_hello_info *ret) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_HELLO, 1, 0);
        wire_put_u64(&m, WIRE_VERSION);
        wire_put_u64(&m, caps);
        wire_put_string(&m, client_name ? client_name : "");
        int r = wire_msg_finish(&m);
        if (r >= 0)
                r = wire_write_all(fd, m.buf.data, m.buf.len);
        wire_msg_done(&m);
        if (r < 0)
                return r == -EPIPE || r == -ECONNRESET ? -ECONNREFUSED : r;

        uint8_t *f = NULL;
        size_t len = 0;
        r = wire_read_frame(fd, timeout_ms, &f, &len);
        if (r == -ECONNRESET || r == -EPIPE)
                return -ECONNREFUSED; /* closed without an answer: refused */
        if (r < 0)
                return r;
        uint64_t rv = 0, version = 0, dcaps = 0;
        char *name = NULL;
        r = 0;
        if (wire_msg_init_read(&m, f, len) < 0 || m.opnum != WIRE_OP_HELLO || !(m.flags & WIRE_F_REPLY) ||
            m.id != 1)
                r = -EPROTO;
        else if (m.flags & WIRE_F_ERROR)
                r = -EPROTONOSUPPORT;
        else if (!wire_get_u64(&m, &rv) || !wire_get_u64(&m, &version) || !wire_get_u64(&m, &dcaps) ||
                 !wire_get_string(&m, &name) || wire_msg_read_done(&m) < 0)
                r = -EPROTO;
        else if (rv != 0 || (version >> 16) != WIRE_VERSION_MAJOR)
                r = -EPROTONOSUPPORT;
        wire_msg_done(&m);
        free(f);
        if (r == 0 && ret) {
                ret->version = version;
                ret->caps = dcaps;
                snprintf(ret->name, sizeof ret->name, "%s", name ? name : "");
        }
        free(name);
        return r;
}
