/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-bench-hostile: the neighbour of the benchmark's "hostile" mode
 * (bench.c): attempts one of faults 1-5 of issue 23 on the raw socket
 * ($NETCA_SOCKET) until it is killed, as tests/stress/hostile.c and
 * hostile-core.c produce them (their raw-wire helpers, stress-util.c).
 * Everything it makes is on the token in slot SLOT (not the one the
 * benchmark signs on).  Prints "ready" once the fault is under way; the
 * benchmark then measures, and kills its process group.
 *
 *   connections  4 processes, each holding connections until refused (the
 *                per-process cap), then connecting again every 1 ms
 *   frames       50 connections, each a frame header announcing ~1 MiB and
 *                then one byte per 100 ms; reopened when dropped
 *   unread       6 connections, each 400 pipelined C_GenerateRandom of
 *                WIRE_RANDOM_MAX bytes whose replies are never read; one of
 *                them replaced by a new one every 50 ms
 *   events       8 event subscribers that never read, while token objects
 *                are created and destroyed (an event each) without pause
 *   cpu          4,096 sessions opened (the per-client cap), then
 *                C_VerifyInit + C_Verify with an RSA-4096 key of exponent
 *                2^64-1, 32 pipelined at a time, without pause
 *
 * Usage: netca-bench-hostile FAULT SLOT */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buffer.h"
#include "common/wire-client.h"
#include "common/wire.h"
#include "tests/stress/stress-util.h"

static char *sock;
static CK_SLOT_ID slot;

static _Noreturn void fail(const char *what) {
        fprintf(stderr, "netca-bench-hostile: %s\n", what);
        exit(EXIT_FAILURE);
}

static void ready(void) {
        printf("ready\n");
        fflush(stdout);
}

/* A connection that said HELLO (with caps), or -1. */
static int conn(uint64_t caps) {
        int fd = raw_connect(sock);
        if (fd >= 0 && wire_hello(fd, caps, "bench-hostile", 5000, NULL) == 0)
                return fd;
        if (fd >= 0)
                close(fd);
        return -1;
}

/* A connection with a session on slot, or -1. */
static int conn_session(CK_SESSION_HANDLE *ret) {
        int fd = conn(0);
        if (fd >= 0 && raw_open_session(fd, slot, ret) != CKR_OK) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/* Sends what the socket takes of p without waiting. */
static void send_some(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k <= 0)
                        return;
                p += k;
                n -= (size_t)k;
        }
}

/* ---- 1: many connections ---- */

#define CONN_PROCS 4
#define CONN_MAX 1000
#define CONN_RETRY_MS 1 /* not a tight loop: on 2 CPUs that measures the scheduler */

static void connections_one(void) {
        static int fds[CONN_MAX];
        unsigned n = 0;
        while (n < CONN_MAX && (fds[n] = conn(0)) >= 0)
                n++;
}

static void fault_connections(void) {
        int p[2];
        if (pipe(p) < 0)
                fail("pipe");
        for (unsigned i = 0; i < CONN_PROCS; i++) {
                pid_t pid = fork();
                if (pid < 0)
                        fail("fork");
                if (pid == 0) {
                        connections_one();
                        if (write(p[1], "x", 1) != 1)
                                _exit(1);
                        for (;;) { /* refused at once, each */
                                int fd = conn(0);
                                if (fd >= 0)
                                        close(fd);
                                stress_sleep_ms(CONN_RETRY_MS);
                        }
                }
        }
        char b;
        for (unsigned i = 0; i < CONN_PROCS; i++)
                if (read(p[0], &b, 1) != 1)
                        fail("a connecting process died");
        ready();
        for (;;)
                pause();
}

/* ---- 2: slow frames ---- */

#define SLOW_CONNS 50
#define SLOW_STEP_MS 100

static void fault_frames(void) {
        static struct wire_msg m;
        int fds[SLOW_CONNS];
        size_t sent[SLOW_CONNS];
        if (raw_big_frame(WIRE_FRAME_MAX - 256, &m) < 0)
                fail("frame");
        for (unsigned i = 0; i < SLOW_CONNS; i++) {
                fds[i] = -1;
                sent[i] = 0;
        }
        for (unsigned round = 0;; round++) {
                for (unsigned i = 0; i < SLOW_CONNS; i++) {
                        if (fds[i] < 0) {
                                fds[i] = conn(0);
                                sent[i] = 0;
                        }
                        if (fds[i] < 0)
                                continue;
                        /* The header first, then a byte at a time. */
                        size_t n = sent[i] == 0 ? WIRE_HDR_SIZE : 1;
                        if (sent[i] + n >= m.buf.len || send(fds[i], m.buf.data + sent[i], n, MSG_NOSIGNAL) != (ssize_t)n) {
                                close(fds[i]);
                                fds[i] = -1;
                                continue;
                        }
                        sent[i] += n;
                }
                if (round == 0)
                        ready();
                stress_sleep_ms(SLOW_STEP_MS);
        }
}

/* ---- 3: a client that never reads ---- */

#define UNREAD_CONNS 6
#define UNREAD_REQUESTS 400
#define UNREAD_STEP_MS 50

