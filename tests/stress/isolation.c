/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Isolation (issue 3): a slow token never delays another token, info calls,
 * or a blocked C_WaitForSlotEvent, through the real stack (netca-pkcs11.so
 * -> netcad -> soft tokens).
 *
 * Two soft tokens, "fast" and "slow".  netcad runs with
 * NETCA_SOFT_DELAY="slow=200:GATE" (netcad-test, tests/drivers/delay/delay.c): every signature on
 * "slow" takes 200 ms and then waits for as long as the file GATE exists.
 * With the gate closed, SLOW_PARENT threads here and SLOW_CHILD threads in a
 * second process each start one C_Sign on "slow": more concurrent slow
 * operations than netcad's 8 workers, none of which can finish.  Once they
 * are all in C_Sign and netcad has slow signatures in progress (it counts
 * them in GATE.entered), and while a thread here is blocked in
 * C_WaitForSlotEvent, the probe runs: C_SignInit + C_Sign (+ C_Verify) on
 * "fast", C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo and C_GetSessionInfo
 * on both tokens, a find and an attribute read on "slow", C_OpenSession on
 * both.  The probe must complete, every call CKR_OK, while no slow signature
 * has completed (counters; the gate makes that exact, not a matter of
 * timing), and the C_WaitForSlotEvent thread must still be waiting.  Then
 * the gate opens: every slow signature completes with CKR_OK, and
 * C_Finalize releases the waiting thread.
 *
 * Then, with the gate still closed, a third token, "cold", whose objects
 * netcad has not read yet and whose reading waits at a gate of its own
 * (NETCA_SOFT_DELAY "cold=0:COLDGATE"): a thread starts C_FindObjectsInit on it,
 * which needs the objects read first, and once that reading has entered the
 * gate the probe runs again and must complete, while the find still waits.
 * netcad's event loop runs small requests that need no device itself
 * (daemon/server.c); a find on a token whose objects are not cached is not
 * one of them, and one run on the loop would hold every client.
 *
 * A daemon that lets a busy token take every worker fails the probe: it
 * never completes while the gate is closed.  That is detected with a
 * generous deadline (PROBE_DEADLINE_MS, only so that the test ends; nothing
 * here measures speed), after which the gate is opened to let everything
 * unwind.
 *
 * Environment (from meson): NETCA_PKCS11_MODULE, NETCA_NETCAD. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stress-util.h"
#include "testutil.h"

#define SLOW_PARENT 6
#define SLOW_CHILD 6
#define SLOW_TOTAL (SLOW_PARENT + SLOW_CHILD)
#define PROBE_DEADLINE_MS 30000
#define WAIT_MS 60000
#define PIN(s) (CK_UTF8CHAR_PTR)(s), (CK_ULONG)strlen(s)

static const char *so_path, *netcad_path;
static char *dir, *data_dir, *sock, *gate, *gate_entered, *cold_gate, *cold_gate_entered, *doomed_gate,
        *doomed_gate_entered;
static pid_t daemon_pid = -1;
static void *module;
static CK_FUNCTION_LIST_PTR f;

static atomic_uint slow_started, slow_done, slow_bad;
static long gate_base; /* GATE.entered before the gate closed (the slow token's object reading) */

