/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Faults and load through the real stack (netca-pkcs11.so -> netcad -> soft
 * token): one executable, one scenario per argument, each its own meson test
 * in the `stress` suite.  Loop counts scale with NETCA_STRESS_SCALE (default
 * 1 = the issue's numbers); NETCA_STRESS_SEED replays a random run.
 *
 *   load        32 client processes x 2,000 mixed calls (open, login, find,
 *               sign, attribute read, close): zero errors; afterwards the
 *               daemon's fd count is exactly back and its RSS back within
 *               2 MiB of the start level
 *   kill        netcad SIGKILLed while 8 clients sign in a loop: each client
 *               gets an error (bounded wait, no hang, no crash); after a
 *               restart on the same socket and data dir the same processes,
 *               without C_Initialize again, open new sessions and sign
 *   durability  a writer creating/destroying objects through the module is
 *               SIGKILLed at random points 200 times (every 10th round netcad
 *               is SIGKILLed too); the token then passes SQLite's
 *               integrity_check and holds exactly the objects the model says.
 *               The writer reports "will create X" before the call and
 *               "created X" after CKR_OK.  An op whose outcome was never
 *               reported (the kill fell between the daemon's commit and the
 *               report, or the daemon died before answering) is "in doubt":
 *               it may have happened or not, but all or nothing, once.  Each
 *               new writer first lists the token (after the dead writer's
 *               requests have all run: the daemon's client count is back);
 *               the listing must hold every confirmed object once, no
 *               confirmed-destroyed one, nothing never created, and it
 *               settles the doubts.  The final listing also checks values.
 *   badinput    raw-socket abuse (bad lengths, over the cap, unknown ops,
 *               garbage payloads, reply flags, random frames, half frames
 *               that stall and are dropped after the frame timeout, a client that never reads its replies): each is
 *               refused or dropped, a normal module client keeps working
 *               during and after each, fds come back and RSS does not grow
 *               from round to round (round 1 is the warm-up)
 *   ping-payload a PING carrying a payload is answered (with an error) or
 *               dropped, never left hanging (fails after a 20 s wait); a
 *               module client is served afterwards
 *
 * RSS bounds are not asserted under AddressSanitizer (its quarantine keeps
 * freed memory resident by design); the fd checks always are.  netcad runs
 * with MALLOC_ARENA_MAX=1 here, so that RSS measures leaks rather than how
 * freed memory is spread over per-thread malloc arenas (see main()).
 *
 * Environment (from meson): NETCA_PKCS11_MODULE, NETCA_NETCAD. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "common/wire.h"
#include "drivers/soft/soft.h"
#include "stress-util.h"
#include "testutil.h"

#define LABEL "stress"
#define KEY_LABEL "stress-key"
#define PIN(s) (CK_UTF8CHAR_PTR)(s), (CK_ULONG)strlen(s)
#define RSS_SLACK_KB 2048

static const char *so_path, *netcad_path;
static char *dir, *data_dir, *sock;
static pid_t daemon_pid = -1;
static void *module;
static CK_FUNCTION_LIST_PTR f;
static uint64_t rng;

static void setup_dirs(void) {
        dir = tu_mkdtemp("stress");
        if (asprintf(&data_dir, "%s/data", dir) < 0 || asprintf(&sock, "%s/netcad.sock", dir) < 0)
                exit(1);
        if (tu_create_token(data_dir, LABEL) < 0)
                exit(1);
        setenv("NETCA_SOCKET", sock, 1);
        setenv("NETCA_AUTOSTART", "0", 1);
}

static bool start_daemon(void) {
        daemon_pid = tu_start_daemon(netcad_path, sock, data_dir);
        return daemon_pid > 0;
}

/* A crash on purpose: SIGKILL (anything else it died of is a failure). */
static void kill_daemon(void) {
        if (daemon_pid <= 0)
                return;
        tu_kill_daemon(daemon_pid);
        daemon_pid = -1;
}

static bool daemon_alive(void) {
        if (daemon_pid <= 0)
                return false;
        int st;
        if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
                fprintf(stderr, "FAIL: netcad died (status 0x%x)\n", st);
                daemon_pid = -1;
                return false;
        }
        return true;
}

static bool load(void) {
        if (!module)
                f = tu_load_module(so_path, &module);
        return f != NULL;
}

static void cleanup(void) {
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        tu_rmrf(dir);
}

/* In the parent: initialize, find the slot, generate the signing key,
 * finalize again (children initialize on their own). */
static bool prepare_key(CK_SLOT_ID *ret_slot) {
        CK_SESSION_HANDLE h;
        CK_OBJECT_HANDLE pub, priv;
        if (!load())
                return false;
        CK_RV rv = f->C_Initialize(NULL);
        if (rv != CKR_OK) {
                fprintf(stderr, "FATAL: C_Initialize = %s\n", tu_rv_name(rv));
                tu_failures++;
                return false;
        }
        bool ok = tu_find_slot(f, LABEL, ret_slot);
        if (!ok)
                fprintf(stderr, "FATAL: token not found\n");
        if (ok && ((rv = f->C_OpenSession(*ret_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h)) != CKR_OK ||
                   (rv = f->C_Login(h, CKU_USER, PIN(TU_USER_PIN))) != CKR_OK ||
                   (rv = stress_gen_p256(f, h, KEY_LABEL, &pub, &priv)) != CKR_OK)) {
                fprintf(stderr, "FATAL: key setup: %s\n", tu_rv_name(rv));
                ok = false;
        }
        (void)f->C_Finalize(NULL);
        if (!ok)
                tu_failures++;
        return ok;
}

/* Waits (bounded) until only `others` clients besides the asking one are
 * connected to the daemon (a dead client's requests have all run then). */
static void wait_clients(int others) {
        int n = -1;
        for (int i = 0; i < 3000; i++) {
                n = raw_status_clients(sock);
                if (n == others + 1)
                        return;
                stress_sleep_ms(i < 100 ? 2 : 20);
        }
        tu_failures++;
        fprintf(stderr, "FAIL: daemon still has %d clients, want %d\n", n - 1, others);
}

/* Waits until the daemon's sweep has given freed memory back after the
 * clients so far went away (MGMT_STATUS "memory_trims" grows: every status
 * connection is itself a client that goes away, so a sweep always comes
 * within its 2 s).  An RSS read before it would depend on where in the
 * sweep's period the test happens to be. */
static void wait_trimmed(void) {
        double t0 = raw_status_number(sock, "memory_trims"), t = t0;
        for (int i = 0; i < 200 && t0 >= 0 && t <= t0; i++) {
                stress_sleep_ms(50);
                t = raw_status_number(sock, "memory_trims");
        }
        if (t0 < 0 || t <= t0) {
                tu_failures++;
                fprintf(stderr, "FAIL: the daemon's sweep did not give memory back within 10 s (memory_trims %.0f)\n", t);
        }
}

/* wait_clients(), then waits until the daemon's fd count is steady and its
 * sweep has trimmed the heap; returns the fd count. */
static long settle(int others) {
        wait_clients(others);
        wait_trimmed();
        long prev = -2, cur = proc_fd_count(daemon_pid);
        for (int i = 0; i < 100 && cur != prev; i++) {
                stress_sleep_ms(100);
                prev = cur;
                cur = proc_fd_count(daemon_pid);
        }
        return cur;
}

/* Polls (bounded) until the daemon holds exactly want fds. */
static void check_fds_back(long want, const char *what) {
        long n = -1;
        for (int i = 0; i < 300; i++) {
                n = proc_fd_count(daemon_pid);
                if (n == want)
                        return;
                stress_sleep_ms(100);
        }
        tu_failures++;
        fprintf(stderr, "FAIL: %s: daemon has %ld fds, started with %ld\n", what, n, want);
}

static void check_rss(long base_kb, long slack_kb, const char *what) {
        long now = proc_rss_kb(daemon_pid);
        fprintf(stderr, "%s: daemon RSS %ld kB (reference %ld kB, slack %ld kB)%s\n", what, now, base_kb, slack_kb,
                STRESS_ASAN ? " [not asserted under ASan]" : "");
        if (STRESS_ASAN)
                return;
        if (now < 0 || now > base_kb + slack_kb) {
                tu_failures++;
                fprintf(stderr, "FAIL: %s: daemon RSS %ld kB > %ld + %ld kB\n", what, now, base_kb, slack_kb);
        }
}

/* Reaps the children (bounded); counts those that failed. */
static void reap_all(pid_t *pids, unsigned n, unsigned timeout_ms, const char *what) {
        uint64_t deadline = stress_now_ms() + timeout_ms;
        unsigned left = n, bad = 0;
        while (left > 0) {
                for (unsigned i = 0; i < n; i++) {
                        int st;
                        if (pids[i] <= 0 || waitpid(pids[i], &st, WNOHANG) != pids[i])
                                continue;
                        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                                bad++;
                                fprintf(stderr, "FAIL: %s child %u: %s %d\n", what, i,
                                        WIFSIGNALED(st) ? "killed by signal" : "exit status",
                                        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
                        }
                        pids[i] = 0;
                        left--;
                }
                if (left == 0)
                        break;
                if (stress_now_ms() > deadline) {
                        for (unsigned i = 0; i < n; i++)
                                if (pids[i] > 0) {
                                        fprintf(stderr, "FAIL: %s child %u hangs: killed\n", what, i);
                                        kill(pids[i], SIGKILL);
                                        waitpid(pids[i], NULL, 0);
                                        bad++;
                                }
                        break;
                }
                stress_sleep_ms(20);
        }
        tu_failures += bad;
}

/* ------------------------------------------------------------------ load */

struct load_ctx {
        CK_SLOT_ID slot;
        CK_OBJECT_HANDLE key, pub;
        unsigned calls, errors;
        unsigned idx;
};

/* One call of the mix: counts it, and an unexpected result as an error. */
static bool lcall(struct load_ctx *c, CK_RV got, CK_RV want, const char *expr) {
        c->calls++;
        if (got == want)
                return true;
        if (c->errors++ < 5)
                fprintf(stderr, "client %u: %s = %s, want %s\n", c->idx, expr, tu_rv_name(got), tu_rv_name(want));
        return false;
}
#define LCALL(ctx, expr, want) lcall((ctx), (expr), (want), #expr)

static bool load_login_home(struct load_ctx *c, CK_SESSION_HANDLE *home) {
        return LCALL(c, f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, home), CKR_OK) &&
               LCALL(c, f->C_Login(*home, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
}

static int load_child(CK_SLOT_ID slot, unsigned idx, unsigned ncalls) {
        struct load_ctx c = { .slot = slot, .idx = idx };
        CK_SESSION_HANDLE home, h;
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE data[32], sig[128], lab[64];
        CK_ULONG sig_len = 0;
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, (void *)KEY_LABEL, strlen(KEY_LABEL) } };

        alarm(600);  /* a guard only: the parent's deadline comes first */
        tu_failures = 0;
        if (!LCALL(&c, f->C_Initialize(NULL), CKR_OK))
                return 1;
        if (!load_login_home(&c, &home) || stress_find_one(f, home, CKO_PRIVATE_KEY, KEY_LABEL, &c.key) != CKR_OK ||
            stress_find_one(f, home, CKO_PUBLIC_KEY, KEY_LABEL, &c.pub) != CKR_OK) {
                fprintf(stderr, "client %u: setup failed\n", idx);
                return 1;
        }
        c.calls += 6;
        memset(data, (int)idx, sizeof data);
        bool relogged = false;
        for (unsigned it = 0; c.calls < ncalls; it++) {
                CK_OBJECT_HANDLE found[4];
                CK_ULONG n = 0;
                data[0] = (CK_BYTE)it;
                if (!LCALL(&c, f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK))
                        continue;
                /* The application is logged in through its home session. */
                LCALL(&c, f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)), CKR_USER_ALREADY_LOGGED_IN);
                LCALL(&c, f->C_FindObjectsInit(h, tmpl, 2), CKR_OK);
                if (LCALL(&c, f->C_FindObjects(h, found, 4, &n), CKR_OK) && (n != 1 || found[0] != c.key)) {
                        c.errors++;
                        fprintf(stderr, "client %u: find gave %lu objects\n", idx, (unsigned long)n);
                }
                LCALL(&c, f->C_FindObjectsFinal(h), CKR_OK);
                LCALL(&c, f->C_SignInit(h, &mech, c.key), CKR_OK);
                sig_len = sizeof sig;
                if (LCALL(&c, f->C_Sign(h, data, sizeof data, sig, &sig_len), CKR_OK) && sig_len != 64) {
                        c.errors++;
                        fprintf(stderr, "client %u: signature of %lu bytes\n", idx, (unsigned long)sig_len);
                }
                if (it % 4 == 0) {
                        CK_ATTRIBUTE a = { CKA_LABEL, lab, sizeof lab };
                        if (LCALL(&c, f->C_GetAttributeValue(h, c.key, &a, 1), CKR_OK) &&
                            (a.ulValueLen != strlen(KEY_LABEL) || memcmp(lab, KEY_LABEL, a.ulValueLen) != 0)) {
                                c.errors++;
                                fprintf(stderr, "client %u: wrong label\n", idx);
                        }
                        CK_SESSION_INFO si;
                        if (LCALL(&c, f->C_GetSessionInfo(h, &si), CKR_OK) && si.state != CKS_RO_USER_FUNCTIONS) {
                                c.errors++;
                                fprintf(stderr, "client %u: session state %lu\n", idx, (unsigned long)si.state);
                        }
                }
                LCALL(&c, f->C_CloseSession(h), CKR_OK);
                /* Halfway: close everything (logs the application out) and
                 * log in again. */
                if (!relogged && c.calls >= ncalls / 2) {
                        relogged = true;
                        LCALL(&c, f->C_CloseAllSessions(slot), CKR_OK);
                        CK_SESSION_INFO si;
                        LCALL(&c, f->C_GetSessionInfo(home, &si), CKR_SESSION_HANDLE_INVALID);
                        if (!load_login_home(&c, &home))
                                break;
                }
        }
        /* The last signature verifies with the public key. */
        if (sig_len == 64) {
                LCALL(&c, f->C_VerifyInit(home, &mech, c.pub), CKR_OK);
                LCALL(&c, f->C_Verify(home, data, sizeof data, sig, sig_len), CKR_OK);
        }
        LCALL(&c, f->C_Logout(home), CKR_OK);
        LCALL(&c, f->C_CloseSession(home), CKR_OK);
        LCALL(&c, f->C_Finalize(NULL), CKR_OK);
        if (c.errors)
                fprintf(stderr, "client %u: %u errors in %u calls\n", idx, c.errors, c.calls);
        return c.errors ? 1 : 0;
}

