/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/wire-client: the socket path every client and the daemon agree
 * on, and HELLO against a peer of this test's that answers each way a
 * daemon can (accept, refuse, another major version, malformed, close
 * without answering), and frame reading (over-cap header, end of stream,
 * timeout). */
#include "unit.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include "common/wire-client.h"
#include "common/wire.h"

static void check_path(const char *want) {
        char *p = wire_socket_path();
        CHECK(p);
        if (strcmp(p, want) != 0) {
                fprintf(stderr, "socket path %s, want %s\n", p, want);
                exit(EXIT_FAILURE);
        }
        free(p);
}

static void test_socket_path(void) {
        char fallback[64];
        snprintf(fallback, sizeof fallback, "/run/user/%u/netca/netcad.sock", (unsigned)getuid());
        setenv("NETCA_SOCKET", "/x/s.sock", 1);
        setenv("XDG_RUNTIME_DIR", "/run/xdg", 1);
        check_path("/x/s.sock");
        setenv("NETCA_SOCKET", "", 1); /* empty: not set */
        check_path("/run/xdg/netca/netcad.sock");
        unsetenv("NETCA_SOCKET");
        check_path("/run/xdg/netca/netcad.sock");
        /* A relative XDG_RUNTIME_DIR is invalid (XDG Base Directory spec):
         * ignored by everyone alike. */
        setenv("XDG_RUNTIME_DIR", "run/xdg", 1);
        check_path(fallback);
        setenv("XDG_RUNTIME_DIR", "", 1);
        check_path(fallback);
        unsetenv("XDG_RUNTIME_DIR");
        check_path(fallback);
}

enum answer { ACCEPT, REFUSE, ERROR_FRAME, OTHER_MAJOR, MALFORMED, CLOSE, OTHER_OP };

/* The peer's side: reads the HELLO, checks what the client said, answers. */
static void answer(int fd, enum answer a) {
        uint8_t *f = NULL;
        size_t len = 0;
        CHECK_OK(wire_read_frame(fd, 5000, &f, &len));
        struct wire_msg m;
        CHECK_OK(wire_msg_init_read(&m, f, len));
        uint64_t version = 0, caps = 0;
        char *name = NULL;
        CHECK(m.opnum == WIRE_OP_HELLO && wire_get_u64(&m, &version) && wire_get_u64(&m, &caps) &&
              wire_get_string(&m, &name) && wire_msg_read_done(&m) == 0);
        CHECK(version == WIRE_VERSION && caps == WIRE_CAP_MGMT && strcmp(name, "unit") == 0);
        free(name);
        uint32_t id = m.id;
        wire_msg_done(&m);
        free(f);
        if (a == CLOSE)
                return;
        struct wire_msg r;
        if (a == ERROR_FRAME) {
                CHECK_OK(wire_error_reply(&r, WIRE_OP_HELLO, id, CKR_DEVICE_ERROR));
        } else {
                wire_msg_init_write(&r, a == OTHER_OP ? WIRE_OP_PING : WIRE_OP_HELLO, id, WIRE_F_REPLY);
                wire_put_u64(&r, a == REFUSE ? CKR_DEVICE_ERROR : CKR_OK);
                if (a != OTHER_OP) {
                        wire_put_u64(&r, a == OTHER_MAJOR ? (uint64_t)(WIRE_VERSION_MAJOR + 1) << 16 : WIRE_VERSION);
                        wire_put_u64(&r, WIRE_CAP_MGMT | WIRE_CAP_EVENTS);
                        wire_put_string(&r, "netcad test");
                }
                CHECK_OK(wire_msg_finish(&r));
        }
        if (a == MALFORMED) {
                /* The name string one byte short of its length field: the
                 * frame is whole, its last field is not. */
                r.buf.len -= 1;
                r.buf.data[3] -= 1; /* the frame length's low byte (frames here are short) */
        }
        CHECK_OK(wire_write_all(fd, r.buf.data, r.buf.len));
        wire_msg_done(&r);
}

static int hello_with(enum answer a, struct wire_hello_info *info) {
        int sv[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                close(sv[0]);
                answer(sv[1], a);
                close(sv[1]);
                _exit(0);
        }
        close(sv[1]);
        int r = wire_hello(sv[0], WIRE_CAP_MGMT, "unit", 5000, info);
        close(sv[0]);
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        return r;
}

static void test_hello(void) {
        struct wire_hello_info info;
        memset(&info, 0, sizeof info);
        CHECK_RC(hello_with(ACCEPT, &info), 0);
        CHECK(info.version == WIRE_VERSION && info.caps == (WIRE_CAP_MGMT | WIRE_CAP_EVENTS));
        CHECK(strcmp(info.name, "netcad test") == 0);
        CHECK_RC(hello_with(REFUSE, NULL), -EPROTONOSUPPORT);
        CHECK_RC(hello_with(ERROR_FRAME, NULL), -EPROTONOSUPPORT);
        CHECK_RC(hello_with(OTHER_MAJOR, NULL), -EPROTONOSUPPORT);
        CHECK_RC(hello_with(MALFORMED, NULL), -EPROTO);
        CHECK_RC(hello_with(CLOSE, NULL), -ECONNREFUSED);
        CHECK_RC(hello_with(OTHER_OP, NULL), -EPROTO);
}

static void test_read_frame(void) {
        int sv[2];
        uint8_t *f = NULL;
        size_t len = 0;
        /* A header over the frame cap: refused before allocating. */
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        uint8_t big[WIRE_HDR_SIZE] = { 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 2, 0, 1 };
        CHECK_OK(wire_write_all(sv[1], big, sizeof big));
        CHECK_RC(wire_read_frame(sv[0], 1000, &f, &len), -EPROTO);
        close(sv[0]);
        close(sv[1]);
        /* Nothing within the timeout; then a header cut by the end of stream. */
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        CHECK_RC(wire_read_frame(sv[0], 10, &f, &len), -ETIMEDOUT);
        CHECK_OK(wire_write_all(sv[1], big, 5));
        close(sv[1]);
        CHECK_RC(wire_read_frame(sv[0], 1000, &f, &len), -ECONNRESET);
        close(sv[0]);
        /* Writing to a peer that has gone: -EPIPE, no SIGPIPE. */
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        close(sv[0]);
        CHECK_RC(wire_write_all(sv[1], big, sizeof big), -EPIPE);
        close(sv[1]);
        /* No daemon. */
        int fd = -1;
        CHECK_RC(wire_connect("/nonexistent/netcad.sock", &fd), -ENOENT);
        char longp[200];
        memset(longp, 'a', sizeof longp - 1);
        longp[sizeof longp - 1] = 0;
        CHECK_RC(wire_connect(longp, &fd), -ENAMETOOLONG);
}

int main(void) {
        test_socket_path();
        test_hello();
        test_read_frame();
        return 0;
}