static const CK_BYTE hash32[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static void file_make(const char *path) {
        FILE *g = fopen(path, "we");
        if (!g) {
                perror("isolation: gate");
                exit(1);
        }
        fclose(g);
}

static long file_size(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static void gate_close(void) {
        file_make(gate);
}

static void gate_open(void) {
        (void)unlink(gate);
        (void)unlink(cold_gate);
}

/* Slow signatures netcad has in progress or has had (bytes in GATE.entered). */
static long gate_count(void) {
        return file_size(gate_entered);
}

/* ---------------------------------------------------------- slow signers */

struct slow {
        pthread_t thread;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE key;
        int report_fd; /* child: progress lines to the parent; -1 here */
        CK_RV rv;
};

static void *slow_run(void *arg) {
        struct slow *s = arg;
        CK_BYTE sig[132];
        CK_ULONG len = sizeof sig;
        /* C_SignInit was done in slow_setup(), before the gate closed: the
         * signers are all sure to get their C_Sign to netcad. */
        if (s->report_fd >= 0)
                pipe_write_line(s->report_fd, "S");
        else
                atomic_fetch_add(&slow_started, 1);
        s->rv = f->C_Sign(s->session, (CK_BYTE_PTR)hash32, sizeof hash32, sig, &len);
        if (s->report_fd >= 0)
                pipe_write_line(s->report_fd, "D %lu", (unsigned long)s->rv);
        else {
                if (s->rv != CKR_OK)
                        atomic_fetch_add(&slow_bad, 1);
                atomic_fetch_add(&slow_done, 1);
        }
        return NULL;
}

/* Opens n sessions on slot, finds the private key labelled "slow-key" and
 * starts a signature (C_SignInit) on each session. */
static bool slow_setup(CK_SLOT_ID slot, struct slow *v, unsigned n, int report_fd) {
        for (unsigned i = 0; i < n; i++) {
                v[i].report_fd = report_fd;
                CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &v[i].session);
                if (rv != CKR_OK) {
                        fprintf(stderr, "FAIL: C_OpenSession(slow) = %s\n", tu_rv_name(rv));
                        return false;
                }
        }
        CK_RV rv = f->C_Login(v[0].session, CKU_USER, PIN(TU_USER_PIN));
        if (rv == CKR_USER_ALREADY_LOGGED_IN) /* the parent, from its setup session */
                rv = CKR_OK;
        if (rv == CKR_OK)
                rv = stress_find_one(f, v[0].session, CKO_PRIVATE_KEY, "slow-key", &v[0].key);
        if (rv != CKR_OK) {
                fprintf(stderr, "FAIL: login/find on slow = %s\n", tu_rv_name(rv));
                return false;
        }
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        for (unsigned i = 0; i < n; i++) {
                v[i].key = v[0].key;
                if ((rv = f->C_SignInit(v[i].session, &mech, v[i].key)) != CKR_OK) {
                        fprintf(stderr, "FAIL: C_SignInit on slow = %s\n", tu_rv_name(rv));
                        return false;
                }
        }
        return true;
}

static bool slow_start(struct slow *v, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (pthread_create(&v[i].thread, NULL, slow_run, &v[i]) != 0)
                        return false;
        return true;
}

/* The second process: "go" on cmd_fd starts its signers; it reports "ready",
 * then "S" as each enters C_Sign and "D <rv>" as each returns. */
static int child_main(int cmd_fd, int report_fd) {
        char line[64];
        struct slow v[SLOW_CHILD];
        CK_SLOT_ID slot;
        memset(v, 0, sizeof v);
        if (pipe_read_line(cmd_fd, WAIT_MS, line, sizeof line) < 0 || strcmp(line, "setup") != 0)
                return 2;
        f = tu_load_module(so_path, &module);
        if (!f || f->C_Initialize(NULL) != CKR_OK || !tu_find_slot(f, "slow", &slot) ||
            !slow_setup(slot, v, SLOW_CHILD, report_fd))
                return 3;
        pipe_write_line(report_fd, "ready");
        if (pipe_read_line(cmd_fd, WAIT_MS, line, sizeof line) < 0 || strcmp(line, "go") != 0)
                return 4;
        if (!slow_start(v, SLOW_CHILD))
                return 5;
        int bad = 0;
        for (unsigned i = 0; i < SLOW_CHILD; i++) {
                pthread_join(v[i].thread, NULL);
                bad += v[i].rv != CKR_OK;
        }
        for (unsigned i = 0; i < SLOW_CHILD; i++)
                (void)f->C_CloseSession(v[i].session);
        (void)f->C_Finalize(NULL);
        return bad ? 6 : 0;
}

/* Parent side: reads the child's progress lines into the counters. */
static atomic_uint child_ready;

static void *child_reader(void *arg) {
        int fd = *(int *)arg;
        char line[64];
        for (;;) {
                int r = pipe_read_line(fd, WAIT_MS * 3, line, sizeof line);
                if (r < 0)
                        return NULL;
                if (strcmp(line, "ready") == 0)
                        atomic_store(&child_ready, 1);
                else if (strcmp(line, "S") == 0)
                        atomic_fetch_add(&slow_started, 1);
                else if (line[0] == 'D') {
                        if (strtoul(line + 2, NULL, 10) != CKR_OK)
                                atomic_fetch_add(&slow_bad, 1);
                        atomic_fetch_add(&slow_done, 1);
                }
        }
}

/* ------------------------------------------------------------ the probe */

struct probe {
        CK_SLOT_ID fast_slot, slow_slot;
        CK_SESSION_HANDLE fast_s, slow_idle_s;
        CK_OBJECT_HANDLE fast_key, fast_pub;
        unsigned done_at_end;   /* slow signatures completed when the probe ended */
        atomic_bool finished;
        unsigned failures;
};

#define PCHECK(p, expr)                                                                               \
        do {                                                                                          \
                CK_RV rv_ = (expr);                                                                   \
                if (rv_ != CKR_OK) {                                                                  \
                        (p)->failures++;                                                              \
                        fprintf(stderr, "FAIL: probe: %s = %s\n", #expr, tu_rv_name(rv_));            \
                }                                                                                     \
        } while (0)

static void *probe_run(void *arg) {
        struct probe *p = arg;
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE sig[132];
        CK_ULONG len = sizeof sig;
        CK_SLOT_ID slots[16];
        CK_ULONG n = 16;
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        CK_SESSION_INFO ses;
        CK_SESSION_HANDLE h1 = 0, h2 = 0;
        CK_OBJECT_HANDLE found[8];
        CK_ULONG nfound = 0;
        CK_OBJECT_CLASS cls = 0;
        CK_ATTRIBUTE a = { CKA_CLASS, &cls, sizeof cls };

        /* Signing on the other token. */
        PCHECK(p, f->C_SignInit(p->fast_s, &mech, p->fast_key));
        PCHECK(p, f->C_Sign(p->fast_s, (CK_BYTE_PTR)hash32, sizeof hash32, sig, &len));
        PCHECK(p, f->C_VerifyInit(p->fast_s, &mech, p->fast_pub));
        PCHECK(p, f->C_Verify(p->fast_s, (CK_BYTE_PTR)hash32, sizeof hash32, sig, len));
        /* Info calls, on both tokens. */
        PCHECK(p, f->C_GetSlotList(CK_TRUE, slots, &n));
        PCHECK(p, f->C_GetSlotInfo(p->slow_slot, &si));
        PCHECK(p, f->C_GetTokenInfo(p->slow_slot, &ti));
        PCHECK(p, f->C_GetTokenInfo(p->fast_slot, &ti));
        PCHECK(p, f->C_GetSessionInfo(p->slow_idle_s, &ses));
        PCHECK(p, f->C_GetSessionInfo(p->fast_s, &ses));
        /* Objects of the busy token, from the daemon's cache. */
        PCHECK(p, f->C_FindObjectsInit(p->slow_idle_s, NULL, 0));
        PCHECK(p, f->C_FindObjects(p->slow_idle_s, found, 8, &nfound));
        PCHECK(p, f->C_FindObjectsFinal(p->slow_idle_s));
        if (nfound < 1) {
                p->failures++;
                fprintf(stderr, "FAIL: probe: no object found on the slow token\n");
        } else
                PCHECK(p, f->C_GetAttributeValue(p->slow_idle_s, found[0], &a, 1));
        /* New sessions, on both. */
        PCHECK(p, f->C_OpenSession(p->slow_slot, CKF_SERIAL_SESSION, NULL, NULL, &h1));
        PCHECK(p, f->C_OpenSession(p->fast_slot, CKF_SERIAL_SESSION, NULL, NULL, &h2));
        PCHECK(p, f->C_GetSessionInfo(h1, &ses));
        /* And one more signature on the fast token after all that. */
        len = sizeof sig;
        PCHECK(p, f->C_SignInit(p->fast_s, &mech, p->fast_key));
        PCHECK(p, f->C_Sign(p->fast_s, (CK_BYTE_PTR)hash32, sizeof hash32, sig, &len));
        p->done_at_end = atomic_load(&slow_done);
        atomic_store(&p->finished, true);
        return NULL;
}

/* -------------------------------------------------------------- waiter */

struct waiter {
        pthread_t thread;
        atomic_bool returned;
        CK_RV rv;
};

static void *waiter_run(void *arg) {
        struct waiter *w = arg;
        CK_SLOT_ID slot;
        w->rv = f->C_WaitForSlotEvent(0, &slot, NULL);
        atomic_store(&w->returned, true);
        return NULL;
}

/* --------------------------------------------------------------- order */

/* Per-session order across lanes: on a raw connection, requests on one
 * session sent back to back without waiting for the replies (C_SignInit runs
 * on the general lane, C_Sign on the token's) must run in the order sent:
 * every C_Sign finds its operation initialized.  ORDER_ROUNDS pairs, then a
 * find and a sign + info + close, each sent in one go. */
#define ORDER_ROUNDS 200

static bool order_send(int fd, struct wire_msg *m) {
        int r = raw_send_msg(fd, m);
        wire_msg_done(m);
        if (r < 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: order: send: %s\n", strerror(-r));
                return false;
        }
        return true;
}

/* Replies read while waiting for another one (replies may arrive in any
 * order in general; the checks below are about the order requests run). */
struct early {
        uint32_t id;
        uint64_t rv, extra;
};
static struct early early[64];
static unsigned n_early;

/* The reply to request id: its rv (~0 on failure); for OPEN_SESSION the
 * handle in *ret_extra, for FIND_OBJECTS the one object found in *ret_extra. */
static uint64_t order_reply(int fd, uint32_t id, uint64_t *ret_extra) {
        for (unsigned i = 0; i < n_early; i++)
                if (early[i].id == id) {
                        uint64_t rv = early[i].rv;
                        if (ret_extra)
                                *ret_extra = early[i].extra;
                        early[i] = early[--n_early];
                        return rv;
                }
        for (;;) {
                uint8_t *frame;
                size_t len;
                struct wire_msg m;
                int r = raw_read_frame(fd, WAIT_MS, &frame, &len);
                if (r < 0) {
                        fprintf(stderr, "FAIL: order: no reply for request %u: %s\n", id, strerror(-r));
                        return ~(uint64_t)0;
                }
                uint64_t rv = ~(uint64_t)0, extra = 0;
                bool ok = wire_msg_init_read(&m, frame, len) == 0 && !(m.flags & WIRE_F_ERROR) &&
                          wire_get_u64(&m, &rv);
                uint32_t got = m.id;
                if (ok && m.opnum == WIRE_OP_OPEN_SESSION)
                        ok = wire_get_u64(&m, &extra);
                if (ok && m.opnum == WIRE_OP_FIND_OBJECTS) {
                        CK_ULONG *v = NULL;
                        size_t n = 0;
                        ok = wire_get_u64_array(&m, &v, &n);
                        if (ok && n == 1)
                                extra = v[0];
                        free(v);
                }
                wire_msg_done(&m);
                free(frame);
                if (!ok)
                        rv = ~(uint64_t)0;
                if (got == id) {
                        if (ret_extra)
                                *ret_extra = extra;
                        return rv;
                }
                if (n_early < sizeof early / sizeof early[0])
                        early[n_early++] = (struct early){ got, rv, extra };
                else {
                        tu_failures++;
                        fprintf(stderr, "FAIL: order: too many replies out of order\n");
                }
        }
}

static void order_sign_pair(int fd, uint64_t h, CK_OBJECT_HANDLE key, uint32_t id) {
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_SIGN_INIT, id, 0);
        wire_put_u64(&m, h);
        wire_put_mechanism(&m, &mech);
        wire_put_u64(&m, key);
        if (!order_send(fd, &m))
                return;
        wire_msg_init_write(&m, WIRE_OP_SIGN, id + 1, 0);
        wire_put_u64(&m, h);
        wire_put_blob(&m, hash32, sizeof hash32);
        wire_put_outreq(&m, false, 132);
        (void)order_send(fd, &m);
}

#define ORDER_RV(expr)                                                                                \
        do {                                                                                          \
                uint64_t rv_ = (expr);                                                                \
                if (rv_ != CKR_OK) {                                                                  \
                        tu_failures++;                                                                \
                        fprintf(stderr, "FAIL: order: %s = 0x%llx\n", #expr, (unsigned long long)rv_); \
                }                                                                                     \
        } while (0)

/* On a raw connection fd: opens a session on slot, logs in and finds the
 * private key labelled label, the last three sent in one go (requests 10 to
 * 14).  false, a failure counted and reported as what's, when it cannot. */
static bool raw_session_key(int fd, CK_SLOT_ID slot, const char *label, const char *what, uint64_t *ret_h,
                            CK_OBJECT_HANDLE *ret_key) {
        struct wire_msg m;
        uint64_t h = 0;
        CK_OBJECT_HANDLE key = 0;
        wire_msg_init_write(&m, WIRE_OP_OPEN_SESSION, 10, 0);
        wire_put_u64(&m, slot);
        wire_put_u64(&m, CKF_SERIAL_SESSION);
        if (!order_send(fd, &m) || order_reply(fd, 10, &h) != CKR_OK) {
                tu_failures++;
                fprintf(stderr, "FAIL: %s: open session\n", what);
                return false;
        }
        /* Login, find (init + find + final) in one go. */
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_LABEL, (void *)label, strlen(label) },
        };
        wire_msg_init_write(&m, WIRE_OP_LOGIN, 11, 0);
        wire_put_u64(&m, h);
        wire_put_u64(&m, CKU_USER);
        wire_put_blob(&m, TU_USER_PIN, strlen(TU_USER_PIN));
        order_send(fd, &m);
        wire_msg_init_write(&m, WIRE_OP_FIND_OBJECTS_INIT, 12, 0);
        wire_put_u64(&m, h);
        wire_put_attrs(&m, t, 2);
        order_send(fd, &m);
        wire_msg_init_write(&m, WIRE_OP_FIND_OBJECTS, 13, 0);
        wire_put_u64(&m, h);
        wire_put_u64(&m, 4);
        order_send(fd, &m);
        wire_msg_init_write(&m, WIRE_OP_FIND_OBJECTS_FINAL, 14, 0);
        wire_put_u64(&m, h);
        order_send(fd, &m);
        ORDER_RV(order_reply(fd, 11, NULL));
        ORDER_RV(order_reply(fd, 12, NULL));
        ORDER_RV(order_reply(fd, 13, &key));
        ORDER_RV(order_reply(fd, 14, NULL));
        if (!key) {
                tu_failures++;
                fprintf(stderr, "FAIL: %s: key not found\n", what);
                return false;
        }
        *ret_h = h;
        *ret_key = key;
        return true;
}

