/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A hostile or buggy local client against the socket server (issue 23,
 * items 1-4): one executable, one scenario per argument, each its own meson
 * test (hostile-<scenario>) in the `stress` suite.  Each scenario starts a
 * netcad with small limits (environment, netcad(8)) and measures what the
 * client manages to make it hold; the proofs are counts and states (bytes
 * the daemon has not read, connections it has closed, requests it has run,
 * PING round trips as syncs with its event loop), never times.
 *
 *   frames  a frame whose bytes trickle in is dropped at the frame deadline
 *           (NETCA_FRAME_TIMEOUT_MS) although each byte comes well within
 *           it; half frames of 600 KiB on 8 connections are dropped once
 *           the incomplete frames of all clients would hold over
 *           NETCA_MAX_INCOMPLETE_KB (2 MiB here: exactly 3 stay)
 *   output  C_GenerateRandom over WIRE_RANDOM_MAX is refused; 400 pipelined
 *           C_GenerateRandom of WIRE_RANDOM_MAX bytes whose replies are not
 *           read: the daemon runs only what NETCA_MAX_OUTPUT_KB (1 MiB here)
 *           and the socket's buffer hold (p11_requests), and every reply
 *           comes once the client reads
 *   caps    NETCA_MAX_CONNECTIONS_PER_PROCESS 16 and NETCA_MAX_CONNECTIONS
 *           24: this process gets exactly 16 connections, another one 8,
 *           and each one past a cap is closed at once (no hang)
 *   emfile  the daemon's fd limit lowered (prlimit) to 12 over what it has
 *           open: once they are used, 10 more clients are each answered
 *           (closed, with the spare fd) instead of hanging, the log has a
 *           line about it per 10 s (not one per failed accept()), and once
 *           the clients have gone a new one is served
 *   events-resync, events-drop
 *           a subscriber that reads no events (as a stopped module client)
 *           while 1,500 are pushed: the daemon holds at most
 *           NETCA_MAX_EVENT_OUTPUT_KB (4 KiB here) and one event of them
 *           beyond what the kernel's socket buffer took (SIOCINQ), then
 *           sends exactly one RESYNC, last, once it reads (resync) or drops
 *           it (drop, NETCA_EVENT_OVERFLOW)
 *
 * After each, a module client opens and closes a session.
 *
 * Environment (from meson): NETCA_NETCAD, NETCA_PKCS11_MODULE. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "common/wire-client.h"
#include "common/wire.h"
#include "stress-util.h"
#include "testutil.h"

#define LABEL "hostile"

static const char *netcad_path, *so_path;
static char *dir, *data_dir, *sock;
static pid_t daemon_pid = -1;

/* Sets a numeric environment variable (a limit of the daemon). */
static void setenv_num(const char *name, long v) {
        char b[24];
        snprintf(b, sizeof b, "%ld", v);
        setenv(name, b, 1);
}

/* A fresh token and a netcad for it, with the environment set so far. */
static bool start_daemon(void) {
        dir = tu_mkdtemp("hostile");
        if (asprintf(&data_dir, "%s/data", dir) < 0 || asprintf(&sock, "%s/netcad.sock", dir) < 0)
                return false;
        if (tu_create_token(data_dir, LABEL) < 0) {
                tu_failures++;
                return false;
        }
        setenv("NETCA_SOCKET", sock, 1);
        setenv("NETCA_AUTOSTART", "0", 1);
        daemon_pid = tu_start_daemon(netcad_path, sock, data_dir);
        return daemon_pid > 0;
}

/* A connection that has said HELLO, or -1 (a failure counted). */
static int hello_conn(void) {
        int fd = raw_connect(sock);
        if (fd >= 0 && raw_hello(fd) == 0)
                return fd;
        fprintf(stderr, "FAIL: cannot connect and say HELLO\n");
        tu_failures++;
        if (fd >= 0)
                close(fd);
        return -1;
}

/* Has the daemon closed fd?  Reads nothing that is not there. */
static bool closed_by_daemon(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) <= 0)
                return false;
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

/* Syncs with the daemon's event loop: PING round trips on sync_fd.  By the
 * time they are answered, the loop has handled what it had read before. */