/* A new connection with a session and UNREAD_REQUESTS C_GenerateRandom
 * sent (what the socket takes), or -1. */
static int unread_conn(void) {
        CK_SESSION_HANDLE h;
        int fd = conn_session(&h);
        struct nbuf all;
        if (fd < 0)
                return -1;
        nbuf_init(&all, 1u << 20);
        for (uint32_t i = 0; i < UNREAD_REQUESTS; i++) {
                struct wire_msg m;
                wire_msg_init_write(&m, WIRE_OP_GENERATE_RANDOM, 1000 + i, 0);
                wire_put_u64(&m, h);
                wire_put_u64(&m, WIRE_RANDOM_MAX);
                if (wire_msg_finish(&m) == 0)
                        nbuf_put_raw(&all, m.buf.data, m.buf.len);
                wire_msg_done(&m);
        }
        if (!nbuf_failed(&all))
                send_some(fd, all.data, all.len);
        nbuf_done(&all);
        return fd;
}

static void fault_unread(void) {
        int fds[UNREAD_CONNS];
        for (unsigned i = 0; i < UNREAD_CONNS; i++)
                fds[i] = unread_conn();
        ready();
        for (unsigned i = 0;; i = (i + 1) % UNREAD_CONNS) {
                stress_sleep_ms(UNREAD_STEP_MS);
                if (fds[i] >= 0)
                        close(fds[i]);
                fds[i] = unread_conn();
        }
}

/* ---- 4: stopped event subscribers ---- */

#define SUBSCRIBERS 8

static void fault_events(void) {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL tru = CK_TRUE, fal = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls },
                             { CKA_TOKEN, &tru, sizeof tru },
                             { CKA_PRIVATE, &fal, sizeof fal },
                             { CKA_LABEL, "bench-ev", 8 } };
        CK_SESSION_HANDLE h;
        int fd = conn_session(&h);
        if (fd < 0)
                fail("no session");
        for (unsigned i = 0; i < SUBSCRIBERS; i++)
                if (conn(WIRE_CAP_EVENTS) < 0)
                        fail("no subscriber");
        for (bool first = true;; first = false) {
                struct wire_msg m;
                uint64_t o = 0;
                wire_msg_init_write(&m, WIRE_OP_CREATE_OBJECT, 1, 0);
                wire_put_u64(&m, h);
                wire_put_attrs(&m, t, sizeof t / sizeof t[0]);
                if (raw_send_msg(fd, &m) < 0 || raw_reply_rv(fd, WIRE_OP_CREATE_OBJECT, &o) != CKR_OK)
                        fail("C_CreateObject");
                wire_msg_done(&m);
                wire_msg_init_write(&m, WIRE_OP_DESTROY_OBJECT, 2, 0);
                wire_put_u64(&m, h);
                wire_put_u64(&m, o);
                if (raw_send_msg(fd, &m) < 0 || raw_reply_rv(fd, WIRE_OP_DESTROY_OBJECT, NULL) != CKR_OK)
                        fail("C_DestroyObject");
                wire_msg_done(&m);
                if (first)
                        ready();
        }
}

/* ---- 5: CPU-heavy verifies, many sessions ---- */

#define CPU_SESSIONS 4096
#define CPU_BATCH 32

static void fault_cpu(void) {
        CK_SESSION_HANDLE h, extra;
        CK_OBJECT_HANDLE key;
        int fd = conn_session(&h);
        if (fd < 0 || raw_create_costly_key(fd, h, &key) != CKR_OK)
                fail("no session or key");
        for (unsigned i = 1; i < CPU_SESSIONS && raw_open_session(fd, slot, &extra) == CKR_OK; i++)
                ;
        struct nbuf all;
        nbuf_init(&all, 4u << 20);
        for (unsigned i = 0; i < CPU_BATCH; i++)
                raw_put_verify(&all, h, key);
        if (nbuf_failed(&all))
                fail("buffer");
        for (bool first = true;; first = false) {
                if (raw_send_all(fd, all.data, all.len) < 0)
                        fail("send");
                if (first)
                        ready();
                for (unsigned i = 0; i < CPU_BATCH; i++) {
                        raw_reply_rv(fd, WIRE_OP_VERIFY_INIT, NULL);
                        raw_reply_rv(fd, WIRE_OP_VERIFY, NULL);
                }
        }
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                void (*fn)(void);
        } faults[] = {
                { "connections", fault_connections },
                { "frames", fault_frames },
                { "unread", fault_unread },
                { "events", fault_events },
                { "cpu", fault_cpu },
        };
        if (argc != 3)
                fail("usage: netca-bench-hostile connections|frames|unread|events|cpu SLOT");
        signal(SIGPIPE, SIG_IGN);
        /* The benchmark kills the whole group: the forked ones too. */
        setpgid(0, 0);
        sock = wire_socket_path();
        slot = (CK_SLOT_ID)strtoul(argv[2], NULL, 10);
        if (!sock)
                fail("no socket path");
        for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
                if (strcmp(argv[1], faults[i].name) == 0) {
                        faults[i].fn();
                        return 0;
                }
        fail("unknown fault");
}