static void order_check(CK_SLOT_ID slot) {
        int fd = raw_connect(sock);
        if (fd < 0 || raw_hello(fd) < 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: order: cannot connect\n");
                if (fd >= 0)
                        close(fd);
                return;
        }
        struct wire_msg m;
        uint64_t h = 0;
        CK_OBJECT_HANDLE key = 0;
        if (!raw_session_key(fd, slot, "fast-key", "order", &h, &key)) {
                close(fd);
                return;
        }
        /* Pairs, several in flight at once (replies may come in any order
         * between sessions, but this is one session). */
        unsigned bad = 0;
        for (unsigned i = 0; i < ORDER_ROUNDS; i += 4) {
                for (unsigned k = 0; k < 4; k++)
                        order_sign_pair(fd, h, key, 1000 + 2 * (i + k));
                for (unsigned k = 0; k < 4; k++) {
                        uint32_t id = 1000 + 2 * (i + k);
                        uint64_t a = order_reply(fd, id, NULL), b = order_reply(fd, id + 1, NULL);
                        if ((a != CKR_OK || b != CKR_OK) && bad++ < 5)
                                fprintf(stderr, "FAIL: order: pair %u: C_SignInit 0x%llx, C_Sign 0x%llx\n", i + k,
                                        (unsigned long long)a, (unsigned long long)b);
                }
        }
        tu_failures += bad;
        /* Sign, session info and close in one go. */
        order_sign_pair(fd, h, key, 20);
        wire_msg_init_write(&m, WIRE_OP_GET_SESSION_INFO, 22, 0);
        wire_put_u64(&m, h);
        order_send(fd, &m);
        wire_msg_init_write(&m, WIRE_OP_CLOSE_SESSION, 23, 0);
        wire_put_u64(&m, h);
        order_send(fd, &m);
        ORDER_RV(order_reply(fd, 20, NULL));
        ORDER_RV(order_reply(fd, 21, NULL));
        ORDER_RV(order_reply(fd, 22, NULL));
        ORDER_RV(order_reply(fd, 23, NULL));
        fprintf(stderr, "order: %u pipelined C_SignInit + C_Sign pairs on one session, %u out of order\n",
                ORDER_ROUNDS, bad);
        close(fd);
}