static bool loop_sync(int sync_fd) {
        for (uint32_t i = 0; i < 3; i++)
                if (raw_ping(sync_fd, 900 + i) != 0) {
                        fprintf(stderr, "FAIL: a PING on another connection got no answer\n");
                        tu_failures++;
                        return false;
                }
        return true;
}

/* A module client is served after the abuse: a session opened and closed
 * on the token. */
static void module_client_ok(void) {
        void *handle = NULL;
        CK_FUNCTION_LIST_PTR f = tu_load_module(so_path, &handle);
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE h;
        if (!f)
                return;
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        if (tu_find_slot(f, LABEL, &slot)) {
                CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
                CHECK_RV(f->C_CloseSession(h), CKR_OK);
        } else {
                fprintf(stderr, "FAIL: a module client does not see the token\n");
                tu_failures++;
        }
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* ---------------------------------------------------------------- frames */

#define FRAME_TIMEOUT_MS 1000
#define TRICKLE_MS 100
#define TRICKLE_BYTES 100  /* 10 s: ten deadlines */
#define INCOMPLETE_KB 2048
#define HALF_KB 600

/* A frame's bytes trickling in, one per TRICKLE_MS: the daemon must drop
 * the connection before the trickle has lasted ten frame deadlines. */
static void frames_trickle(void) {
        struct wire_msg m;
        int fd = hello_conn();
        if (fd < 0 || raw_big_frame(4096, &m) < 0) {
                tu_failures++;
                return;
        }
        unsigned sent = 0;
        bool dropped = false;
        if (raw_send_all(fd, m.buf.data, 64) < 0)
                dropped = true;
        while (!dropped && sent < TRICKLE_BYTES) {
                stress_sleep_ms(TRICKLE_MS);
                dropped = closed_by_daemon(fd) || raw_send_all(fd, m.buf.data + 64 + sent, 1) < 0;
                sent++;
        }
        fprintf(stderr, "trickle: 1 byte per %d ms, %u bytes after the first 64: %s\n", TRICKLE_MS, sent,
                dropped ? "dropped" : "still open");
        if (!dropped) {
                fprintf(stderr, "FAIL: a frame trickling in for %d ms was not dropped (frame timeout %d ms)\n",
                        TRICKLE_MS * TRICKLE_BYTES, FRAME_TIMEOUT_MS);
                tu_failures++;
        }
        wire_msg_done(&m);
        close(fd);
}

/* Sends HALF_KB of a 1 MiB frame on fd; returns once the daemon has read
 * it all or closed fd.  Returns whether fd is still open. */
static bool frames_half(int fd, int sync_fd, const struct wire_msg *m) {
        if (raw_send_all(fd, m->buf.data, HALF_KB * 1024) < 0)
                return false;
        uint64_t guard = stress_now_ms() + 30000;
        for (;;) {
                if (!loop_sync(sync_fd))
                        return false;
                if (closed_by_daemon(fd))
                        return false;
                int q = 0;
                if (raw_unread(fd, &q) < 0 || q == 0)
                        return true;
                if (stress_now_ms() > guard) {
                        fprintf(stderr, "FAIL: the daemon neither read a half frame nor dropped it\n");
                        tu_failures++;
                        return false;
                }
        }
}

/* Half frames on 8 connections against a 2 MiB cap for all clients: the
 * first 3 (1,800 KiB) stay, each later one is dropped. */
static void frames_budget(void) {
        enum { N = 8 };
        int fds[N], sync_fd = hello_conn();
        struct wire_msg m;
        if (sync_fd < 0 || raw_big_frame(WIRE_FRAME_MAX - 256, &m) < 0) {
                tu_failures++;
                return;
        }
        long rss0 = proc_rss_kb(daemon_pid);
        unsigned open_n = 0;
        for (unsigned i = 0; i < N; i++) {
                fds[i] = hello_conn();
                if (fds[i] >= 0 && frames_half(fds[i], sync_fd, &m))
                        open_n++;
        }
        /* Those dropped early may only now be seen closed. */
        loop_sync(sync_fd);
        unsigned still = 0;
        for (unsigned i = 0; i < N; i++)
                if (fds[i] >= 0 && !closed_by_daemon(fds[i]))
                        still++;
        unsigned want = INCOMPLETE_KB / HALF_KB;
        fprintf(stderr, "budget: %u connections with %d KiB of an incomplete frame each, cap %d KiB in all: "
                        "%u kept (%u at the end), RSS %ld -> %ld kB\n",
                N, HALF_KB, INCOMPLETE_KB, open_n, still, rss0, proc_rss_kb(daemon_pid));
        if (still != want) {
                fprintf(stderr, "FAIL: %u connections hold incomplete frames, want %u\n", still, want);
                tu_failures++;
        }
        CHECK(raw_ping(sync_fd, 1) == 0);
        for (unsigned i = 0; i < N; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        close(sync_fd);
        wire_msg_done(&m);
}

/* ---------------------------------------------------------------- output */

#define OUTPUT_KB 1024
#define OUTPUT_REQUESTS 400

/* The token's slot, found through the module (which is finalized again). */
static bool find_slot(CK_SLOT_ID *ret) {
        void *handle = NULL;
        CK_FUNCTION_LIST_PTR f = tu_load_module(so_path, &handle);
        if (!f || f->C_Initialize(NULL) != CKR_OK) {
                tu_failures++;
                return false;
        }
        bool ok = tu_find_slot(f, LABEL, ret);
        if (!ok)
                tu_failures++;
        f->C_Finalize(NULL);
        return ok;
}

/* Sends one request (op, two numbers) on fd and reads its reply's CK_RV
 * and first number, or returns -errno. */
static int call_uu(int fd, uint16_t op, uint64_t a, uint64_t b, uint64_t *ret_rv, uint64_t *ret_u) {
        struct wire_msg m;
        wire_msg_init_write(&m, op, 5, 0);
        wire_put_u64(&m, a);
        wire_put_u64(&m, b);
        uint8_t *frame = NULL;
        size_t len;
        int r = raw_call(fd, &m, &frame, &len);
        if (r < 0)
                return r;
        *ret_u = 0;
        if (wire_msg_init_read(&m, frame, len) < 0 || !wire_get_u64(&m, ret_rv))
                r = -EPROTO;
        else if (op == WIRE_OP_OPEN_SESSION && !wire_get_u64(&m, ret_u))
                r = -EPROTO;
        wire_msg_done(&m);
        free(frame);
        return r;
}

/* The kernel's default send buffer of a socket (the daemon's), in bytes. */
static long wmem_default(void) {
        FILE *fp = fopen("/proc/sys/net/core/wmem_default", "re");
        long v = 0;
        if (!fp || fscanf(fp, "%ld", &v) != 1 || v <= 0)
                v = 212992;
        if (fp)
                fclose(fp);
        return v;
}

/* PKCS#11 requests the daemon has run, once the count stands still across
 * syncs with its loop (a hang guard only: the bound checked holds at any
 * moment with the fix). */
static double requests_settled(int sync_fd) {
        double prev = -1, now = raw_status_number(sock, "p11_requests");
        uint64_t guard = stress_now_ms() + 30000;
        unsigned still = 0;
        while (still < 5 && stress_now_ms() < guard && loop_sync(sync_fd)) {
                stress_sleep_ms(20);
                prev = now;
                now = raw_status_number(sock, "p11_requests");
                still = now == prev ? still + 1 : 0;
        }
        return now;
}

/* One request may not ask for more than WIRE_RANDOM_MAX random bytes. */
static void output_request_cap(int fd, uint64_t session) {
        uint64_t rv = 0, u;
        CHECK(call_uu(fd, WIRE_OP_GENERATE_RANDOM, session, WIRE_RANDOM_MAX, &rv, &u) == 0 && rv == CKR_OK);
        for (unsigned i = 0; i < 2; i++) {
                uint64_t n = i == 0 ? WIRE_RANDOM_MAX + 1 : WIRE_FRAME_MAX - 1024;
                if (call_uu(fd, WIRE_OP_GENERATE_RANDOM, session, n, &rv, &u) < 0 || rv != CKR_ARGUMENTS_BAD) {
                        fprintf(stderr, "FAIL: C_GenerateRandom of %llu bytes: %s, want CKR_ARGUMENTS_BAD\n",
                                (unsigned long long)n, tu_rv_name(rv));
                        tu_failures++;
                }
        }
}

/* OUTPUT_REQUESTS pipelined C_GenerateRandom of WIRE_RANDOM_MAX bytes,
 * replies not read: the daemon may run only as many as its output limit
 * (and the socket's buffer) holds, then none until the client reads; once
 * it does, every one is answered. */
static void output_pipelined(int fd, int sync_fd, uint64_t session) {
        static uint8_t reqs[OUTPUT_REQUESTS * 28];
        size_t len = 0;
        for (uint32_t i = 0; i < OUTPUT_REQUESTS; i++) {
                struct wire_msg m;
                wire_msg_init_write(&m, WIRE_OP_GENERATE_RANDOM, 1000 + i, 0);
                wire_put_u64(&m, session);
                wire_put_u64(&m, WIRE_RANDOM_MAX);
                if (wire_msg_finish(&m) == 0 && len + m.buf.len <= sizeof reqs) {
                        memcpy(reqs + len, m.buf.data, m.buf.len);
                        len += m.buf.len;
                }
                wire_msg_done(&m);
        }
        double before = raw_status_number(sock, "p11_requests");
        if (raw_send_all(fd, reqs, len) < 0) {
                fprintf(stderr, "FAIL: the pipelined requests could not be sent\n");
                tu_failures++;
                return;
        }
        double ran = requests_settled(sync_fd) - before;
        long bound = (OUTPUT_KB * 1024L + 2 * wmem_default()) / WIRE_RANDOM_MAX + 2;
        fprintf(stderr, "output: %d requests for %d KiB each, unread: %.0f run (%.0f KiB of replies), at most %ld "
                        "allowed with a %d KiB output limit\n",
                OUTPUT_REQUESTS, WIRE_RANDOM_MAX / 1024, ran, ran * WIRE_RANDOM_MAX / 1024, bound, OUTPUT_KB);
        if (ran > bound || ran < 1) {
                fprintf(stderr, "FAIL: the daemon ran %.0f requests of a client that reads no reply\n", ran);
                tu_failures++;
        }
        unsigned ok = 0;
        for (unsigned i = 0; i < OUTPUT_REQUESTS; i++) {
                uint8_t *frame;
                size_t n;
                if (raw_read_frame(fd, 20000, &frame, &n) < 0)
                        break;
                struct wire_hdr h;
                if (wire_hdr_parse(frame, &h) == 0 && !(h.flags & WIRE_F_ERROR) && n > WIRE_RANDOM_MAX)
                        ok++;
                free(frame);
        }
        fprintf(stderr, "output: %u of %d replies read afterwards\n", ok, OUTPUT_REQUESTS);
        CHECK(ok == OUTPUT_REQUESTS);
}

static void scenario_output(void) {
        setenv_num("NETCA_MAX_OUTPUT_KB", OUTPUT_KB);
        CK_SLOT_ID slot;
        if (!start_daemon() || !find_slot(&slot))
                return;
        int fd = hello_conn(), sync_fd = hello_conn();
        uint64_t rv = 0, session = 0;
        if (fd >= 0 && sync_fd >= 0 && call_uu(fd, WIRE_OP_OPEN_SESSION, slot, CKF_SERIAL_SESSION, &rv, &session) == 0 &&
            rv == CKR_OK) {
                output_request_cap(fd, session);
                output_pipelined(fd, sync_fd, session);
        } else {
                fprintf(stderr, "FAIL: no session (%s)\n", tu_rv_name(rv));
                tu_failures++;
        }
        if (fd >= 0)
                close(fd);
        if (sync_fd >= 0)
                close(sync_fd);
}

/* ---------------------------------------------------------------- events */

#define EVENT_KB 4
#define EVENT_OPS 1500      /* create or destroy: an event each */

/* EVENT_OPS token-object changes through the module, each pushing an
 * OBJECTS_CHANGED event to every subscriber; the last state has one more
 * object than the first.  Returns whether all went well. */
static bool make_events(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot) {
        CK_SESSION_HANDLE h;
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL tru = CK_TRUE, fal = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls },
                             { CKA_TOKEN, &tru, sizeof tru },
                             { CKA_PRIVATE, &fal, sizeof fal },
                             { CKA_LABEL, "ev", 2 } };
        CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
        for (unsigned i = 0; rv == CKR_OK && i < EVENT_OPS / 2; i++) {
                CK_OBJECT_HANDLE o;
                rv = f->C_CreateObject(h, t, ELEMENTSOF(t), &o);
                if (rv == CKR_OK && i + 1 < EVENT_OPS / 2)
                        rv = f->C_DestroyObject(h, o);
        }
        if (rv == CKR_OK)
                rv = f->C_CloseSession(h);
        if (rv != CKR_OK) {
                fprintf(stderr, "FAIL: making events: %s\n", tu_rv_name(rv));
                tu_failures++;
        }
        return rv == CKR_OK;
}