static void run_load_clients(CK_SLOT_ID slot, unsigned nclients, unsigned ncalls) {
        pid_t pids[64];
        uint64_t t0 = stress_now_ms();
        for (unsigned i = 0; i < nclients; i++) {
                pids[i] = fork();
                if (pids[i] < 0) {
                        tu_failures++;
                        pids[i] = 0;
                        continue;
                }
                if (pids[i] == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        _exit(load_child(slot, i, ncalls));
                }
        }
        reap_all(pids, nclients, 900000, "load");
        fprintf(stderr, "load: %u clients x %u calls in %.1f s\n", nclients, ncalls,
                (double)(stress_now_ms() - t0) / 1000.0);
}

static void scenario_load(void) {
        CK_SLOT_ID slot;
        unsigned nclients = 32, ncalls = stress_scaled(2000, 40);
        if (!start_daemon() || !prepare_key(&slot))
                return;
        /* Warm-up with the same shape (32 concurrent clients, few calls):
         * worker threads, their malloc arenas and the token's key cache
         * exist before the start level is taken. */
        run_load_clients(slot, nclients, 40);
        long fd0 = settle(0), rss0 = proc_rss_kb(daemon_pid);
        fprintf(stderr, "start level: %ld fds, RSS %ld kB\n", fd0, rss0);
        if (fd0 < 0 || rss0 < 0) {
                tu_failures++;
                return;
        }
        run_load_clients(slot, nclients, ncalls);
        CHECK(daemon_alive());
        long fd1 = settle(0);
        fprintf(stderr, "after: %ld fds, RSS %ld kB\n", fd1, proc_rss_kb(daemon_pid));
        check_fds_back(fd0, "load");
        check_rss(rss0, RSS_SLACK_KB, "load");
}