/* ------------------------------------------------------------- removal */

/* Issue 13 item 7: a request that was queued for a token when the token was
 * removed answers CKR_DEVICE_REMOVED; one sent after the removal answers
 * CKR_SESSION_HANDLE_INVALID.  On a raw connection: a C_Sign on "doomed"
 * held at its gate, a C_GetSessionInfo on the same session queued behind it
 * (a PING answered proves netcad has read it), the token deleted, the gate
 * opened. */
static void removal_check(CK_SLOT_ID slot) {
        int fd = raw_connect(sock), mfd = raw_connect(sock);
        if (fd < 0 || mfd < 0 || raw_hello(fd) < 0 || raw_hello(mfd) < 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: removal: cannot connect\n");
                goto out;
        }
        struct wire_msg m;
        uint64_t h = 0;
        CK_OBJECT_HANDLE key = 0;
        if (!raw_session_key(fd, slot, "doomed-key", "removal", &h, &key))
                goto out;

        long base = file_size(doomed_gate_entered);
        file_make(doomed_gate);
        order_sign_pair(fd, h, key, 20); /* C_SignInit 20, C_Sign 21: held at the gate */
        ORDER_RV(order_reply(fd, 20, NULL));
        uint64_t end = stress_now_ms() + WAIT_MS;
        while (file_size(doomed_gate_entered) <= base && stress_now_ms() < end)
                stress_sleep_ms(5);
        if (file_size(doomed_gate_entered) <= base) {
                tu_failures++;
                fprintf(stderr, "FAIL: removal: the signature never reached the gate\n");
                unlink(doomed_gate);
                goto out;
        }
        wire_msg_init_write(&m, WIRE_OP_GET_SESSION_INFO, 22, 0);
        wire_put_u64(&m, h);
        order_send(fd, &m);
        /* Frames are read in order: once the PING is answered, request 22
         * has been read and is queued behind the held signature. */
        if (raw_ping(fd, 23) < 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: removal: no PING reply while the signature is held\n");
                unlink(doomed_gate);
                goto out;
        }
        char json[64];
        snprintf(json, sizeof json, "{\"slot\": %lu}", (unsigned long)slot);
        wire_msg_init_write(&m, WIRE_OP_MGMT_TOKEN_DELETE, 2, 0);
        wire_put_json(&m, json);
        uint8_t *frame = NULL;
        size_t len;
        uint64_t status = 1;
        int r = raw_send_msg(mfd, &m);
        wire_msg_done(&m);
        if (r == 0)
                r = raw_read_frame(mfd, WAIT_MS, &frame, &len);
        if (r == 0 && wire_msg_init_read(&m, frame, len) == 0)
                (void)wire_get_u64(&m, &status);
        wire_msg_done(&m);
        free(frame);
        unlink(doomed_gate);
        if (status != 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: removal: the token could not be deleted (%d, status %llu)\n", r,
                        (unsigned long long)status);
                goto out;
        }
        uint64_t sign_rv = order_reply(fd, 21, NULL), queued_rv = order_reply(fd, 22, NULL);
        if (queued_rv != CKR_DEVICE_REMOVED) {
                tu_failures++;
                fprintf(stderr, "FAIL: removal: the request queued for the removed token = 0x%llx, want "
                        "CKR_DEVICE_REMOVED\n", (unsigned long long)queued_rv);
        }
        wire_msg_init_write(&m, WIRE_OP_GET_SESSION_INFO, 24, 0);
        wire_put_u64(&m, h);
        order_send(fd, &m);
        uint64_t late_rv = order_reply(fd, 24, NULL);
        if (late_rv != CKR_SESSION_HANDLE_INVALID) {
                tu_failures++;
                fprintf(stderr, "FAIL: removal: a request sent after the removal = 0x%llx, want "
                        "CKR_SESSION_HANDLE_INVALID\n", (unsigned long long)late_rv);
        }
        fprintf(stderr, "removal: held C_Sign = 0x%llx, queued request = 0x%llx, later request = 0x%llx\n",
                (unsigned long long)sign_rv, (unsigned long long)queued_rv, (unsigned long long)late_rv);