/* Bytes waiting to be read on fd (SIOCINQ), or -1. */
static long queued_to_read(int fd) {
        int n = 0;
        return ioctl(fd, SIOCINQ, &n) == 0 ? n : -1;
}

/* Reads fd to the end of what comes: until EOF (drop) or a RESYNC event
 * (resync), or a hang guard.  Counts the bytes and RESYNCs; returns whether
 * the end wanted was seen. */
static bool read_events(int fd, bool drop, size_t *ret_bytes, unsigned *ret_resyncs) {
        *ret_bytes = 0;
        *ret_resyncs = 0;
        for (;;) {
                uint8_t *frame;
                size_t len;
                int r = raw_read_frame(fd, 5000, &frame, &len);
                if (r < 0)
                        return drop && r == -ECONNRESET;
                struct wire_msg m;
                uint64_t kind = 0;
                bool resync = wire_msg_init_read(&m, frame, len) == 0 && m.opnum == WIRE_OP_EVENT &&
                              wire_get_u64(&m, &kind) && kind == WIRE_EV_RESYNC;
                wire_msg_done(&m);
                free(frame);
                if (resync)
                        ++*ret_resyncs;
                else
                        *ret_bytes += len;
                if (resync && !drop)
                        return true;
        }
}

/* A subscriber that reads no events while EVENT_OPS are pushed: the daemon
 * holds at most NETCA_MAX_EVENT_OUTPUT_KB (and one event) of them for it
 * beyond what the kernel's socket buffer took, then sends one RESYNC once
 * it reads (resync), or drops it (drop). */