/* ------------------------------------------------------------------ kill */

#define KILL_CLIENTS 8

static int kill_child(CK_SLOT_ID slot, unsigned idx, int up, int down) {
        CK_SESSION_HANDLE h, h2;
        CK_OBJECT_HANDLE key, pub;
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE data[32], sig[128];
        CK_ULONG len;
        CK_RV rv;
        char line[64];

        alarm(600);
        memset(data, (int)idx + 1, sizeof data);
        if (f->C_Initialize(NULL) != CKR_OK ||
            f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK ||
            f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)) != CKR_OK ||
            stress_find_one(f, h, CKO_PRIVATE_KEY, KEY_LABEL, &key) != CKR_OK) {
                pipe_write_line(up, "F setup");
                return 1;
        }
        /* Sign until the daemon goes away under us. */
        bool ready = false;
        for (;;) {
                rv = f->C_SignInit(h, &mech, key);
                if (rv == CKR_OK) {
                        len = sizeof sig;
                        rv = f->C_Sign(h, data, sizeof data, sig, &len);
                }
                if (rv != CKR_OK)
                        break;
                if (!ready) {
                        ready = true;
                        pipe_write_line(up, "R");
                }
        }
        if (!ready) {
                pipe_write_line(up, "F first sign: %s", tu_rv_name(rv));
                return 1;
        }
        pipe_write_line(up, "E %s", tu_rv_name(rv));
        /* Wait for the new daemon. */
        if (pipe_read_line(down, 120000, line, sizeof line) < 0 || strcmp(line, "G") != 0)
                return 1;
        CK_SLOT_ID slot2 = (CK_SLOT_ID)-1;
        CK_SESSION_INFO si;
        int fails = 0;
        if (!tu_find_slot(f, LABEL, &slot2) || slot2 != slot) {
                fprintf(stderr, "client %u: slot %lu after restart, was %lu\n", idx, (unsigned long)slot2,
                        (unsigned long)slot);
                fails++;
        }
        if ((rv = f->C_GetSessionInfo(h, &si)) != CKR_SESSION_HANDLE_INVALID) {
                fprintf(stderr, "client %u: old session: %s\n", idx, tu_rv_name(rv));
                fails++;
        }
        if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h2)) != CKR_OK ||
            (rv = f->C_Login(h2, CKU_USER, PIN(TU_USER_PIN))) != CKR_OK ||
            (rv = stress_find_one(f, h2, CKO_PRIVATE_KEY, KEY_LABEL, &key)) != CKR_OK ||
            (rv = stress_find_one(f, h2, CKO_PUBLIC_KEY, KEY_LABEL, &pub)) != CKR_OK) {
                fprintf(stderr, "client %u: after restart: %s\n", idx, tu_rv_name(rv));
                pipe_write_line(up, "F after restart");
                return 1;
        }
        for (int i = 0; i < 3; i++) {
                len = sizeof sig;
                if ((rv = f->C_SignInit(h2, &mech, key)) != CKR_OK ||
                    (rv = f->C_Sign(h2, data, sizeof data, sig, &len)) != CKR_OK ||
                    (rv = f->C_VerifyInit(h2, &mech, pub)) != CKR_OK ||
                    (rv = f->C_Verify(h2, data, sizeof data, sig, len)) != CKR_OK) {
                        fprintf(stderr, "client %u: sign after restart: %s\n", idx, tu_rv_name(rv));
                        fails++;
                }
        }
        if (f->C_CloseSession(h2) != CKR_OK || f->C_Finalize(NULL) != CKR_OK)
                fails++;
        pipe_write_line(up, fails ? "F" : "O");
        return fails ? 1 : 0;
}

static void scenario_kill(void) {
        CK_SLOT_ID slot;
        pid_t pids[KILL_CLIENTS];
        int up[KILL_CLIENTS], down[KILL_CLIENTS];
        char line[128];

        if (!start_daemon() || !prepare_key(&slot))
                return;
        for (unsigned i = 0; i < KILL_CLIENTS; i++) {
                int a[2], b[2];
                if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0)
                        exit(1);
                pids[i] = fork();
                if (pids[i] < 0)
                        exit(1);
                if (pids[i] == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        close(a[0]);
                        close(b[1]);
                        _exit(kill_child(slot, i, a[1], b[0]));
                }
                close(a[1]);
                close(b[0]);
                up[i] = a[0];
                down[i] = b[1];
        }
        bool all = true;
        for (unsigned i = 0; i < KILL_CLIENTS; i++)
                if (pipe_read_line(up[i], 120000, line, sizeof line) < 0 || strcmp(line, "R") != 0) {
                        fprintf(stderr, "FAIL: client %u not signing: '%s'\n", i, line);
                        all = false;
                }
        if (!all) {
                tu_failures++;
                for (unsigned i = 0; i < KILL_CLIENTS; i++)
                        kill(pids[i], SIGKILL);
                reap_all(pids, KILL_CLIENTS, 10000, "kill");
                return;
        }
        /* They are all in their signing loop: most are mid-call. */
        kill_daemon();
        /* Each gets an error, within a bound. */
        for (unsigned i = 0; i < KILL_CLIENTS; i++) {
                int r = pipe_read_line(up[i], 60000, line, sizeof line);
                if (r < 0 || line[0] != 'E') {
                        tu_failures++;
                        fprintf(stderr, "FAIL: client %u after the kill: %s\n", i,
                                r == -ETIMEDOUT ? "no error within 60 s (hang)" : r < 0 ? "died" : line);
                } else
                        fprintf(stderr, "client %u: %s\n", i, line);
        }
        if (!start_daemon())
                return;
        for (unsigned i = 0; i < KILL_CLIENTS; i++)
                pipe_write_line(down[i], "G");
        for (unsigned i = 0; i < KILL_CLIENTS; i++) {
                int r = pipe_read_line(up[i], 120000, line, sizeof line);
                if (r < 0 || strcmp(line, "O") != 0) {
                        tu_failures++;
                        fprintf(stderr, "FAIL: client %u after the restart: %s\n", i, r < 0 ? "no answer" : line);
                }
                close(up[i]);
                close(down[i]);
        }
        reap_all(pids, KILL_CLIENTS, 60000, "kill");
        CHECK(daemon_alive());
}

/* ------------------------------------------------------------ durability */

enum obj_state {
        OBJ_PRESENT,
        OBJ_ABSENT,
        OBJ_DOUBT,  /* an op was started and its outcome never reported */
};

struct obj {
        char label[24];
        enum obj_state state;
        unsigned seen;  /* in the current listing */
};

static struct obj *objs;
static size_t n_objs, cap_objs;

static struct obj *obj_find(const char *label) {
        for (size_t i = 0; i < n_objs; i++)
                if (strcmp(objs[i].label, label) == 0)
                        return &objs[i];
        return NULL;
}

static struct obj *obj_add(const char *label) {
        if (n_objs == cap_objs) {
                cap_objs = cap_objs ? cap_objs * 2 : 256;
                objs = realloc(objs, cap_objs * sizeof *objs);
                if (!objs)
                        exit(1);
        }
        struct obj *o = &objs[n_objs++];
        memset(o, 0, sizeof *o);
        snprintf(o->label, sizeof o->label, "%s", label);
        return o;
}

/* The object's value: derived from its label, 1..600 bytes. */
static size_t obj_value(const char *label, CK_BYTE *out) {
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = label; *p; p++)
                h = (h ^ (uint8_t)*p) * 1099511628211ULL;
        size_t n = 1 + h % 600;
        for (size_t i = 0; i < n; i++) {
                h = h * 6364136223846793005ULL + 1442695040888963407ULL;
                out[i] = (CK_BYTE)(h >> 56);
        }
        return n;
}

/* All public data objects of the session's token: labels (and, with
 * values, checks each value).  Returns the count or -1. */