out:
        if (fd >= 0)
                close(fd);
        if (mfd >= 0)
                close(mfd);
}

/* ---------------------------------------------------------------- main */

static bool wait_for(bool (*cond)(void), const char *what) {
        for (unsigned i = 0; i < WAIT_MS / 2; i++) {
                if (cond())
                        return true;
                stress_sleep_ms(2);
        }
        tu_failures++;
        fprintf(stderr, "FAIL: gave up waiting for %s\n", what);
        return false;
}

static bool all_in_sign(void) {
        return atomic_load(&slow_started) == SLOW_TOTAL;
}

static bool daemon_busy(void) {
        return gate_count() >= gate_base + 1;
}

/* Runs the probe on a thread of its own and waits for it, at most
 * PROBE_DEADLINE_MS: past that, a failure, and the gates open so that
 * everything unwinds.  false if the thread could not start. */
static bool probe_wait(struct probe *p, const char *while_what) {
        pthread_t pt;
        if (pthread_create(&pt, NULL, probe_run, p) != 0)
                return false;
        uint64_t deadline = stress_now_ms() + PROBE_DEADLINE_MS;
        while (!atomic_load(&p->finished) && stress_now_ms() < deadline)
                stress_sleep_ms(2);
        if (!atomic_load(&p->finished)) {
                tu_failures++;
                fprintf(stderr,
                        "FAIL: the probe (fast token, info calls, open session) did not complete while %s\n",
                        while_what);
                gate_open();
        }
        pthread_join(pt, NULL);
        tu_failures += p->failures;
        return true;
}