static void scenario_events(bool drop) {
        setenv_num("NETCA_MAX_EVENT_OUTPUT_KB", EVENT_KB);
        setenv("NETCA_EVENT_OVERFLOW", drop ? "drop" : "resync", 1);
        CK_SLOT_ID slot;
        void *handle = NULL;
        CK_FUNCTION_LIST_PTR f;
        if (!start_daemon() || !(f = tu_load_module(so_path, &handle)))
                return;
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        int fd = raw_connect(sock);
        if (fd < 0 || wire_hello(fd, WIRE_CAP_EVENTS, "hostile", 20000, NULL) < 0 || !tu_find_slot(f, LABEL, &slot)) {
                fprintf(stderr, "FAIL: no subscriber or no slot\n");
                tu_failures++;
        } else if (make_events(f, slot)) {
                long inq = queued_to_read(fd);
                size_t bytes;
                unsigned resyncs;
                bool end = read_events(fd, drop, &bytes, &resyncs);
                long held = (long)bytes - inq;
                fprintf(stderr, "events (%s): %d pushed, %zu bytes of them read (%ld in the socket), so %ld held "
                                "by the daemon (cap %d KiB); %u RESYNC; %s\n",
                        drop ? "drop" : "resync", EVENT_OPS, bytes, inq, held, EVENT_KB, resyncs,
                        end ? (drop ? "dropped" : "RESYNC last") : "no end seen");
                CHECK(end);
                CHECK(held <= EVENT_KB * 1024 + 64);
                CHECK(resyncs == (drop ? 0u : 1u));
        }
        if (fd >= 0)
                close(fd);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

static void scenario_events_resync(void) {
        scenario_events(false);
}

static void scenario_events_drop(void) {
        scenario_events(true);
}

/* ----------------------------------------------------------- connections */

#define CAP_ALL 24
#define CAP_PROCESS 16

/* HELLO on a new connection, with a short hang guard: 0 accepted,
 * -ECONNREFUSED closed at once (a refusal), -ETIMEDOUT no answer. */
static int try_conn(int *ret_fd) {
        int fd = raw_connect(sock);
        if (fd < 0)
                return fd;
        int r = wire_hello(fd, 0, "hostile", 5000, NULL);
        if (r == 0)
                *ret_fd = fd;
        else
                close(fd);
        return r;
}

/* Opens connections until one is refused (at most max + 1): how many were
 * accepted, or -1 when a client got no answer (a hang). */
static int open_until_refused(int *fds, unsigned max) {
        for (unsigned i = 0; i <= max; i++) {
                int r = try_conn(&fds[i]);
                if (r == -ECONNREFUSED || r == -ECONNRESET || r == -EPIPE)
                        return (int)i;
                if (r < 0) {
                        fprintf(stderr, "connection %u: %s\n", i, strerror(-r));
                        return -1;
                }
        }
        return (int)max + 1;
}

static void close_all(int *fds, int n) {
        for (int i = 0; i < n; i++)
                close(fds[i]);
}

/* This process opens connections until refused (CAP_PROCESS), then another
 * process (CAP_ALL - CAP_PROCESS, the cap in all). */
static void scenario_caps(void) {
        setenv_num("NETCA_MAX_CONNECTIONS", CAP_ALL);
        setenv_num("NETCA_MAX_CONNECTIONS_PER_PROCESS", CAP_PROCESS);
        if (!start_daemon())
                return;
        /* The daemon counts a connection until it has seen it close: the
         * syncs on this one (counted too) let it see tu_start_daemon's
         * probe go. */
        int sync_fd = hello_conn();
        if (sync_fd < 0 || !loop_sync(sync_fd))
                return;
        int fds[CAP_ALL + 2];
        int mine = open_until_refused(fds, CAP_ALL) + 1;
        fprintf(stderr, "caps: this process got %d connections (cap per process %d)\n", mine, CAP_PROCESS);
        CHECK(mine == CAP_PROCESS);
        pid_t pid = fork();
        if (pid == 0) {
                int cfds[CAP_ALL + 2];
                int n = open_until_refused(cfds, CAP_ALL);
                _exit(n < 0 ? 255 : n);
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st));
        int other = WEXITSTATUS(st) == 255 ? -1 : WEXITSTATUS(st);
        fprintf(stderr, "caps: another process got %d more (cap in all %d)\n", other, CAP_ALL);
        CHECK(other == CAP_ALL - CAP_PROCESS);
        if (mine > 1)
                close_all(fds, mine - 1);
        /* Seen closed, for the module client that comes next. */
        loop_sync(sync_fd);
        close(sync_fd);
}