static int list_data(CK_SESSION_HANDLE h, int up, bool check_values, unsigned *bad_values) {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE t = { CKA_CLASS, &cls, sizeof cls };
        CK_OBJECT_HANDLE v[64];
        CK_OBJECT_HANDLE *all = NULL;
        size_t n_all = 0;
        CK_ULONG n;
        if (f->C_FindObjectsInit(h, &t, 1) != CKR_OK)
                return -1;
        do {
                if (f->C_FindObjects(h, v, 64, &n) != CKR_OK) {
                        free(all);
                        return -1;
                }
                all = realloc(all, (n_all + n + 1) * sizeof *all);
                if (!all)
                        exit(1);
                memcpy(all + n_all, v, n * sizeof *v);
                n_all += n;
        } while (n > 0);
        if (f->C_FindObjectsFinal(h) != CKR_OK) {
                free(all);
                return -1;
        }
        for (size_t i = 0; i < n_all; i++) {
                char label[32];
                CK_BYTE val[700], want[700];
                CK_ATTRIBUTE a[] = { { CKA_LABEL, label, sizeof label - 1 }, { CKA_VALUE, val, sizeof val } };
                if (f->C_GetAttributeValue(h, all[i], a, check_values ? 2 : 1) != CKR_OK) {
                        free(all);
                        return -1;
                }
                label[a[0].ulValueLen] = '\0';
                if (up >= 0)
                        pipe_write_line(up, "S %s", label);
                else {
                        struct obj *o = obj_find(label);
                        if (o)
                                o->seen++;
                        else {
                                fprintf(stderr, "FAIL: object '%s' was never created\n", label);
                                o = obj_add(label);
                                o->state = OBJ_ABSENT;
                                o->seen = 1;
                        }
                }
                if (check_values) {
                        size_t wl = obj_value(label, want);
                        if (a[1].ulValueLen != wl || memcmp(val, want, wl) != 0) {
                                fprintf(stderr, "FAIL: object '%s' has a wrong value\n", label);
                                (*bad_values)++;
                        }
                }
        }
        free(all);
        return (int)n_all;
}

/* The writer: lists what is there, then creates and destroys until killed.
 * Reports on `up`, one line per step, before and after each call:
 *   S label  listed        E  listing complete
 *   I label  will create   C label  created (CKR_OK)
 *   i label  will destroy  D label  destroyed (CKR_OK)
 *   X rv     a call failed (expected only when netcad was killed) */
static int writer_child(CK_SLOT_ID slot, unsigned round, int up, uint64_t seed) {
        CK_SESSION_HANDLE h;
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL tru = CK_TRUE, fal = CK_FALSE;
        CK_BYTE val[700];
        CK_RV rv;
        struct {
                char label[24];
                CK_OBJECT_HANDLE h;
        } mine[512];
        size_t n_mine = 0;

        alarm(120);
        if ((rv = f->C_Initialize(NULL)) != CKR_OK ||
            (rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h)) != CKR_OK) {
                pipe_write_line(up, "X %s", tu_rv_name(rv));
                return 0;
        }
        /* The listing, with handles for destroying. */
        CK_ATTRIBUTE t = { CKA_CLASS, &cls, sizeof cls };
        CK_OBJECT_HANDLE v[64];
        CK_ULONG n;
        if ((rv = f->C_FindObjectsInit(h, &t, 1)) != CKR_OK) {
                pipe_write_line(up, "X %s", tu_rv_name(rv));
                return 0;
        }
        do {
                if ((rv = f->C_FindObjects(h, v, 64, &n)) != CKR_OK) {
                        pipe_write_line(up, "X %s", tu_rv_name(rv));
                        return 0;
                }
                for (CK_ULONG i = 0; i < n && n_mine < ELEMENTSOF(mine); i++) {
                        CK_ATTRIBUTE a = { CKA_LABEL, mine[n_mine].label, sizeof mine[n_mine].label - 1 };
                        if ((rv = f->C_GetAttributeValue(h, v[i], &a, 1)) != CKR_OK) {
                                pipe_write_line(up, "X %s", tu_rv_name(rv));
                                return 0;
                        }
                        mine[n_mine].label[a.ulValueLen] = '\0';
                        mine[n_mine].h = v[i];
                        pipe_write_line(up, "S %s", mine[n_mine].label);
                        n_mine++;
                }
        } while (n > 0);
        if ((rv = f->C_FindObjectsFinal(h)) != CKR_OK) {
                pipe_write_line(up, "X %s", tu_rv_name(rv));
                return 0;
        }
        if (n_mine >= ELEMENTSOF(mine)) {
                pipe_write_line(up, "X too-many-objects");
                return 0;
        }
        pipe_write_line(up, "E");
        for (unsigned i = 0;; i++) {
                /* Destroy when there are many, else mostly create. */
                bool destroy = n_mine > 0 && stress_rand(&seed) % 100 < (n_mine > 40 ? 70 : 30);
                if (destroy) {
                        size_t k = stress_rand(&seed) % n_mine;
                        pipe_write_line(up, "i %s", mine[k].label);
                        rv = f->C_DestroyObject(h, mine[k].h);
                        if (rv != CKR_OK) {
                                pipe_write_line(up, "X %s", tu_rv_name(rv));
                                return 0;
                        }
                        pipe_write_line(up, "D %s", mine[k].label);
                        mine[k] = mine[--n_mine];
                } else {
                        if (n_mine >= ELEMENTSOF(mine))
                                continue;
                        char label[24];
                        CK_OBJECT_HANDLE o;
                        snprintf(label, sizeof label, "r%u-%u", round, i);
                        size_t vl = obj_value(label, val);
                        CK_ATTRIBUTE tm[] = {
                                { CKA_CLASS, &cls, sizeof cls },     { CKA_TOKEN, &tru, sizeof tru },
                                { CKA_PRIVATE, &fal, sizeof fal },   { CKA_LABEL, label, strlen(label) },
                                { CKA_VALUE, val, vl },
                        };
                        pipe_write_line(up, "I %s", label);
                        rv = f->C_CreateObject(h, tm, ELEMENTSOF(tm), &o);
                        if (rv != CKR_OK) {
                                pipe_write_line(up, "X %s", tu_rv_name(rv));
                                return 0;
                        }
                        pipe_write_line(up, "C %s", label);
                        snprintf(mine[n_mine].label, sizeof mine[n_mine].label, "%s", label);
                        mine[n_mine++].h = o;
                }
        }
}

static unsigned dur_listed, dur_ops, dur_doubts_resolved;

/* Applies one report line to the model; false on a contradiction. */
static bool dur_apply(const char *line, bool daemon_killed, bool *listing_done) {
        const char *arg = line + 2;
        struct obj *o;
        switch (line[0]) {
        case 'S':
                o = obj_find(arg);
                if (!o) {
                        fprintf(stderr, "FAIL: listed object '%s' was never created\n", arg);
                        return false;
                }
                o->seen++;
                return true;
        case 'E':
                *listing_done = true;
                dur_listed++;
                for (size_t i = 0; i < n_objs; i++) {
                        o = &objs[i];
                        if (o->seen > 1) {
                                fprintf(stderr, "FAIL: '%s' listed %u times\n", o->label, o->seen);
                                return false;
                        }
                        if (o->state == OBJ_PRESENT && !o->seen) {
                                fprintf(stderr, "FAIL: '%s' (created with CKR_OK) is gone\n", o->label);
                                return false;
                        }
                        if (o->state == OBJ_ABSENT && o->seen) {
                                fprintf(stderr, "FAIL: '%s' (destroyed with CKR_OK) is back\n", o->label);
                                return false;
                        }
                        if (o->state == OBJ_DOUBT) {
                                o->state = o->seen ? OBJ_PRESENT : OBJ_ABSENT;
                                dur_doubts_resolved++;
                        }
                        o->seen = 0;
                }
                return true;
        case 'I':
                if (obj_find(arg)) {
                        fprintf(stderr, "FAIL: label '%s' reused\n", arg);
                        return false;
                }
                obj_add(arg)->state = OBJ_DOUBT;
                return true;
        case 'C':
        case 'D':
                o = obj_find(arg);
                if (!o || o->state != OBJ_DOUBT) {
                        fprintf(stderr, "FAIL: unexpected report '%s'\n", line);
                        return false;
                }
                o->state = line[0] == 'C' ? OBJ_PRESENT : OBJ_ABSENT;
                dur_ops++;
                return true;
        case 'i':
                o = obj_find(arg);
                if (!o || o->state != OBJ_PRESENT) {
                        fprintf(stderr, "FAIL: destroying '%s', which the model does not hold\n", arg);
                        return false;
                }
                o->state = OBJ_DOUBT;
                return true;
        case 'X':
                if (daemon_killed)
                        return true;
                fprintf(stderr, "FAIL: writer: %s\n", line);
                return false;
        default:
                fprintf(stderr, "FAIL: bad report '%s'\n", line);
                return false;
        }
}