/* ------------------------------------------------------------- cold */

struct cold {
        pthread_t thread;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE session;
        atomic_bool returned;
        CK_RV rv;
};

static void *cold_run(void *arg) {
        struct cold *c = arg;
        c->rv = f->C_FindObjectsInit(c->session, NULL, 0);
        atomic_store(&c->returned, true);
        return NULL;
}

static bool cold_entered(void) {
        return file_size(cold_gate_entered) >= 1;
}

/* Runs the probe once more while a first read of "cold"'s objects waits at
 * the gate.  Returns whether the cold thread was started (to be joined). */
static bool cold_check(struct probe *p0, struct cold *c) {
        CK_RV rv;
        file_make(cold_gate);
        if (!tu_find_slot(f, "cold", &c->slot) ||
            (rv = f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &c->session)) != CKR_OK) {
                tu_failures++;
                fprintf(stderr, "FAIL: the cold token: no slot or session\n");
                return false;
        }
        if (pthread_create(&c->thread, NULL, cold_run, c) != 0)
                return false;
        if (!wait_for(cold_entered, "netcad to start reading the cold token's objects"))
                return true;
        struct probe p = *p0; /* the same tokens, sessions and keys */
        p.failures = 0;
        atomic_store(&p.finished, false);
        if (!probe_wait(&p, "the cold token's objects were being read"))
                return true;
        if (atomic_load(&c->returned)) {
                tu_failures++;
                fprintf(stderr, "FAIL: C_FindObjectsInit on the cold token returned (%s) with the gate closed\n",
                        tu_rv_name(c->rv));
        }
        fprintf(stderr, "probe completed again while the cold token's objects were being read\n");
        return true;
}