/* How many lines of the file hold needle. */
static unsigned count_lines(const char *path, const char *needle) {
        FILE *fp = fopen(path, "re");
        char line[1024];
        unsigned n = 0;
        while (fp && fgets(line, sizeof line, fp))
                n += strstr(line, needle) != NULL;
        if (fp)
                fclose(fp);
        return n;
}

#define EMFILE_ROOM 12
#define EMFILE_TRIES 10

/* The daemon's fd limit lowered to what it has open plus EMFILE_ROOM, the
 * connection caps far above it: once its fds are gone, every further
 * client is answered at once (closed) rather than left hanging, the log
 * says so once rather than at each failed accept(), and after the clients
 * have gone it accepts again. */
static void emfile_run(const char *logf) {
        long nfd = proc_fd_count(daemon_pid);
        struct rlimit rl = { .rlim_cur = (rlim_t)nfd + EMFILE_ROOM, .rlim_max = (rlim_t)nfd + EMFILE_ROOM };
        if (nfd < 0 || prlimit(daemon_pid, RLIMIT_NOFILE, &rl, NULL) < 0) {
                fprintf(stderr, "FAIL: cannot lower the daemon's fd limit: %s\n", strerror(errno));
                tu_failures++;
                return;
        }
        int fds[3 * EMFILE_ROOM + 2];
        uint64_t t0 = stress_now_ms();
        int got = open_until_refused(fds, 3 * EMFILE_ROOM);
        unsigned answered = 0;
        for (unsigned i = 0; got >= 0 && i < EMFILE_TRIES; i++) {
                int fd, r = try_conn(&fd);
                if (r == 0)
                        close(fd);
                else if (r != -ETIMEDOUT)
                        answered++;
        }
        /* A sync with the loop: whatever it logged is written. */
        if (got > 0)
                CHECK(raw_ping(fds[0], 1) == 0);
        unsigned lines = count_lines(logf, "accept"), most = 2 + (unsigned)((stress_now_ms() - t0) / 10000);
        fprintf(stderr, "emfile: %d connections with %d fds to spare, then %u of %d clients answered (not left hanging); "
                        "%u log lines about accept() (at most %u allowed: one per 10 s)\n",
                got, EMFILE_ROOM, answered, EMFILE_TRIES, lines, most);
        CHECK(got >= 1 && got <= 3 * EMFILE_ROOM);
        CHECK(answered == EMFILE_TRIES);
        CHECK(lines >= 1 && lines <= most);
        if (got > 0)
                close_all(fds, got);
        /* The clients gone, it accepts again (their fds are freed as the
         * loop sees them close: a few tries, each answered). */
        bool served = false;
        for (unsigned i = 0; !served && i < 50; i++) {
                int fd;
                served = try_conn(&fd) == 0;
                if (served)
                        close(fd);
                else
                        stress_sleep_ms(100);
        }
        CHECK(served);
}