static int token_integrity(void) {
        char **paths = NULL;
        size_t n = 0;
        int bad = 0;
        if (soft_token_scan(data_dir, &paths, &n) < 0 || n != 1) {
                fprintf(stderr, "FAIL: expected one token file\n");
                return 1;
        }
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(paths[0], &db, SQLITE_OPEN_READWRITE, NULL);
        sqlite3_stmt *st = NULL;
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
        unsigned rows = 0;
        while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
                const char *s = (const char *)sqlite3_column_text(st, 0);
                rows++;
                if (!s || strcmp(s, "ok") != 0) {
                        fprintf(stderr, "FAIL: integrity_check: %s\n", s ? s : "(null)");
                        bad++;
                }
        }
        if (rc != SQLITE_OK || rows == 0) {
                fprintf(stderr, "FAIL: integrity_check could not run: %s\n", db ? sqlite3_errmsg(db) : "?");
                bad++;
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
        return bad;
}

static void scenario_durability(void) {
        CK_SLOT_ID slot;
        unsigned rounds = stress_scaled(200, 10);
        unsigned daemon_kills = 0, killed_before_listing = 0;
        uint64_t t0 = stress_now_ms();

        if (!start_daemon() || !load())
                return;
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        if (!tu_find_slot(f, LABEL, &slot)) {
                tu_failures++;
                return;
        }
        (void)f->C_Finalize(NULL);

        for (unsigned round = 0; round < rounds && tu_failures == 0; round++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        exit(1);
                /* A listing cut short by an earlier kill counts for nothing. */
                for (size_t i = 0; i < n_objs; i++)
                        objs[i].seen = 0;
                uint64_t wseed = stress_rand(&rng);
                pid_t pid = fork();
                if (pid < 0)
                        exit(1);
                if (pid == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        close(p[0]);
                        _exit(writer_child(slot, round, p[1], wseed));
                }
                close(p[1]);
                /* Every 10th round the daemon dies too (mid-write, most
                 * likely); one in 8 rounds kills the writer while it
                 * starts up. */
                bool kill_d = round % 10 == 9;
                bool early = !kill_d && stress_rand(&rng) % 8 == 0;
                bool listing_done = false, ok = true;
                char line[128];
                if (early)
                        stress_sleep_ms((unsigned)(stress_rand(&rng) % 6));
                else {
                        /* Follow the reports until the listing is complete. */
                        while (ok && !listing_done) {
                                int r = pipe_read_line(p[0], 60000, line, sizeof line);
                                if (r < 0) {
                                        fprintf(stderr, "FAIL: round %u: writer %s before its listing\n", round,
                                                r == -ETIMEDOUT ? "hangs" : "died");
                                        ok = false;
                                        break;
                                }
                                ok = dur_apply(line, false, &listing_done);
                        }
                        /* Then let it write for a few ms. */
                        uint64_t until = stress_now_ms() + 1 + stress_rand(&rng) % 12;
                        while (ok && stress_now_ms() < until) {
                                int r = pipe_read_line(p[0], (unsigned)(until - stress_now_ms()) + 1, line,
                                                       sizeof line);
                                if (r == -ETIMEDOUT)
                                        break;
                                if (r < 0) {
                                        fprintf(stderr, "FAIL: round %u: writer died\n", round);
                                        ok = false;
                                        break;
                                }
                                ok = dur_apply(line, false, &listing_done);
                        }
                }
                if (!listing_done)
                        killed_before_listing++;
                if (kill_d) {
                        kill_daemon();
                        daemon_kills++;
                        /* The writer sees the error (or is mid-report). */
                        stress_sleep_ms((unsigned)(stress_rand(&rng) % 3));
                }
                kill(pid, SIGKILL);
                int st;
                waitpid(pid, &st, 0);
                /* Whatever it reported before dying. */
                while (ok && pipe_read_line(p[0], 5000, line, sizeof line) == 0)
                        ok = dur_apply(line, kill_d, &listing_done);
                close(p[0]);
                if (!ok) {
                        tu_failures++;
                        break;
                }
                if (kill_d) {
                        if (!start_daemon()) {
                                tu_failures++;
                                break;
                        }
                } else
                        /* The dead writer's last request has run (or never
                         * will) before the next listing is taken. */
                        wait_clients(0);
        }

        /* A last crash, then the file itself, with the daemon stopped. */
        kill_daemon();
        int bad = token_integrity();
        tu_failures += (unsigned)bad;
        if (!start_daemon())
                return;
        /* The final listing, through the module, values included. */
        CK_SESSION_HANDLE h;
        unsigned bad_values = 0;
        for (size_t i = 0; i < n_objs; i++)
                objs[i].seen = 0;
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
        int n = list_data(h, -1, true, &bad_values);
        CHECK(n >= 0);
        tu_failures += bad_values;
        bool listing_done = false;
        if (!dur_apply("E", false, &listing_done))
                tu_failures++;
        (void)f->C_Finalize(NULL);
        unsigned present = 0;
        for (size_t i = 0; i < n_objs; i++)
                present += objs[i].state == OBJ_PRESENT;
        CHECK(n >= 0 && (unsigned)n == present);
        fprintf(stderr,
                "durability: %u rounds (%u netcad kills, %u writers killed before their listing), %u confirmed "
                "creates/destroys, %u in-doubt ops resolved, %u listings checked, %u objects at the end, "
                "%.1f s\n",
                rounds, daemon_kills, killed_before_listing, dur_ops, dur_doubts_resolved, dur_listed, present,
                (double)(stress_now_ms() - t0) / 1000.0);
        free(objs);
}

/* -------------------------------------------------------------- badinput */

static CK_SLOT_ID bi_slot;
static CK_SESSION_HANDLE bi_home;
static CK_OBJECT_HANDLE bi_key;