static bool child_is_ready(void) {
        return atomic_load(&child_ready) != 0;
}

static bool all_done(void) {
        return atomic_load(&slow_done) == SLOW_TOTAL;
}

static void run(void) {
        int cmd[2], rep[2];
        if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0)
                exit(1);
        pid_t child = fork();
        if (child < 0)
                exit(1);
        if (child == 0) {
                close(cmd[1]);
                close(rep[0]);
                _exit(child_main(cmd[0], rep[1]));
        }
        close(cmd[0]);
        close(rep[1]);
        pthread_t reader;
        pthread_create(&reader, NULL, child_reader, &rep[0]);

        struct probe p;
        struct slow v[SLOW_PARENT];
        struct waiter w;
        struct cold cold;
        bool cold_started = false;
        CK_SLOT_ID doomed_slot = 0;
        bool removal_ok = false;
        memset(&cold, 0, sizeof cold);
        memset(&p, 0, sizeof p);
        memset(v, 0, sizeof v);
        memset(&w, 0, sizeof w);
        bool child_started = false, parent_started = false, waiter_started = false;

        daemon_pid = tu_start_daemon(netcad_path, sock, data_dir);
        f = tu_load_module(so_path, &module);
        if (daemon_pid <= 0 || !f) {
                tu_failures++;
                goto out_child;
        }
        {
                CK_RV rv = f->C_Initialize(NULL);
                CK_SESSION_HANDLE hs, hd;
                CK_OBJECT_HANDLE pub, priv;
                if (rv != CKR_OK || !tu_find_slot(f, "fast", &p.fast_slot) || !tu_find_slot(f, "slow", &p.slow_slot) ||
                    !tu_find_slot(f, "doomed", &doomed_slot)) {
                        fprintf(stderr, "FATAL: initialize / find the tokens: %s\n", tu_rv_name(rv));
                        tu_failures++;
                        goto out_child;
                }
                if ((rv = f->C_OpenSession(p.fast_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p.fast_s)) !=
                            CKR_OK ||
                    (rv = f->C_Login(p.fast_s, CKU_USER, PIN(TU_USER_PIN))) != CKR_OK ||
                    (rv = stress_gen_p256(f, p.fast_s, "fast-key", &p.fast_pub, &p.fast_key)) != CKR_OK ||
                    (rv = f->C_OpenSession(p.slow_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &hs)) !=
                            CKR_OK ||
                    (rv = f->C_Login(hs, CKU_USER, PIN(TU_USER_PIN))) != CKR_OK ||
                    (rv = stress_gen_p256(f, hs, "slow-key", &pub, &priv)) != CKR_OK ||
                    (rv = f->C_OpenSession(p.slow_slot, CKF_SERIAL_SESSION, NULL, NULL, &p.slow_idle_s)) != CKR_OK ||
                    (rv = f->C_OpenSession(doomed_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &hd)) !=
                            CKR_OK ||
                    (rv = f->C_Login(hd, CKU_USER, PIN(TU_USER_PIN))) != CKR_OK ||
                    (rv = stress_gen_p256(f, hd, "doomed-key", &pub, &priv)) != CKR_OK) {
                        fprintf(stderr, "FATAL: setup: %s\n", tu_rv_name(rv));
                        tu_failures++;
                        goto out_child;
                }
                if (!slow_setup(p.slow_slot, v, SLOW_PARENT, -1)) {
                        tu_failures++;
                        goto out_child;
                }
        }
        pipe_write_line(cmd[1], "setup");
        if (!wait_for(child_is_ready, "the second process to set up"))
                goto out_child;

        /* Hold the slow token: every slow signature now waits at the gate. */
        gate_base = gate_count();
        gate_close();
        if (pthread_create(&w.thread, NULL, waiter_run, &w) != 0)
                goto out_gate;
        waiter_started = true;
        pipe_write_line(cmd[1], "go");
        child_started = true;
        if (!slow_start(v, SLOW_PARENT))
                goto out_gate;
        parent_started = true;
        if (!wait_for(all_in_sign, "every slow signer to call C_Sign") ||
            !wait_for(daemon_busy, "netcad to start a slow signature"))
                goto out_gate;
        /* Not a timing condition: only gives the requests just written time
         * to be read by netcad, so that a daemon whose workers all block on
         * the gate surely has them all blocked before the probe. */
        stress_sleep_ms(100);
        long entered = gate_count();
        fprintf(stderr, "slow signatures: %u in C_Sign, %ld in progress in netcad\n", atomic_load(&slow_started),
                entered);

        if (!probe_wait(&p, "the slow token was busy"))
                goto out_gate;
        if (p.done_at_end != 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: %u slow signature(s) completed before the probe did\n", p.done_at_end);
        }
        if (atomic_load(&w.returned)) {
                tu_failures++;
                fprintf(stderr, "FAIL: C_WaitForSlotEvent returned (%s) with no slot event\n", tu_rv_name(w.rv));
        }
        /* The gate is still closed: still none may have completed. */
        CHECK(atomic_load(&slow_done) == 0);
        CHECK(gate_count() <= gate_base + SLOW_TOTAL);
        fprintf(stderr, "probe completed; slow signatures completed meanwhile: %u; in progress in netcad: %ld\n",
                p.done_at_end, gate_count() - gate_base);

        cold_started = cold_check(&p, &cold);
        CHECK(atomic_load(&slow_done) == 0);

        order_check(p.fast_slot);
        removal_ok = true;