/* emfile_run, with the daemon's log in a file of its own (kept with
 * NETCA_HOSTILE_KEEP_LOG). */
static void scenario_emfile(void) {
        char *logdir = tu_mkdtemp("hostile-log"), *logf = NULL;
        if (!logdir || asprintf(&logf, "%s/netcad.log", logdir) < 0) {
                tu_failures++;
                free(logdir);
                return;
        }
        setenv("NETCA_LOG_FILE", logf, 1);
        setenv("NETCA_MAX_CONNECTIONS", "100000", 1);
        setenv("NETCA_MAX_CONNECTIONS_PER_PROCESS", "100000", 1);
        if (start_daemon())
                emfile_run(logf);
        if (getenv("NETCA_HOSTILE_KEEP_LOG"))
                fprintf(stderr, "log kept: %s\n", logf);
        else
                tu_rmrf(logdir);
        free(logf);
        free(logdir);
}

static void scenario_frames(void) {
        setenv_num("NETCA_FRAME_TIMEOUT_MS", FRAME_TIMEOUT_MS);
        setenv_num("NETCA_MAX_INCOMPLETE_KB", INCOMPLETE_KB);
        if (!start_daemon())
                return;
        frames_trickle();
        frames_budget();
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                void (*fn)(void);
        } scenarios[] = {
                { "frames", scenario_frames },
                { "output", scenario_output },
                { "caps", scenario_caps },
                { "emfile", scenario_emfile },
                { "events-resync", scenario_events_resync },
                { "events-drop", scenario_events_drop },
        };
        signal(SIGPIPE, SIG_IGN);
        netcad_path = tu_env_path("NETCA_NETCAD");
        so_path = tu_env_path("NETCA_PKCS11_MODULE");
        for (size_t i = 0; argc == 2 && i < ELEMENTSOF(scenarios); i++) {
                if (strcmp(argv[1], scenarios[i].name) != 0)
                        continue;
                scenarios[i].fn();
                if (daemon_pid > 0)
                        module_client_ok();
                tu_stop_daemon(daemon_pid);
                if (dir)
                        tu_rmrf(dir);
                if (tu_failures) {
                        fprintf(stderr, "hostile %s: %u check(s) failed\n", argv[1], tu_failures);
                        return 1;
                }
                fprintf(stderr, "hostile %s: passed\n", argv[1]);
                return 0;
        }
        fprintf(stderr, "usage: %s frames|output|caps|emfile|events-resync|events-drop\n", argv[0]);
        return 2;
}