/* The normal client: a fresh session, a signature, a slot list. */
static bool normal_client_ok(const char *when) {
        CK_SESSION_HANDLE h;
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE data[32] = { 1, 2, 3 }, sig[128];
        CK_ULONG len = sizeof sig, n = 0;
        CK_RV rv;
        if ((rv = f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK || n < 1 ||
            (rv = f->C_OpenSession(bi_slot, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK ||
            (rv = f->C_SignInit(h, &mech, bi_key)) != CKR_OK ||
            (rv = f->C_Sign(h, data, sizeof data, sig, &len)) != CKR_OK || len != 64 ||
            (rv = f->C_CloseSession(h)) != CKR_OK) {
                tu_failures++;
                fprintf(stderr, "FAIL: normal client %s: %s\n", when, tu_rv_name(rv));
                return false;
        }
        return true;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

static void put_hdr(uint8_t *p, uint32_t len, uint32_t id, uint16_t op, uint16_t flags) {
        put_be32(p, len);
        put_be32(p + 4, id);
        p[8] = (uint8_t)(op >> 8);
        p[9] = (uint8_t)op;
        p[10] = (uint8_t)(flags >> 8);
        p[11] = (uint8_t)flags;
}

static int hello_conn(void) {
        int fd = raw_connect(sock);
        if (fd < 0) {
                fprintf(stderr, "FAIL: connect: %s\n", strerror(-fd));
                return -1;
        }
        if (raw_hello(fd) < 0) {
                fprintf(stderr, "FAIL: HELLO refused\n");
                close(fd);
                return -1;
        }
        return fd;
}

/* Reads one reply: it must be an error reply for id with rv want. */
static bool expect_error_reply(int fd, uint32_t id, CK_RV want, const char *what) {
        uint8_t *frame;
        size_t len;
        int r = raw_read_frame(fd, 20000, &frame, &len);
        if (r < 0) {
                fprintf(stderr, "FAIL: %s: no reply (%s)\n", what, strerror(-r));
                return false;
        }
        struct wire_hdr h;
        bool ok = wire_hdr_parse(frame, &h) == 0 && h.id == id && (h.flags & WIRE_F_REPLY) &&
                  (h.flags & WIRE_F_ERROR) && len == WIRE_HDR_SIZE + 8;
        uint64_t rv = 0;
        for (size_t i = 0; ok && i < 8; i++)
                rv = rv << 8 | frame[WIRE_HDR_SIZE + i];
        if (!ok || rv != want) {
                fprintf(stderr, "FAIL: %s: reply id %u flags 0x%x len %zu rv %s, want error %s\n", what, h.id,
                        h.flags, len, tu_rv_name(rv), tu_rv_name(want));
                ok = false;
        }
        free(frame);
        return ok;
}

static void expect_dropped(const uint8_t *bytes, size_t n, bool after_hello, const char *what) {
        int fd = after_hello ? hello_conn() : raw_connect(sock);
        if (fd < 0) {
                tu_failures++;
                return;
        }
        if (raw_send_all(fd, bytes, n) < 0 || raw_wait_closed(fd, 20000) < 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: %s: connection not dropped\n", what);
        }
        close(fd);
}

static void bi_bad_headers(void) {
        uint8_t b[64];
        memset(b, 0xab, sizeof b);
        /* Length under the header's own 8 bytes. */
        put_hdr(b, 4, 7, WIRE_OP_PING, 0);
        expect_dropped(b, 16, true, "length 4");
        put_hdr(b, 0, 7, WIRE_OP_PING, 0);
        expect_dropped(b, 12, false, "length 0");
        /* Over the cap, by one byte and by far; nothing else sent. */
        put_hdr(b, WIRE_FRAME_MAX - 4 + 1, 8, WIRE_OP_GET_SLOT_LIST, 0);
        expect_dropped(b, 12, true, "length cap + 1");
        put_hdr(b, 0xffffffffu, 9, WIRE_OP_SIGN, 0);
        expect_dropped(b, 12, true, "length 4 GiB");
        /* A client may not send replies or events. */
        put_hdr(b, 8 + 8, 10, WIRE_OP_PING, WIRE_F_REPLY);
        expect_dropped(b, 20, true, "reply flag");
        put_hdr(b, 8 + 24, 0, WIRE_OP_EVENT, WIRE_F_EVENT);
        expect_dropped(b, 36, true, "event flag");
        /* Pure noise as the first bytes. */
        uint8_t noise[64];
        for (size_t i = 0; i < sizeof noise; i++)
                noise[i] = (uint8_t)stress_rand(&rng);
        noise[0] = 0xff;  /* a length far over the cap */
        expect_dropped(noise, sizeof noise, false, "noise");
}

static void bi_truncated(void) {
        /* A frame cut short by the client going away: header only, and
         * part of the payload. */
        uint8_t b[64] = { 0 };
        for (int k = 0; k < 2; k++) {
                int fd = hello_conn();
                if (fd < 0) {
                        tu_failures++;
                        return;
                }
                put_hdr(b, 8 + 9, 11, WIRE_OP_GET_SLOT_LIST, 0);
                (void)raw_send_all(fd, b, k == 0 ? 12 : 16);
                close(fd);
        }
        /* A complete frame whose payload is too short for its op. */
        int fd = hello_conn();
        if (fd < 0) {
                tu_failures++;
                return;
        }
        put_hdr(b, 8 + 3, 12, WIRE_OP_GET_TOKEN_INFO, 0);
        bool ok = raw_send_all(fd, b, 15) == 0 && expect_error_reply(fd, 12, CKR_ARGUMENTS_BAD, "short payload");
        /* An empty payload for an op that needs one. */
        put_hdr(b, 8, 13, WIRE_OP_SIGN, 0);
        ok = ok && raw_send_all(fd, b, 12) == 0 && expect_error_reply(fd, 13, CKR_ARGUMENTS_BAD, "empty payload");
        /* A blob whose length runs past the frame. */
        put_hdr(b, 8 + 8 + 4 + 2, 14, WIRE_OP_SEED_RANDOM, 0);
        memset(b + 12, 0, 8);
        put_be32(b + 20, 1000);
        ok = ok && raw_send_all(fd, b, 26) == 0 && expect_error_reply(fd, 14, CKR_ARGUMENTS_BAD, "blob overrun");
        /* The connection still works. */
        ok = ok && raw_ping(fd, 15) == 0;
        if (!ok)
                tu_failures++;
        close(fd);
}

static void bi_unknown_ops(void) {
        /* Numbers the op table does not hold (checked below, so that new
         * ops do not turn this into a test of them). */
        static const uint16_t ops[] = { 0, 4, 15, 127, 255, 511, 999, 0xffff, WIRE_OP_EVENT };
        int fd = hello_conn();
        if (fd < 0) {
                tu_failures++;
                return;
        }
        bool ok = true;
        for (size_t i = 0; ok && i < ELEMENTSOF(ops); i++) {
                if (ops[i] != WIRE_OP_EVENT && wire_op_lookup(ops[i])) {
                        fprintf(stderr, "FAIL: op %u is in the op table now: pick another unknown one\n", ops[i]);
                        ok = false;
                        break;
                }
                uint8_t b[12 + 16];
                memset(b, 0x5a, sizeof b);
                put_hdr(b, 8 + 16, 100 + (uint32_t)i, ops[i], 0);
                char what[32];
                snprintf(what, sizeof what, "op %u", ops[i]);
                ok = raw_send_all(fd, b, sizeof b) == 0 &&
                     expect_error_reply(fd, 100 + (uint32_t)i, CKR_FUNCTION_NOT_SUPPORTED, what);
        }
        ok = ok && raw_ping(fd, 200) == 0;
        if (!ok)
                tu_failures++;
        close(fd);
}

static void bi_trailing_garbage(void) {
        int fd = hello_conn();
        if (fd < 0) {
                tu_failures++;
                return;
        }
        /* GET_SLOT_LIST "yq" (1 + 9 bytes), then 16 bytes nobody asked for. */
        uint8_t b[12 + 10 + 16];
        memset(b, 0, sizeof b);
        put_hdr(b, 8 + 10 + 16, 300, WIRE_OP_GET_SLOT_LIST, 0);
        b[12] = 1;
        b[13] = 1; /* is_null */
        memset(b + 22, 0xee, 16);
        bool ok = raw_send_all(fd, b, sizeof b) == 0 &&
                  expect_error_reply(fd, 300, CKR_ARGUMENTS_BAD, "trailing garbage");
        if (!ok)
                tu_failures++;
        close(fd);
}

/* A PING with a payload (its grammar is empty): an error reply or a drop,
 * never silence; a module client is served after it. */
static void scenario_ping_payload(void) {
        if (!start_daemon())
                return;
        int fd = hello_conn();
        if (fd < 0) {
                tu_failures++;
                return;
        }
        uint8_t b[16] = { 0 };
        put_hdr(b, 8 + 4, 301, WIRE_OP_PING, 0);
        uint8_t *frame;
        size_t len;
        int r = raw_send_all(fd, b, sizeof b);
        if (r == 0)
                r = raw_read_frame(fd, 20000, &frame, &len);
        if (r == 0) {
                struct wire_hdr h;
                if (wire_hdr_parse(frame, &h) < 0 || h.id != 301 || !(h.flags & WIRE_F_ERROR)) {
                        fprintf(stderr, "FAIL: a PING with a payload got a normal reply\n");
                        tu_failures++;
                }
                free(frame);
        } else if (r != -ECONNRESET) {
                fprintf(stderr, "FAIL: a PING with a payload: no reply and no drop within 20 s\n");
                tu_failures++;
        }
        close(fd);
        /* And a module client is served after it. */
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE h;
        CK_BYTE rnd[16];
        if (!load())
                return;
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        if (!tu_find_slot(f, LABEL, &slot)) {
                fprintf(stderr, "FAIL: token not found after the PING with a payload\n");
                tu_failures++;
        } else if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK ||
                   f->C_GenerateRandom(h, rnd, sizeof rnd) != CKR_OK || f->C_CloseSession(h) != CKR_OK) {
                fprintf(stderr, "FAIL: a module client after the PING with a payload\n");
                tu_failures++;
        }
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* Random frames with valid lengths and flags: every one gets exactly one
 * reply with its id, or (a HELLO's grammar broken) the connection is
 * dropped; a new connection is made then. */
static void bi_random_frames(unsigned count) {
        static const uint16_t known[] = { WIRE_OP_PING, WIRE_OP_HELLO, WIRE_OP_GET_SLOT_LIST, WIRE_OP_GET_TOKEN_INFO,
                                          WIRE_OP_OPEN_SESSION, WIRE_OP_CLOSE_SESSION, WIRE_OP_GET_SESSION_INFO,
                                          WIRE_OP_CREATE_OBJECT, WIRE_OP_FIND_OBJECTS_INIT, WIRE_OP_GET_ATTRIBUTE_VALUE,
                                          WIRE_OP_SIGN_INIT, WIRE_OP_SIGN, WIRE_OP_FIND_OBJECTS,
                                          WIRE_OP_MGMT_STATUS, WIRE_OP_MGMT_TOKEN_CREATE_SOFT, WIRE_OP_MGMT_TOKEN_DELETE,
                                          WIRE_OP_DIGEST_INIT, WIRE_OP_GET_MECHANISM_LIST };
        int fd = hello_conn();
        unsigned drops = 0, replies = 0;
        uint8_t b[12 + 300];
        for (unsigned i = 0; i < count && fd >= 0; i++) {
                uint64_t x = stress_rand(&rng);
                uint16_t op = x % 4 == 0 ? (uint16_t)(x >> 8) : known[(x >> 8) % ELEMENTSOF(known)];
                size_t plen = (size_t)(stress_rand(&rng) % 300);
                if (op == WIRE_OP_PING)
                        plen = 0;  /* see bi_trailing_garbage */
                /* Mostly small numbers, so that fields get read a bit. */
                for (size_t k = 0; k < plen; k++) {
                        uint64_t y = stress_rand(&rng);
                        b[12 + k] = y % 3 == 0 ? (uint8_t)(y >> 16) : 0;
                }
                uint32_t id = 1000 + i;
                put_hdr(b, 8 + (uint32_t)plen, id, op, 0);
                if (raw_send_all(fd, b, 12 + plen) < 0) {
                        fprintf(stderr, "FAIL: random frame %u: send failed\n", i);
                        tu_failures++;
                        break;
                }
                uint8_t *frame;
                size_t len;
                int r;
                /* Skip pushed events; a MGMT op may create tokens. */
                for (;;) {
                        r = raw_read_frame(fd, 20000, &frame, &len);
                        if (r < 0 || !(frame[11] & WIRE_F_EVENT))
                                break;
                        free(frame);
                }
                if (op == WIRE_OP_HELLO && (r >= 0 || r == -ECONNRESET)) {
                        /* A second HELLO: dropped when malformed, else
                         * answered; a refusal (wrong version) is answered
                         * and then the connection closes.  Either way, on
                         * with a new connection. */
                        if (r >= 0)
                                free(frame);
                        drops++;
                        close(fd);
                        fd = hello_conn();
                        continue;
                }
                if (r < 0) {
                        fprintf(stderr, "FAIL: random frame %u (op %u, %zu bytes): %s\n", i, op, plen,
                                r == -ETIMEDOUT ? "no reply" : "dropped");
                        tu_failures++;
                        break;
                }
                struct wire_hdr h;
                if (wire_hdr_parse(frame, &h) < 0 || h.id != id || !(h.flags & WIRE_F_REPLY)) {
                        fprintf(stderr, "FAIL: random frame %u: reply id %u flags 0x%x\n", i, h.id, h.flags);
                        tu_failures++;
                }
                replies++;
                free(frame);
        }
        if (fd >= 0) {
                CHECK(raw_ping(fd, 7) == 0);
                close(fd);
        }
        fprintf(stderr, "random frames: %u replies, %u drops\n", replies, drops);
}

static void bi_pre_hello(void) {
        int fd = raw_connect(sock);
        if (fd < 0) {
                tu_failures++;
                return;
        }
        uint8_t b[12 + 9] = { 0 };
        put_hdr(b, 8 + 9, 5, WIRE_OP_GET_TOKEN_INFO, 0);
        /* Not a valid payload for the op either: refused all the same. */
        if (raw_send_all(fd, b, sizeof b) < 0 ||
            !expect_error_reply(fd, 5, CKR_CRYPTOKI_NOT_INITIALIZED, "before HELLO"))
                tu_failures++;
        close(fd);
}

/* The daemon's NETCA_FRAME_TIMEOUT_MS in the badinput scenario. */
#define STALL_TIMEOUT_MS 1500

/* Half frames that stall, while the normal client works. */
static void bi_stall(unsigned nconn) {
        int fds[32];
        static uint8_t half[WIRE_FRAME_MAX / 2];
        long rss0 = proc_rss_kb(daemon_pid);
        if (nconn > ELEMENTSOF(fds))
                nconn = ELEMENTSOF(fds);
        memset(half, 0x33, sizeof half);
        for (unsigned i = 0; i < nconn; i++) {
                fds[i] = hello_conn();
                if (fds[i] < 0) {
                        tu_failures++;
                        continue;
                }
                /* Most claim the largest frame allowed; a few stop inside
                 * the header. */
                size_t n = i % 4 == 3 ? 7 : sizeof half;
                put_hdr(half, WIRE_FRAME_MAX - 4, 400 + i, WIRE_OP_CREATE_OBJECT, 0);
                if (raw_send_all(fds[i], half, n) < 0) {
                        fprintf(stderr, "FAIL: stall %u: the daemon did not take half a frame\n", i);
                        tu_failures++;
                }
        }
        stress_sleep_ms(200);
        normal_client_ok("during stalled half frames");
        /* A stalled connection does not block the others' pings either. */
        int fd = hello_conn();
        CHECK(fd >= 0 && raw_ping(fd, 1) == 0);
        if (fd >= 0)
                close(fd);
        check_rss(rss0, (long)nconn * (WIRE_FRAME_MAX / 1024) + 8192, "with stalled half frames");
        /* Then each stalled client is dropped: the daemon closes its end
         * once the frame timeout (STALL_TIMEOUT_MS here) has passed. */
        for (unsigned i = 0; i < nconn; i++) {
                if (fds[i] < 0)
                        continue;
                struct pollfd p = { .fd = fds[i], .events = POLLIN };
                int n = poll(&p, 1, STALL_TIMEOUT_MS + 5000);
                char b[64];
                ssize_t got = n > 0 ? recv(fds[i], b, sizeof b, MSG_DONTWAIT) : 1;
                if (got > 0) {
                        fprintf(stderr, "FAIL: stall %u: a client stalled inside a frame was not dropped "
                                        "within %d ms (%s)\n",
                                i, STALL_TIMEOUT_MS + 5000, n > 0 ? "it got data" : "still open");
                        tu_failures++;
                }
                close(fds[i]);
        }
}

/* Bytes we sent on fd that the daemon has not read yet (SIOCOUTQ), -1. */
static long unread_by_daemon(int fd) {
        int n = 0;
        return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

/* Has the daemon stopped reading fd?  Asked when a send would block: the
 * bytes on fd it has not read (and, for requests run by its workers, its
 * count of PKCS#11 requests served) must not move across a sync with its
 * event loop: SYNC_PINGS round trips on another connection (PING is
 * answered on the loop thread, and each round trip is one more pass of
 * the loop, which reads every readable connection it has not stopped
 * reading).  A daemon that is only slow moves them: no time is measured. */
#define SYNC_PINGS 3
static bool daemon_stopped_reading(int fd, int sync_fd, bool count_requests) {
        long q0 = unread_by_daemon(fd);
        double r0 = count_requests ? raw_status_number(sock, "p11_requests") : 0;
        for (uint32_t i = 0; i < SYNC_PINGS; i++)
                if (raw_ping(sync_fd, 900 + i) != 0) {
                        fprintf(stderr, "FAIL: flood: a PING on another connection got no answer\n");
                        tu_failures++;
                        return true;
                }
        long q1 = unread_by_daemon(fd);
        double r1 = count_requests ? raw_status_number(sock, "p11_requests") : 0;
        return q0 > 0 && q1 == q0 && r1 == r0 && r0 >= 0;
}

/* Requests flooded by a client that never reads its replies: the daemon
 * must stop reading it (bounded output), not buffer without end.  That it
 * has stopped is a state (daemon_stopped_reading), not a time without
 * progress; the deadline is only a hang guard. */
static void bi_flood(uint16_t op) {
        long rss0 = proc_rss_kb(daemon_pid);
        int fd = hello_conn(), sync_fd = hello_conn();
        if (fd < 0 || sync_fd < 0) {
                tu_failures++;
                if (fd >= 0)
                        close(fd);
                if (sync_fd >= 0)
                        close(sync_fd);
                return;
        }
        /* Small kernel buffers on our side, so the daemon's limit shows. */
        int sz = 64 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        uint8_t batch[4096];
        size_t one = op == WIRE_OP_PING ? 12 : 12 + 8, per = sizeof batch / one;
        for (size_t k = 0; k < per; k++) {
                uint8_t *p = batch + k * one;
                put_hdr(p, (uint32_t)one - 4, (uint32_t)k + 1, op, 0);
                if (op != WIRE_OP_PING)
                        memset(p + 12, 0, 8);  /* slot 0 */
                if (op != WIRE_OP_PING)
                        p[19] = (uint8_t)bi_slot;
        }
        const size_t limit = 256u << 20;
        size_t sent = 0, off = 0, total = per * one;
        uint64_t guard = stress_now_ms() + 120000;
        bool stopped = false;
        unsigned syncs = 0;
        while (sent <= limit) {
                ssize_t n = send(fd, batch + off, total - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        sent += (size_t)n;
                        off = (off + (size_t)n) % total;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        fprintf(stderr, "FAIL: flood: send: %s\n", strerror(errno));
                        tu_failures++;
                        break;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                /* Full: the daemon is behind, or has stopped reading us. */
                syncs++;
                if (daemon_stopped_reading(fd, sync_fd, op != WIRE_OP_PING)) {
                        stopped = true;
                        break;
                }
                if (stress_now_ms() > guard) {
                        fprintf(stderr, "FAIL: flood: the daemon neither read on nor stopped reading within the "
                                        "120 s hang guard\n");
                        tu_failures++;
                        break;
                }
        }
        long unread = unread_by_daemon(fd);
        fprintf(stderr, "flood (op %u): %zu bytes of requests sent, %ld of them unread by the daemon, %s "
                        "(%u syncs with its loop)\n", op, sent, unread, stopped ? "which stopped reading" : "at the end",
                syncs);
        if (sent > limit) {
                tu_failures++;
                fprintf(stderr, "FAIL: flood: the daemon read %zu bytes of requests without its replies being "
                                "read: no backpressure\n", sent);
        } else
                CHECK(stopped);
        normal_client_ok("during a flood");
        check_rss(rss0, 48 * 1024, "during a flood");
        close(sync_fd);
        close(fd);
}

/* NETCA_STRESS_ONLY=name runs only that part of a badinput round (to find
 * which one a failure comes from): headers, truncated, unknown, trailing,
 * prehello, random, stall, flood. */
static bool bi_wanted(const char *name) {
        const char *only = getenv("NETCA_STRESS_ONLY");
        return !only || !*only || strcmp(only, name) == 0;
}

static void bi_round(unsigned rnd) {
        struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "headers", bi_bad_headers },   { "truncated", bi_truncated },
                { "unknown", bi_unknown_ops },   { "trailing", bi_trailing_garbage },
                { "prehello", bi_pre_hello },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (!bi_wanted(cases[i].name))
                        continue;
                unsigned before = tu_failures;
                cases[i].fn();
                if (!daemon_alive()) {
                        tu_failures++;
                        return;
                }
                normal_client_ok(cases[i].name);
                if (tu_failures != before)
                        fprintf(stderr, "round %u: '%s' failed\n", rnd, cases[i].name);
        }
        if (bi_wanted("random")) {
                bi_random_frames(stress_scaled(400, 20));
                CHECK(daemon_alive());
                normal_client_ok("after random frames");
        }
        if (bi_wanted("stall")) {
                bi_stall(stress_scaled(16, 4));
                CHECK(daemon_alive());
                normal_client_ok("after stalled half frames");
        }
        if (bi_wanted("flood")) {
                bi_flood(WIRE_OP_PING);
                bi_flood(WIRE_OP_GET_TOKEN_INFO);
                CHECK(daemon_alive());
                normal_client_ok("after floods");
        }
}

static void scenario_badinput(void) {
        unsigned rounds = stress_scaled(4, 2);
        char ms[16];
        snprintf(ms, sizeof ms, "%d", STALL_TIMEOUT_MS);
        setenv("NETCA_FRAME_TIMEOUT_MS", ms, 1);
        if (!start_daemon() || !load())
                return;
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        if (!tu_find_slot(f, LABEL, &bi_slot)) {
                tu_failures++;
                return;
        }
        CK_OBJECT_HANDLE pub;
        REQUIRE_RV(f->C_OpenSession(bi_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &bi_home), CKR_OK);
        REQUIRE_RV(f->C_Login(bi_home, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        REQUIRE_RV(stress_gen_p256(f, bi_home, KEY_LABEL, &pub, &bi_key), CKR_OK);
        if (!normal_client_ok("at start"))
                return;
        /* Round 1 warms up (buffers, arenas); later rounds must not add. */
        bi_round(0);
        long fd1 = settle(1), rss1 = proc_rss_kb(daemon_pid);
        fprintf(stderr, "after round 1: %ld fds, RSS %ld kB\n", fd1, rss1);
        for (unsigned r = 1; r < rounds && daemon_pid > 0; r++) {
                bi_round(r);
                if (daemon_pid > 0) {
                        long fdn = settle(1);
                        fprintf(stderr, "after round %u: %ld fds, RSS %ld kB\n", r + 1, fdn,
                                proc_rss_kb(daemon_pid));
                }
        }
        if (daemon_pid <= 0)
                return;
        settle(1);
        check_fds_back(fd1, "badinput");
        /* The stalled and flooding clients hold up to ~1 MiB and ~8 MiB
         * while connected; freed, they may stay in malloc's arenas, so the
         * bound is against the warmed-up level. */
        check_rss(rss1, 4096, "badinput, last round vs first");
        normal_client_ok("at the end");
        CHECK_RV(f->C_Logout(bi_home), CKR_OK);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s load|kill|durability|badinput|ping-payload\n", argv[0]);
                return 2;
        }
        /* Writes to dead peers must be errors, not signals. */
        signal(SIGPIPE, SIG_IGN);
        so_path = tu_env_path("NETCA_PKCS11_MODULE");
        netcad_path = tu_env_path("NETCA_NETCAD");
        rng = stress_seed();
        setup_dirs();
        /* glibc gives each of the daemon's worker threads its own malloc
         * arena, and memory freed in one is not reused by another: after
         * bursts (a flood's 8 MiB output buffer is built by whichever
         * workers ran) RSS creeps up arena by arena although nothing leaks.
         * One arena makes RSS a measure of leaks.  (Inherited by netcad; an
         * explicit MALLOC_ARENA_MAX in the environment wins.) */
        setenv("MALLOC_ARENA_MAX", "1", 0);

        const char *s = argv[1];
        if (strcmp(s, "load") == 0)
                scenario_load();
        else if (strcmp(s, "kill") == 0)
                scenario_kill();
        else if (strcmp(s, "durability") == 0)
                scenario_durability();
        else if (strcmp(s, "badinput") == 0)
                scenario_badinput();
        else if (strcmp(s, "ping-payload") == 0)
                scenario_ping_payload();
        else {
                fprintf(stderr, "unknown scenario %s\n", s);
                cleanup();
                return 2;
        }
        cleanup();
        if (tu_failures) {
                fprintf(stderr, "stress %s: %u check(s) failed\n", s, tu_failures);
                return 1;
        }
        fprintf(stderr, "stress %s: passed\n", s);
        return 0;
}