out_gate:
        gate_open();
        if (child_started || parent_started)
                wait_for(all_done, "the slow signatures to complete after the gate opened");
        if (parent_started)
                for (unsigned i = 0; i < SLOW_PARENT; i++)
                        pthread_join(v[i].thread, NULL);
        CHECK(atomic_load(&slow_bad) == 0);
        if (cold_started) {
                pthread_join(cold.thread, NULL);
                if (cold.rv != CKR_OK) {
                        tu_failures++;
                        fprintf(stderr, "FAIL: C_FindObjectsInit on the cold token = %s\n", tu_rv_name(cold.rv));
                } else
                        CHECK(f->C_FindObjectsFinal(cold.session) == CKR_OK);
        }
        CHECK(gate_count() == gate_base + SLOW_TOTAL);
        CHECK(file_size(cold_gate_entered) == (cold_started ? 1 : 0));
        if (f) {
                CK_RV rv = f->C_Finalize(NULL);
                CHECK(rv == CKR_OK);
        }
        if (waiter_started) {
                pthread_join(w.thread, NULL);
                if (w.rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
                        tu_failures++;
                        fprintf(stderr, "FAIL: C_WaitForSlotEvent after C_Finalize = %s\n", tu_rv_name(w.rv));
                }
        }
        /* Last: the removal is a slot event, which the waiter above must
         * not have seen. */
        if (removal_ok)
                removal_check(doomed_slot);
out_child:
        close(cmd[1]);
        int st = 0;
        uint64_t end = stress_now_ms() + WAIT_MS;
        while (waitpid(child, &st, WNOHANG) == 0) {
                if (stress_now_ms() > end) {
                        fprintf(stderr, "FAIL: the second process hangs: killed\n");
                        kill(child, SIGKILL);
                        waitpid(child, &st, 0);
                        tu_failures++;
                        break;
                }
                stress_sleep_ms(10);
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: the second process: status 0x%x\n", st);
        }
        pthread_join(reader, NULL);
        close(rep[0]);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        so_path = tu_env_path("NETCA_PKCS11_MODULE");
        netcad_path = tu_env_path("NETCA_NETCAD");
        dir = tu_mkdtemp("isolation");
        if (asprintf(&data_dir, "%s/data", dir) < 0 || asprintf(&sock, "%s/netcad.sock", dir) < 0 ||
            asprintf(&gate, "%s/gate", dir) < 0 || asprintf(&gate_entered, "%s.entered", gate) < 0 ||
            asprintf(&cold_gate, "%s/gate-cold", dir) < 0 ||
            asprintf(&cold_gate_entered, "%s.entered", cold_gate) < 0 ||
            asprintf(&doomed_gate, "%s/gate-doomed", dir) < 0 ||
            asprintf(&doomed_gate_entered, "%s.entered", doomed_gate) < 0)
                return 1;
        if (tu_create_token(data_dir, "fast") < 0 || tu_create_token(data_dir, "slow") < 0 ||
            tu_create_token(data_dir, "cold") < 0 || tu_create_token(data_dir, "doomed") < 0)
                return 1;
        char *spec;
        if (asprintf(&spec, "slow=200:%s,cold=0:%s,doomed=0:%s", gate, cold_gate, doomed_gate) < 0)
                return 1;
        setenv("NETCA_SOFT_DELAY", spec, 1); /* inherited by netcad-test */
        setenv("NETCA_SOCKET", sock, 1);
        setenv("NETCA_AUTOSTART", "0", 1);
        free(spec);

        run();

        tu_stop_daemon(daemon_pid);
        tu_rmrf(dir);
        if (tu_failures) {
                fprintf(stderr, "stress isolation: %u check(s) failed\n", tu_failures);
                return 1;
        }
        fprintf(stderr, "stress isolation: passed\n");
        return 0;
}
