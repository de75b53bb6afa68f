/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Robustness of netca-pkcs11.so with a real netcad: one executable, one
 * scenario per argument (each is its own meson test):
 *
 *   fork       the child gets CKR_CRYPTOKI_NOT_INITIALIZED, then works after
 *              its own C_Initialize; the parent's session and login survive
 *   restart    netcad killed and started again: the next call works, old
 *              sessions are CKR_SESSION_HANDLE_INVALID, the slot id stays
 *   nodaemon   NETCA_AUTOSTART=0 and no daemon: zero slots; then autostart
 *              (NETCA_DAEMON) brings a daemon and the slot appears
 *   uid        another uid (setpriv to nobody) is refused; root still served
 *   killed     a client killed with SIGKILL holding sessions and a login:
 *              its sessions are closed and its login dropped
 *   finalize   C_Finalize wakes a thread blocked in C_WaitForSlotEvent
 *   threads    many threads with calls in flight on one connection
 *   events     a token created through the management ops wakes a blocked
 *              C_WaitForSlotEvent with its new slot id
 *   version    a daemon speaking another protocol major version (or
 *              garbage) gives a clear CK_RV, never a crash or a hang; a
 *              real netcad on the socket afterwards serves the module
 *   cache      (and cache-nothreads: the same with
 *              CKF_LIBRARY_CANT_CREATE_OS_THREADS, as NSS initializes)
 *              the module answers repeated info calls and enumerations
 *              itself (the daemon's request count barely moves), and what
 *              it keeps follows every change: a login by another session of
 *              the process, another client's wrong PIN, objects it creates
 *              and destroys, a token that comes and goes, a daemon restart
 *
 * Environment (from meson): NETCA_PKCS11_MODULE, NETCA_NETCAD. */
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "common/wire.h"
#include "stress-util.h"
#include "testutil.h"

#define LABEL "robust"
#define PIN(s) (CK_UTF8CHAR_PTR)(s), (CK_ULONG)strlen(s)

static const char *so_path, *netcad_path;
static char *dir, *data_dir, *sock;
static pid_t daemon_pid = -1;
static void *module;
static CK_FUNCTION_LIST_PTR f;

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Temp dir with a token; the daemon is started by the scenario. */
static void setup_dirs(void) {
        dir = tu_mkdtemp("robust");
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

static bool load(void) {
        if (!module)
                f = tu_load_module(so_path, &module);
        return f != NULL;
}

static void cleanup(void) {
        if (f)
                (void)f->C_Finalize(NULL);
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        tu_rmrf(dir);
}

/* C_Initialize's arguments for init_and_find (NULL: none). */
static CK_C_INITIALIZE_ARGS *init_args;

static bool init_and_find(CK_SLOT_ID *slot) {
        CK_RV rv = f->C_Initialize(init_args);
        if (rv != CKR_OK) {
                fprintf(stderr, "FATAL: C_Initialize = %s\n", tu_rv_name(rv));
                tu_failures++;
                return false;
        }
        if (!tu_find_slot(f, LABEL, slot)) {
                fprintf(stderr, "FATAL: token '%s' not found\n", LABEL);
                tu_failures++;
                return false;
        }
        return true;
}

/* ---- a raw wire client (for what PKCS#11 cannot show): tests/stress/stress-util.h ---- */

/* MGMT_TOKEN_LIST: the token's "sessions" and "logged_in" counts. */
static int raw_token_counts(const char *path, double *ret_sessions, double *ret_logged_in) {
        int fd = raw_connect(path);
        if (fd < 0)
                return fd;
        int r = raw_hello(fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_MGMT_TOKEN_LIST, 2, 0);
        wire_put_json(&m, "{}");
        r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        uint8_t *frame = NULL;
        size_t len;
        if (r == 0)
                r = raw_read_frame(fd, 20000, &frame, &len);
        close(fd);
        if (r < 0)
                return r;
        uint64_t status;
        char *json = NULL;
        r = -EBADMSG;
        if (wire_msg_init_read(&m, frame, len) == 0 && wire_get_u64(&m, &status) && status == 0 &&
            wire_get_json(&m, &json) && json) {
                cJSON *o = cJSON_Parse(json);
                cJSON *toks = cJSON_GetObjectItem(o, "tokens");
                cJSON *t;
                cJSON_ArrayForEach(t, toks) {
                        cJSON *l = cJSON_GetObjectItem(t, "label");
                        if (!cJSON_IsString(l) || strcmp(l->valuestring, LABEL) != 0)
                                continue;
                        cJSON *s = cJSON_GetObjectItem(t, "sessions");
                        cJSON *li = cJSON_GetObjectItem(t, "logged_in");
                        if (cJSON_IsNumber(s) && cJSON_IsNumber(li)) {
                                *ret_sessions = s->valuedouble;
                                *ret_logged_in = li->valuedouble;
                                r = 0;
                        }
                }
                cJSON_Delete(o);
        }
        free(json);
        free(frame);
        return r;
}

/* ---- scenarios ---- */

static void scenario_fork(void) {
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE h;
        CK_SESSION_INFO si;
        CK_BYTE rnd[16];

        if (!start_daemon() || !load() || !init_and_find(&slot))
                return;
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
        REQUIRE_RV(f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);

        /* Twice: a child that exits without a word, and one that
         * initializes, works and finalizes. */
        for (int round = 0; round < 2; round++) {
                pid_t pid = fork();
                if (pid < 0) {
                        tu_failures++;
                        return;
                }
                if (pid == 0) {
                        CK_ULONG n = 0;
                        CK_SESSION_HANDLE ch;
                        CK_SLOT_ID cs;
                        tu_failures = 0;
                        CHECK_RV(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
                        CHECK_RV(f->C_GetSessionInfo(h, &si), CKR_CRYPTOKI_NOT_INITIALIZED);
                        CHECK_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
                        if (round == 1) {
                                CHECK_RV(f->C_Initialize(NULL), CKR_OK);
                                CHECK(tu_find_slot(f, LABEL, &cs) && cs == slot);
                                CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ch), CKR_OK);
                                CHECK_RV(f->C_GetSessionInfo(ch, &si), CKR_OK);
                                /* The parent's login is the parent's. */
                                CHECK(si.state == CKS_RO_PUBLIC_SESSION);
                                CHECK_RV(f->C_GenerateRandom(ch, rnd, sizeof rnd), CKR_OK);
                                CHECK_RV(f->C_Finalize(NULL), CKR_OK);
                        }
                        _exit(tu_failures ? 1 : 0);
                }
                int st;
                waitpid(pid, &st, 0);
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                        tu_failures++;
                        fprintf(stderr, "FAIL: fork child (round %d) status 0x%x\n", round, st);
                }
                /* The parent is unaffected. */
                CHECK_RV(f->C_GetSessionInfo(h, &si), CKR_OK);
                CHECK(si.state == CKS_RW_USER_FUNCTIONS);
                CHECK_RV(f->C_GenerateRandom(h, rnd, sizeof rnd), CKR_OK);
        }
        CHECK_RV(f->C_Logout(h), CKR_OK);
        CHECK_RV(f->C_CloseSession(h), CKR_OK);
}

static void scenario_restart(void) {
        CK_SLOT_ID slot, slot2 = (CK_SLOT_ID)-1;
        CK_SESSION_HANDLE h, h2;
        CK_SESSION_INFO si;

        if (!start_daemon() || !load() || !init_and_find(&slot))
                return;
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
        REQUIRE_RV(f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);

        for (int round = 0; round < 2; round++) {
                /* Round 0: a crash (SIGKILL); round 1: a clean stop. */
                if (round == 0)
                        tu_kill_daemon(daemon_pid);
                else
                        tu_stop_daemon(daemon_pid);
                daemon_pid = -1;
                if (!start_daemon())
                        return;
                CHECK(tu_find_slot(f, LABEL, &slot2));
                CHECK(slot2 == slot);
                CHECK_RV(f->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
                CHECK_RV(f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)), CKR_SESSION_HANDLE_INVALID);
                REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h2), CKR_OK);
                /* Never the old handle, even if the new daemon reuses its number. */
                CHECK(h2 != h);
                CHECK_RV(f->C_GetSessionInfo(h2, &si), CKR_OK);
                CHECK(si.state == CKS_RW_PUBLIC_SESSION);
                CHECK_RV(f->C_Login(h2, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
                CHECK_RV(f->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
                h = h2;
        }
        CHECK_RV(f->C_CloseSession(h), CKR_OK);
}

static pid_t socket_peer_pid(const char *path) {
        int fd = raw_connect(path);
        if (fd < 0)
                return -1;
        struct ucred cred;
        socklen_t len = sizeof cred;
        pid_t pid = -1;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
                pid = cred.pid;
        close(fd);
        return pid;
}

static void scenario_nodaemon(void) {
        CK_ULONG n = 99;
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        CK_SESSION_HANDLE h;
        CK_SLOT_ID slot;

        if (!load())
                return;
        /* No daemon, no autostart: initializes, zero slots. */
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        CHECK_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
        CHECK(n == 0);
        CHECK_RV(f->C_GetSlotInfo(0, &si), CKR_SLOT_ID_INVALID);
        CHECK_RV(f->C_GetTokenInfo(0, &ti), CKR_SLOT_ID_INVALID);
        CHECK_RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_SLOT_ID_INVALID);
        CHECK_RV(f->C_GetSessionInfo(1, NULL), CKR_ARGUMENTS_BAD);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        CHECK(!tu_socket_alive(sock));

        /* Autostart: the module starts netcad itself. */
        setenv("NETCA_AUTOSTART", "1", 1);
        setenv("NETCA_DAEMON", netcad_path, 1);
        setenv("NETCA_DATA_DIR", data_dir, 1);
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        CHECK(tu_find_slot(f, LABEL, &slot));
        CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        pid_t pid = socket_peer_pid(sock);
        CHECK(pid > 0);
        if (pid > 0) {
                /* Not our child: stop it and wait for it to go. */
                kill(pid, SIGTERM);
                for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
                        sleep_ms(50);
                if (kill(pid, 0) == 0)
                        kill(pid, SIGKILL);
        }
}

static int uid_child(const char *path) {
        /* Running as nobody: the connection must not get anywhere. */
        int fd = raw_connect(path);
        if (fd < 0) {
                /* The socket is open to all here: not reaching it proves nothing. */
                fprintf(stderr, "FAIL: uid child could not connect: %s\n", strerror(-fd));
                return 3;
        }
        int r = raw_hello(fd);
        close(fd);
        if (r == 0) {
                fprintf(stderr, "FAIL: uid %u was served by the daemon\n", (unsigned)getuid());
                return 1;
        }
        fprintf(stderr, "uid child: refused (%s)\n", strerror(-r));
        return 0;
}

static void scenario_uid(void) {
        CK_SLOT_ID slot;
        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: needs root\n");
                exit(77);
        }
        if (access("/usr/bin/setpriv", X_OK) < 0) {
                fprintf(stderr, "SKIP: no setpriv\n");
                exit(77);
        }
        /* The daemon logs to a file we can read afterwards. */
        char *log = NULL, *probe = NULL;
        if (asprintf(&log, "%s/netcad.log", dir) < 0 || asprintf(&probe, "%s/uid-probe", dir) < 0)
                exit(1);
        setenv("NETCA_LOG_FILE", log, 1);
        bool started = start_daemon();
        unsetenv("NETCA_LOG_FILE");
        if (!started)
                return;
        /* Let others reach the socket: only the uid check stands. */
        chmod(dir, 0755);
        chmod(sock, 0777);
        /* A copy of this program that nobody may run, whatever the
         * permissions of the build directory. */
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        REQUIRE(n >= 0);
        self[n] = '\0';
        int in = open(self, O_RDONLY | O_CLOEXEC), out = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        char buf[65536];
        ssize_t got;
        bool copied = in >= 0 && out >= 0;
        while (copied && (got = read(in, buf, sizeof buf)) > 0)
                copied = write(out, buf, (size_t)got) == got;
        if (in >= 0)
                close(in);
        if (out >= 0)
                close(out);
        CHECK(copied);
        pid_t pid = fork();
        if (pid == 0) {
                execl("/usr/bin/setpriv", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", probe,
                      "uid-child", sock, (char *)NULL);
                _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: uid child status 0x%x\n", st);
        }
        /* ... and the refusal is logged: netcad writes the line before it
         * closes the connection, and the child saw the close, so the line
         * is there now (no waiting). */
        bool logged = false;
        FILE *lf = fopen(log, "re");
        char line[1024];
        while (lf && fgets(line, sizeof line, lf))
                if (strstr(line, "refused connection from uid 65534"))
                        logged = true;
        if (lf)
                fclose(lf);
        CHECK(logged);
        free(log);
        free(probe);
        /* The daemon still serves its own user. */
        CHECK(tu_socket_alive(sock));
        if (!load() || !init_and_find(&slot))
                return;
        CK_SESSION_HANDLE h;
        CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
}

static void scenario_killed(void) {
        CK_SLOT_ID slot;
        CK_TOKEN_INFO ti;
        int ready[2];
        double sessions = -1, logged_in = -1;

        if (!start_daemon())
                return;
        REQUIRE(pipe2(ready, O_CLOEXEC) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                /* The victim: sessions and a login, then wait to be killed. */
                CK_SESSION_HANDLE h;
                close(ready[0]);
                if (!load() || !init_and_find(&slot))
                        _exit(1);
                for (int i = 0; i < 3; i++)
                        if (f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h) != CKR_OK)
                                _exit(1);
                if (f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)) != CKR_OK)
                        _exit(1);
                if (write(ready[1], "r", 1) != 1)
                        _exit(1);
                for (;;)
                        pause();
        }
        close(ready[1]);
        char c;
        if (read(ready[0], &c, 1) != 1) {
                tu_failures++;
                fprintf(stderr, "FATAL: the victim did not get ready\n");
                waitpid(pid, NULL, 0);
                return;
        }
        close(ready[0]);

        if (!load() || !init_and_find(&slot)) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return;
        }
        /* Token info counts this process's sessions only (none). */
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 0);
        CHECK(raw_token_counts(sock, &sessions, &logged_in) == 0);
        CHECK(sessions == 3 && logged_in == 1);

        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);

        /* The daemon notices the disconnect on its own time (the dead
         * client's sessions are closed by a job after its connection is
         * gone): wait for the state, then check.  The bound is a hang guard
         * only, not a speed asserted. */
        uint64_t guard = stress_now_ms() + 60000;
        while (stress_now_ms() < guard) {
                if (raw_token_counts(sock, &sessions, &logged_in) == 0 && sessions == 0 && logged_in == 0)
                        break;
                sleep_ms(10);
        }
        CHECK(raw_token_counts(sock, &sessions, &logged_in) == 0);
        CHECK(sessions == 0 && logged_in == 0);
}

static volatile CK_RV waiter_rv = CKR_GENERAL_ERROR;
static volatile int waiter_started;

static void *waiter_main(void *arg) {
        CK_SLOT_ID s;
        (void)arg;
        __atomic_store_n(&waiter_started, 1, __ATOMIC_SEQ_CST);
        waiter_rv = f->C_WaitForSlotEvent(0, &s, NULL);
        return NULL;
}

static void scenario_finalize(void) {
        CK_SLOT_ID slot, s;
        if (!start_daemon() || !load() || !init_and_find(&slot))
                return;
        CHECK_RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s, NULL), CKR_NO_EVENT);
        CHECK_RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);

        for (int round = 0; round < 2; round++) {
                pthread_t t;
                waiter_rv = CKR_GENERAL_ERROR;
                waiter_started = 0;
                if (round == 1)
                        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
                if (pthread_create(&t, NULL, waiter_main, NULL) != 0) {
                        tu_failures++;
                        return;
                }
                while (!__atomic_load_n(&waiter_started, __ATOMIC_SEQ_CST))
                        sleep_ms(10);
                /* Give it time to block (if it has not, it still must get
                 * CKR_CRYPTOKI_NOT_INITIALIZED). */
                sleep_ms(200);
                CHECK_RV(f->C_Finalize(NULL), CKR_OK);
                struct timespec deadline;
                clock_gettime(CLOCK_REALTIME, &deadline);
                deadline.tv_sec += 30;
                if (pthread_timedjoin_np(t, NULL, &deadline) != 0) {
                        tu_failures++;
                        fprintf(stderr, "FAIL: C_Finalize did not wake the C_WaitForSlotEvent waiter\n");
                        return;
                }
                CHECK_RV(waiter_rv, CKR_CRYPTOKI_NOT_INITIALIZED);
        }
        f = NULL;   /* finalized */
        dlclose(module);
        module = NULL;
}

#define N_THREADS 8
#define N_ITER 25

static CK_SLOT_ID thr_slot;

static void *worker_main(void *arg) {
        unsigned *fails = arg;
        CK_SESSION_HANDLE h;
        CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
        static const char abc_hash[] = "\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23"
                                       "\xb0\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad";
        if (f->C_OpenSession(thr_slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK) {
                (*fails)++;
                return NULL;
        }
        for (int i = 0; i < N_ITER; i++) {
                CK_BYTE out[32], rnd[64];
                CK_ULONG len = sizeof out;
                if (f->C_DigestInit(h, &m) != CKR_OK ||
                    f->C_Digest(h, (CK_BYTE_PTR) "abc", 3, out, &len) != CKR_OK || len != 32 ||
                    memcmp(out, abc_hash, 32) != 0)
                        (*fails)++;
                if (f->C_GenerateRandom(h, rnd, sizeof rnd) != CKR_OK)
                        (*fails)++;
                CK_SESSION_INFO si;
                if (f->C_GetSessionInfo(h, &si) != CKR_OK || si.slotID != thr_slot)
                        (*fails)++;
        }
        if (f->C_CloseSession(h) != CKR_OK)
                (*fails)++;
        return NULL;
}

static unsigned count_threads(void) {
        unsigned n = 0;
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        while (d && (e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        if (d)
                closedir(d);
        return n;
}

/* Application threads share one connection.  no_threads: the application
 * forbids library threads (CKF_LIBRARY_CANT_CREATE_OS_THREADS, as GnuTLS
 * says through p11-kit): the module must work without any thread of its
 * own, its callers reading replies for each other. */
static void run_threads(bool no_threads) {
        pthread_t t[N_THREADS];
        unsigned fails[N_THREADS] = { 0 };
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        if (no_threads)
                args.flags |= CKF_LIBRARY_CANT_CREATE_OS_THREADS;

        if (!start_daemon() || !load())
                return;
        unsigned before = count_threads();
        REQUIRE_RV(f->C_Initialize(&args), CKR_OK);
        if (!tu_find_slot(f, LABEL, &thr_slot)) {
                tu_failures++;
                return;
        }
        if (no_threads) {
                CHECK(count_threads() == before);
                CK_SLOT_ID ev;
                CHECK_RV(f->C_WaitForSlotEvent(0, &ev, NULL), CKR_FUNCTION_NOT_SUPPORTED);
        }
        for (int i = 0; i < N_THREADS; i++)
                pthread_create(&t[i], NULL, worker_main, &fails[i]);
        for (int i = 0; i < N_THREADS; i++) {
                pthread_join(t[i], NULL);
                if (fails[i]) {
                        tu_failures++;
                        fprintf(stderr, "FAIL: thread %d: %u failed calls\n", i, fails[i]);
                }
        }
        CK_TOKEN_INFO ti;
        CHECK_RV(f->C_GetTokenInfo(thr_slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 0);
        /* With threads allowed the module's reader thread runs by now (it
         * starts once answers come from memory again and again, not at
         * C_Initialize); without, the module never made one. */
        if (no_threads)
                CHECK(count_threads() == before);
        else
                CHECK(count_threads() > before);
}

static void scenario_threads(void) {
        run_threads(false);
}

static void scenario_nothreads(void) {
        run_threads(true);
}

/* A management op through the raw wire; returns the status (0 ok). */
static int raw_mgmt(uint16_t op, const char *json) {
        int fd = raw_connect(sock);
        if (fd < 0)
                return fd;
        int r = raw_hello(fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        struct wire_msg m;
        wire_msg_init_write(&m, op, 2, 0);
        wire_put_json(&m, json);
        r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        uint8_t *frame = NULL;
        size_t len;
        if (r == 0)
                r = raw_read_frame(fd, 20000, &frame, &len);
        close(fd);
        if (r < 0)
                return r;
        uint64_t status = 1;
        if (wire_msg_init_read(&m, frame, len) < 0 || !wire_get_u64(&m, &status))
                r = -EBADMSG;
        else
                r = (int)status;
        free(frame);
        return r;
}

static volatile CK_SLOT_ID event_slot;

static void *event_waiter_main(void *arg) {
        CK_SLOT_ID s = (CK_SLOT_ID)-1;
        (void)arg;
        __atomic_store_n(&waiter_started, 1, __ATOMIC_SEQ_CST);
        waiter_rv = f->C_WaitForSlotEvent(0, &s, NULL);
        event_slot = s;
        return NULL;
}

static void scenario_events(void) {
        CK_SLOT_ID slot, s, second = (CK_SLOT_ID)-1;
        pthread_t t;
        if (!start_daemon() || !load() || !init_and_find(&slot))
                return;
        CHECK_RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s, NULL), CKR_NO_EVENT);
        waiter_rv = CKR_GENERAL_ERROR;
        waiter_started = 0;
        if (pthread_create(&t, NULL, event_waiter_main, NULL) != 0) {
                tu_failures++;
                return;
        }
        while (!__atomic_load_n(&waiter_started, __ATOMIC_SEQ_CST))
                sleep_ms(10);
        CHECK(raw_mgmt(WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
                       "{\"label\": \"second\", \"pin\": \"123456\", \"so_pin\": \"12345678\"}") == 0);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 30;
        if (pthread_timedjoin_np(t, NULL, &deadline) != 0) {
                tu_failures++;
                fprintf(stderr, "FAIL: no slot event for the new token\n");
                (void)f->C_Finalize(NULL);   /* wakes the waiter */
                pthread_join(t, NULL);
                f = NULL;
                return;
        }
        CHECK_RV(waiter_rv, CKR_OK);
        CHECK(tu_find_slot(f, "second", &second));
        CHECK(event_slot == second && second != slot);
}

/* ---- the module's copy of the daemon's answers (pkcs11/cache.h) ---- */

/* One PKCS#11 request on a raw connection (another client, as far as the
 * daemon knows): puts are done by fill(); returns the reply's CK_RV, or
 * CKR_GENERAL_ERROR when no reply came.  *ret_u, if given, gets the first
 * field after the CK_RV when it is a 'u'. */
static CK_RV raw_p11(int fd, uint16_t op, void (*fill)(struct wire_msg *m, void *ud), void *ud, uint64_t *ret_u) {
        static uint32_t id = 100;
        struct wire_msg m;
        wire_msg_init_write(&m, op, ++id, 0);
        fill(&m, ud);
        int r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        uint8_t *frame = NULL;
        size_t len;
        if (r < 0 || raw_read_frame(fd, 20000, &frame, &len) < 0)
                return CKR_GENERAL_ERROR;
        uint64_t rv = CKR_GENERAL_ERROR;
        if (wire_msg_init_read(&m, frame, len) == 0 && wire_get_u64(&m, &rv) && ret_u && m.sigp && *m.sigp == 'u')
                (void)wire_get_u64(&m, ret_u);
        free(frame);
        return (CK_RV)rv;
}

struct raw_args {
        uint64_t a, b;
        const char *pin;
        CK_ATTRIBUTE *t;
        CK_ULONG n;
};

static void fill_open(struct wire_msg *m, void *ud) {
        struct raw_args *a = ud;
        wire_put_u64(m, a->a);
        wire_put_u64(m, CKF_SERIAL_SESSION | CKF_RW_SESSION);
}

static void fill_session(struct wire_msg *m, void *ud) {
        struct raw_args *a = ud;
        wire_put_u64(m, a->a);
}

static void fill_login(struct wire_msg *m, void *ud) {
        struct raw_args *a = ud;
        wire_put_u64(m, a->a);
        wire_put_u64(m, CKU_USER);
        wire_put_blob(m, a->pin, strlen(a->pin));
}

static void fill_create(struct wire_msg *m, void *ud) {
        struct raw_args *a = ud;
        wire_put_u64(m, a->a);
        wire_put_attrs(m, a->t, a->n);
}

static void fill_two(struct wire_msg *m, void *ud) {
        struct raw_args *a = ud;
        wire_put_u64(m, a->a);
        wire_put_u64(m, a->b);
}

/* The daemon's count of PKCS#11 requests served (management status). */
static double daemon_p11_requests(void) {
        return raw_status_number(sock, "p11_requests");
}

/* All objects by label, through FindObjects; CK_INVALID_HANDLE if none. */
static CK_OBJECT_HANDLE module_find_label(CK_SESSION_HANDLE h, const char *label) {
        CK_ATTRIBUTE t = { CKA_LABEL, (void *)label, strlen(label) };
        CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
        CK_ULONG n = 0;
        if (f->C_FindObjectsInit(h, &t, 1) != CKR_OK)
                return CK_INVALID_HANDLE;
        if (f->C_FindObjects(h, &o, 1, &n) != CKR_OK || n != 1)
                o = CK_INVALID_HANDLE;
        (void)f->C_FindObjectsFinal(h);
        return o;
}

/* One enumeration as a browser does it: every object, three attributes. */
static bool enumerate_once(CK_SESSION_HANDLE h, CK_ULONG *ret_n) {
        CK_OBJECT_HANDLE v[64];
        CK_ULONG n = 0;
        if (f->C_FindObjectsInit(h, NULL, 0) != CKR_OK)
                return false;
        bool ok = f->C_FindObjects(h, v, 64, &n) == CKR_OK;
        ok = f->C_FindObjectsFinal(h) == CKR_OK && ok;
        for (CK_ULONG i = 0; ok && i < n; i++) {
                CK_OBJECT_CLASS cls;
                uint8_t id[64], label[64];
                CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, id, sizeof id },
                                     { CKA_LABEL, label, sizeof label } };
                CK_RV rv = f->C_GetAttributeValue(h, v[i], t, 3);
                ok = rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID;
        }
        *ret_n = n;
        return ok;
}

/* A round trip that nothing answers from memory: once it returns, every
 * event the daemon sent before answering it has been read. */
static void sync_with_daemon(CK_SESSION_HANDLE h) {
        uint8_t b[8];
        CHECK_RV(f->C_GenerateRandom(h, b, sizeof b), CKR_OK);
}

/* Threads of this process (/proc/self/task entries), -1 unknown. */
static long task_count(void) {
        DIR *d = opendir("/proc/self/task");
        long n = 0;
        if (!d)
                return -1;
        for (struct dirent *e; (e = readdir(d));)
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void scenario_cache(void) {
        CK_SLOT_ID slot;
        if (!start_daemon() || !load())
                return;
        /* 0. A fresh process's first questions go to the daemon without a
         *    reader thread: the slot list, which also brings the tokens'
         *    info (one round trip), so that the token info after it is
         *    answered from memory without a request.  Answers from memory
         *    are exact without the thread (the socket is polled first); it
         *    starts after 16 of them, when threads are allowed (a fresh
         *    process's latency, issue 3). */
        bool threads_ok = !(init_args && (init_args->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS));
        REQUIRE_RV(f->C_Initialize(init_args), CKR_OK);
        long tasks0 = task_count();
        CK_SLOT_ID first[8];
        CK_ULONG n0 = 8;
        CHECK_RV(f->C_GetSlotList(CK_TRUE, first, &n0), CKR_OK);
        CHECK(n0 >= 1);
        double q0 = daemon_p11_requests();
        CK_TOKEN_INFO ti0;
        CHECK_RV(f->C_GetTokenInfo(first[0], &ti0), CKR_OK);
        double q1 = daemon_p11_requests();
        long tasks1 = task_count();
        for (int i = 0; i < 16; i++)
                CHECK_RV(f->C_GetTokenInfo(first[0], &ti0), CKR_OK);
        long tasks2 = task_count();
        fprintf(stderr, "threads: %ld after C_Initialize, %ld after the first questions, %ld after 17 answers from memory; "
                "requests for the first token info: %.0f\n", tasks0, tasks1, tasks2, q1 - q0);
        CHECK(tasks0 == 1 && tasks1 == 1);
        CHECK(tasks2 == (threads_ok ? 2 : 1));
        /* (Management requests such as the status are not counted.) */
        CHECK(q0 >= 0 && q1 == q0);
        if (!tu_find_slot(f, LABEL, &slot)) {
                fprintf(stderr, "FATAL: token '%s' not found\n", LABEL);
                tu_failures++;
                return;
        }
        CK_SESSION_HANDLE ro, rw;
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw), CKR_OK);

        /* Objects to see: a P-256 key pair (the private key needs a login
         * to be seen) and a public data object. */
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL tru = CK_TRUE;
        CK_ATTRIBUTE pubt[] = { { CKA_EC_PARAMS, (void *)p256, sizeof p256 }, { CKA_TOKEN, &tru, 1 },
                                { CKA_LABEL, "cachekey", 8 }, { CKA_ID, "\x01", 1 } };
        CK_ATTRIBUTE privt[] = { { CKA_TOKEN, &tru, 1 }, { CKA_PRIVATE, &tru, 1 }, { CKA_SIGN, &tru, 1 },
                                 { CKA_LABEL, "cachekey", 8 }, { CKA_ID, "\x01", 1 } };
        CK_OBJECT_HANDLE pub, priv, data;
        CK_OBJECT_CLASS dcls = CKO_DATA;
        CK_ATTRIBUTE datat[] = { { CKA_CLASS, &dcls, sizeof dcls }, { CKA_TOKEN, &tru, 1 },
                                 { CKA_LABEL, "cachedata", 9 }, { CKA_VALUE, "hello", 5 } };
        REQUIRE_RV(f->C_Login(rw, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        REQUIRE_RV(f->C_GenerateKeyPair(rw, &gen, pubt, 4, privt, 5, &pub, &priv), CKR_OK);
        REQUIRE_RV(f->C_CreateObject(rw, datat, 4, &data), CKR_OK);
        REQUIRE_RV(f->C_Logout(rw), CKR_OK);

        /* 1. Repeated info calls and enumerations are answered by the
         *    module: the daemon sees (almost) none of them. */
        CK_TOKEN_INFO ti;
        CK_SESSION_INFO si;
        CK_SLOT_INFO sl;
        CK_SLOT_ID slots[16];
        CK_ULONG ns, nobj = 0;
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 2 && ti.ulRwSessionCount == 1);
        CHECK(enumerate_once(ro, &nobj));
        double r0 = daemon_p11_requests();
        for (int i = 0; i < 1000; i++) {
                ns = 16;
                CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
                CHECK_RV(f->C_GetSlotInfo(slot, &sl), CKR_OK);
                CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
                CHECK_RV(f->C_GetSessionInfo(ro, &si), CKR_OK);
                CK_ULONG n2 = 0;
                CHECK(enumerate_once(ro, &n2) && n2 == nobj);
                if (tu_failures)
                        break;
        }
        double r1 = daemon_p11_requests();
        fprintf(stderr, "5000 info calls and 1000 enumerations of %lu objects: %.0f requests reached the daemon\n",
                (unsigned long)nobj, r1 - r0);
        CHECK(r0 >= 0 && r1 >= r0 && r1 - r0 < 10);
        CHECK(nobj == 2);
        /* Sessions opened and closed around each enumeration (as NSS does)
         * cost their own two requests, not a new copy of the objects. */
        for (int i = 0; i < 300; i++) {
                CK_SESSION_HANDLE tmp;
                CK_ULONG n2 = 0;
                CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &tmp), CKR_OK);
                CHECK(enumerate_once(tmp, &n2) && n2 == nobj);
                CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
                CHECK(ti.ulSessionCount == 3);
                CHECK_RV(f->C_CloseSession(tmp), CKR_OK);
                if (tu_failures)
                        break;
        }
        double r2 = daemon_p11_requests();
        fprintf(stderr, "300 sessions opened, enumerated and closed: %.0f requests reached the daemon\n", r2 - r1);
        CHECK(r2 - r1 <= 300 * 3 + 10);
        /* The private key is hidden while logged out. */
        CHECK(module_find_label(ro, "cachedata") == data);
        CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE pq = { CKA_CLASS, &pc, sizeof pc };
        CHECK_RV(f->C_GetAttributeValue(ro, priv, &pq, 1), CKR_OBJECT_HANDLE_INVALID);
        /* Length queries and short buffers keep PKCS#11's rules. */
        ns = 0;
        CHECK_RV(f->C_GetSlotList(CK_TRUE, NULL, &ns), CKR_OK);
        CHECK(ns >= 1);
        CK_ULONG small = 0;
        CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &small), CKR_BUFFER_TOO_SMALL);
        CHECK(small == ns);

        /* 2. A login-state change by another session of this process shows
         *    at once, and so does its undoing. */
        CHECK_RV(f->C_GetSessionInfo(ro, &si), CKR_OK);
        CHECK(si.state == CKS_RO_PUBLIC_SESSION);
        CHECK_RV(f->C_Login(rw, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        CHECK_RV(f->C_GetSessionInfo(ro, &si), CKR_OK);
        CHECK(si.state == CKS_RO_USER_FUNCTIONS);
        CHECK_RV(f->C_GetSessionInfo(rw, &si), CKR_OK);
        CHECK(si.state == CKS_RW_USER_FUNCTIONS);
        /* Logged in, the private key objects are found too. */
        CK_ULONG nlogged = 0;
        CHECK(enumerate_once(ro, &nlogged));
        CHECK(nlogged == 3);
        /* Its secret parts stay secret, its public ones are given. */
        uint8_t secret[128];
        CK_ULONG klen = 0;
        CK_ATTRIBUTE sq[] = { { CKA_VALUE, secret, sizeof secret }, { CKA_KEY_TYPE, &klen, sizeof klen } };
        CHECK_RV(f->C_GetAttributeValue(ro, priv, sq, 2), CKR_ATTRIBUTE_SENSITIVE);
        CHECK(sq[0].ulValueLen == CK_UNAVAILABLE_INFORMATION && sq[1].ulValueLen == sizeof klen && klen == CKK_EC);
        /* A search naming a sensitive attribute is the daemon's to answer. */
        CK_ATTRIBUTE byval = { CKA_VALUE, "hello", 5 };
        CK_OBJECT_HANDLE hv[4];
        CK_ULONG nhv = 0;
        CHECK_RV(f->C_FindObjectsInit(ro, &byval, 1), CKR_OK);
        CHECK_RV(f->C_FindObjects(ro, hv, 4, &nhv), CKR_OK);
        CHECK_RV(f->C_FindObjectsFinal(ro), CKR_OK);
        CHECK(nhv == 1 && hv[0] == data);
        CHECK_RV(f->C_Logout(rw), CKR_OK);
        CHECK_RV(f->C_GetSessionInfo(ro, &si), CKR_OK);
        CHECK(si.state == CKS_RO_PUBLIC_SESSION);
        CK_ULONG nafter = 0;
        CHECK(enumerate_once(ro, &nafter));
        CHECK(nafter == nobj);
        fprintf(stderr, "objects: %lu public, %lu when logged in\n", (unsigned long)nobj, (unsigned long)nlogged);

        /* 3. Another client's wrong PIN changes the token's flags: seen
         *    after any round trip, and soon without one. */
        int fd = raw_connect(sock);
        REQUIRE(fd >= 0 && raw_hello(fd) == 0);
        uint64_t rh = 0;
        struct raw_args a = { .a = slot };
        REQUIRE_RV(raw_p11(fd, WIRE_OP_OPEN_SESSION, fill_open, &a, &rh), CKR_OK);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(!(ti.flags & CKF_USER_PIN_COUNT_LOW));
        /* After a round trip: exactly (the daemon's event for the change
         * precedes its answer to the round trip). */
        a = (struct raw_args){ .a = rh, .pin = "000000" };
        CHECK_RV(raw_p11(fd, WIRE_OP_LOGIN, fill_login, &a, NULL), CKR_PIN_INCORRECT);
        sync_with_daemon(ro);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(ti.flags & CKF_USER_PIN_COUNT_LOW);
        a = (struct raw_args){ .a = rh, .pin = TU_USER_PIN };
        CHECK_RV(raw_p11(fd, WIRE_OP_LOGIN, fill_login, &a, NULL), CKR_OK);
        sync_with_daemon(ro);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(!(ti.flags & CKF_USER_PIN_COUNT_LOW));
        a = (struct raw_args){ .a = rh };
        CHECK_RV(raw_p11(fd, WIRE_OP_LOGOUT, fill_session, &a, NULL), CKR_OK);
        /* Without one: answers from memory only, until the event is taken
         * in.  No speed is asserted; the bound is only a hang guard. */
        a = (struct raw_args){ .a = rh, .pin = "000000" };
        CHECK_RV(raw_p11(fd, WIRE_OP_LOGIN, fill_login, &a, NULL), CKR_PIN_INCORRECT);
        double rq0 = daemon_p11_requests();
        uint64_t t0 = stress_now_ms(), guard = t0 + 60000;
        bool seen = false;
        while (!seen && stress_now_ms() < guard) {
                CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
                seen = (ti.flags & CKF_USER_PIN_COUNT_LOW) != 0;
                if (!seen)
                        sleep_ms(1);
        }
        double rq1 = daemon_p11_requests();
        fprintf(stderr, "another client's wrong PIN seen in the token flags without a round trip after %llu ms "
                        "(%.0f requests reached the daemon meanwhile)\n",
                (unsigned long long)(stress_now_ms() - t0), rq1 - rq0);
        if (!seen) {
                tu_failures++;
                fprintf(stderr, "FAIL: another client's wrong PIN never showed in the token flags without a "
                                "round trip (60 s hang guard)\n");
        }
        a = (struct raw_args){ .a = rh, .pin = TU_USER_PIN };
        CHECK_RV(raw_p11(fd, WIRE_OP_LOGIN, fill_login, &a, NULL), CKR_OK);
        sync_with_daemon(ro);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(!(ti.flags & CKF_USER_PIN_COUNT_LOW));

        /* 4. Objects created and destroyed by another client: found and
         *    gone (after a round trip, so deterministically). */
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &no, 1 },
                                { CKA_LABEL, "pushed", 6 }, { CKA_VALUE, "v1", 2 } };
        uint64_t obj = 0;
        CHECK(module_find_label(ro, "pushed") == CK_INVALID_HANDLE);
        a = (struct raw_args){ .a = rh, .t = tmpl, .n = 5 };
        CHECK_RV(raw_p11(fd, WIRE_OP_CREATE_OBJECT, fill_create, &a, &obj), CKR_OK);
        sync_with_daemon(ro);
        CK_OBJECT_HANDLE found = module_find_label(ro, "pushed");
        CHECK(found == obj && obj != 0);
        char val[8] = { 0 };
        CK_ATTRIBUTE q = { CKA_VALUE, val, sizeof val };
        CHECK_RV(f->C_GetAttributeValue(ro, found, &q, 1), CKR_OK);
        CHECK(q.ulValueLen == 2 && memcmp(val, "v1", 2) == 0);
        a = (struct raw_args){ .a = rh, .b = obj };
        CHECK_RV(raw_p11(fd, WIRE_OP_DESTROY_OBJECT, fill_two, &a, NULL), CKR_OK);
        sync_with_daemon(ro);
        CHECK(module_find_label(ro, "pushed") == CK_INVALID_HANDLE);
        q.ulValueLen = sizeof val;
        CHECK_RV(f->C_GetAttributeValue(ro, found, &q, 1), CKR_OBJECT_HANDLE_INVALID);

        /* 5. A token that comes and goes: in the slot list, then gone with
         *    its sessions. */
        CHECK(raw_mgmt(WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
                       "{\"label\": \"transient\", \"pin\": \"123456\", \"so_pin\": \"12345678\"}") == 0);
        sync_with_daemon(ro);
        CK_SLOT_ID other;
        REQUIRE(tu_find_slot(f, "transient", &other));
        CK_SESSION_HANDLE oh;
        REQUIRE_RV(f->C_OpenSession(other, CKF_SERIAL_SESSION, NULL, NULL, &oh), CKR_OK);
        CHECK_RV(f->C_GetSessionInfo(oh, &si), CKR_OK);
        CHECK_RV(f->C_GetTokenInfo(other, &ti), CKR_OK);
        char json[64];
        snprintf(json, sizeof json, "{\"slot\": %lu}", (unsigned long)other);
        CHECK(raw_mgmt(WIRE_OP_MGMT_TOKEN_DELETE, json) == 0);
        sync_with_daemon(ro);
        CHECK_RV(f->C_GetSessionInfo(oh, &si), CKR_SESSION_HANDLE_INVALID);
        CHECK(f->C_GetTokenInfo(other, &ti) != CKR_OK);
        ns = 16;
        CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
        for (CK_ULONG i = 0; i < ns; i++)
                CHECK(slots[i] != other);
        close(fd);

        /* 6. The daemon restarted: nothing kept survives it. */
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        REQUIRE(start_daemon());
        CHECK_RV(f->C_GetSessionInfo(ro, &si), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 0);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* A fake daemon: answers HELLO with the given version (0: sends a frame
 * header claiming an oversized frame instead), then serves nothing. */
struct fake {
        int lfd;
        uint64_t version;
};

static void *fake_main(void *arg) {
        struct fake *fk = arg;
        for (int i = 0; i < 64; i++) {
                int fd = accept4(fk->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        return NULL;
                uint8_t *frame = NULL;
                size_t len;
                if (raw_read_frame(fd, 20000, &frame, &len) == 0) {
                        if (fk->version == 0) {
                                uint8_t bad[WIRE_HDR_SIZE] = { 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, WIRE_OP_HELLO, 0,
                                                               WIRE_F_REPLY };
                                (void)!send(fd, bad, sizeof bad, MSG_NOSIGNAL);
                        } else {
                                struct wire_msg m;
                                wire_msg_init_write(&m, WIRE_OP_HELLO, 1, WIRE_F_REPLY);
                                wire_put_u64(&m, CKR_OK);
                                wire_put_u64(&m, fk->version);
                                wire_put_u64(&m, WIRE_CAP_EVENTS);
                                wire_put_string(&m, "fake");
                                if (wire_msg_finish(&m) == 0)
                                        (void)!send(fd, m.buf.data, m.buf.len, MSG_NOSIGNAL);
                                wire_msg_done(&m);
                        }
                        free(frame);
                }
                close(fd);
        }
        return NULL;
}

static void scenario_version(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const uint64_t versions[] = { (uint64_t)(WIRE_VERSION_MAJOR + 1) << 16, 0 };
        if (!load())
                return;
        for (size_t i = 0; i < ELEMENTSOF(versions); i++) {
                struct fake fk = { .version = versions[i] };
                pthread_t t;
                unlink(sock);
                snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
                fk.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fk.lfd < 0 || bind(fk.lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fk.lfd, 8) < 0) {
                        tu_failures++;
                        return;
                }
                pthread_create(&t, NULL, fake_main, &fk);
                CK_ULONG n = 0;
                CK_SLOT_INFO si;
                CHECK_RV(f->C_Initialize(NULL), CKR_OK);
                CHECK_RV(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_DEVICE_ERROR);
                CHECK_RV(f->C_GetSlotInfo(1, &si), CKR_DEVICE_ERROR);
                CHECK_RV(f->C_Finalize(NULL), CKR_OK);
                shutdown(fk.lfd, SHUT_RDWR);
                close(fk.lfd);
                pthread_join(t, NULL);
        }
        /* The same module, once a real daemon is on the socket: served. */
        CK_SLOT_ID slot;
        unlink(sock);
        if (!start_daemon())
                return;
        if (!init_and_find(&slot))
                return;
        CK_SESSION_HANDLE h;
        CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
        CHECK_RV(f->C_CloseSession(h), CKR_OK);
}

/* One round trip per signature (issue 12): a C_SignInit the module can
 * check from what it holds travels with the C_Sign (or C_SignUpdate) after
 * it; every error C_SignInit can give still comes at C_SignInit. */
static CK_RV verify_with(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE mt, CK_OBJECT_HANDLE pub, const uint8_t *data,
                         CK_ULONG len, const uint8_t *sig, CK_ULONG sig_len) {
        CK_MECHANISM m = { mt, NULL, 0 };
        CK_RV rv = f->C_VerifyInit(h, &m, pub);
        return rv != CKR_OK ? rv : f->C_Verify(h, (CK_BYTE_PTR)data, len, (CK_BYTE_PTR)sig, sig_len);
}

static void scenario_signbatch(void) {
        CK_SLOT_ID slot;
        if (!start_daemon() || !load() || !init_and_find(&slot))
                return;
        CK_SESSION_HANDLE h;
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
        REQUIRE_RV(f->C_Login(h, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL tru = CK_TRUE, fal = CK_FALSE;
        CK_ATTRIBUTE pubt[] = { { CKA_EC_PARAMS, (void *)p256, sizeof p256 }, { CKA_TOKEN, &tru, 1 } };
        CK_ATTRIBUTE privt[] = { { CKA_TOKEN, &tru, 1 }, { CKA_PRIVATE, &tru, 1 }, { CKA_SIGN, &tru, 1 } };
        CK_ATTRIBUTE nosignt[] = { { CKA_TOKEN, &tru, 1 }, { CKA_PRIVATE, &tru, 1 }, { CKA_SIGN, &fal, 1 } };
        CK_OBJECT_HANDLE pub, priv, pub2, nosign;
        REQUIRE_RV(f->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 3, &pub, &priv), CKR_OK);
        REQUIRE_RV(f->C_GenerateKeyPair(h, &gen, pubt, 2, nosignt, 3, &pub2, &nosign), CKR_OK);
        CK_ULONG nobj = 0;
        CHECK(enumerate_once(h, &nobj) && nobj == 4);

        uint8_t hash[32], sig[256];
        memset(hash, 0x5a, sizeof hash);
        CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 };
        CK_ULONG len;
        /* The first C_SignInit with a mechanism goes at once (the module has
         * not seen the token accept it yet). */
        double r0 = daemon_p11_requests();
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OK);
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OK);
        double r1 = daemon_p11_requests();
        CHECK(r1 - r0 == 2);
        CHECK_RV(verify_with(h, CKM_ECDSA, pub, hash, sizeof hash, sig, len), CKR_OK);
        /* After it, one request per signature, each a valid one. */
        double r2 = daemon_p11_requests();
        bool all_ok = true;
        for (int i = 0; i < 20; i++) {
                hash[0] = (uint8_t)i;
                all_ok = all_ok && f->C_SignInit(h, &ecdsa, priv) == CKR_OK;
                len = sizeof sig;
                all_ok = all_ok && f->C_Sign(h, hash, sizeof hash, sig, &len) == CKR_OK;
        }
        double r3 = daemon_p11_requests();
        fprintf(stderr, "20 C_SignInit + C_Sign: %.0f requests reached the daemon\n", r3 - r2);
        CHECK(all_ok);
        CHECK(r3 - r2 == 20);
        CHECK_RV(verify_with(h, CKM_ECDSA, pub, hash, sizeof hash, sig, len), CKR_OK);
        sig[len - 1] ^= 1;
        CHECK_RV(verify_with(h, CKM_ECDSA, pub, hash, sizeof hash, sig, len), CKR_SIGNATURE_INVALID);

        /* A length query first: the init travels with it, the operation
         * stays for the C_Sign that takes the signature. */
        double r4 = daemon_p11_requests();
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OK);
        len = 0;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, NULL, &len), CKR_OK);
        CHECK(len >= 64 && len <= sizeof sig);
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OK);
        CHECK(daemon_p11_requests() - r4 == 2);
        CHECK_RV(verify_with(h, CKM_ECDSA, pub, hash, sizeof hash, sig, len), CKR_OK);
        /* A short buffer keeps the operation too. */
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OK);
        len = 8;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_BUFFER_TOO_SMALL);
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OK);
        CHECK_RV(verify_with(h, CKM_ECDSA, pub, hash, sizeof hash, sig, len), CKR_OK);

        /* Multi-part: the init travels with the first C_SignUpdate. */
        static const uint8_t msg[] = "one round trip per signature";
        CK_MECHANISM ecdsa256 = { CKM_ECDSA_SHA256, NULL, 0 };
        CHECK_RV(f->C_SignInit(h, &ecdsa256, priv), CKR_OK); /* learnt here */
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, (CK_BYTE_PTR)msg, sizeof msg, sig, &len), CKR_OK);
        double r5 = daemon_p11_requests();
        CHECK_RV(f->C_SignInit(h, &ecdsa256, priv), CKR_OK);
        CHECK_RV(f->C_SignUpdate(h, (CK_BYTE_PTR)msg, 10), CKR_OK);
        CHECK_RV(f->C_SignUpdate(h, (CK_BYTE_PTR)msg + 10, sizeof msg - 10), CKR_OK);
        len = sizeof sig;
        CHECK_RV(f->C_SignFinal(h, sig, &len), CKR_OK);
        CHECK(daemon_p11_requests() - r5 == 3);
        CHECK_RV(verify_with(h, CKM_ECDSA_SHA256, pub, msg, sizeof msg, sig, len), CKR_OK);
        /* C_SignFinal straight after a held init: the init goes first. */
        CHECK_RV(f->C_SignInit(h, &ecdsa256, priv), CKR_OK);
        len = sizeof sig;
        CHECK_RV(f->C_SignFinal(h, sig, &len), CKR_OK);
        CHECK_RV(verify_with(h, CKM_ECDSA_SHA256, pub, (const uint8_t *)"", 0, sig, len), CKR_OK);

        /* Probes see their errors at C_SignInit, with every mechanism
         * learnt and the objects in the module's copy. */
        CK_MECHANISM rsa = { CKM_SHA256_RSA_PKCS, NULL, 0 };
        CK_MECHANISM dsa = { CKM_DSA, NULL, 0 };
        CHECK_RV(f->C_SignInit(h, &ecdsa, nosign), CKR_KEY_FUNCTION_NOT_PERMITTED);
        CHECK_RV(f->C_SignInit(h, &ecdsa, pub), CKR_KEY_TYPE_INCONSISTENT);
        CHECK_RV(f->C_SignInit(h, &rsa, priv), CKR_KEY_TYPE_INCONSISTENT);
        CHECK_RV(f->C_SignInit(h, &dsa, priv), CKR_MECHANISM_INVALID);
        CHECK_RV(f->C_SignInit(h, &ecdsa, (CK_OBJECT_HANDLE)0x7fff0000), CKR_KEY_HANDLE_INVALID);
        CHECK_RV(f->C_SignInit(h, NULL, priv), CKR_ARGUMENTS_BAD);
        /* A mechanism parameter where none belongs is the daemon's to judge. */
        CK_MECHANISM withparam = { CKM_ECDSA, hash, 4 };
        CHECK_RV(f->C_SignInit(h, &withparam, priv), CKR_OK);
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OK);
        /* A second C_SignInit while one is held: the first is active. */
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OK);
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OPERATION_ACTIVE);
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OK);
        CHECK_RV(verify_with(h, CKM_ECDSA, pub, hash, sizeof hash, sig, len), CKR_OK);
        /* An operation left active by a C_SignUpdate the module sent: the
         * next C_SignInit is not held and reports it. */
        CHECK_RV(f->C_SignInit(h, &ecdsa256, priv), CKR_OK);
        CHECK_RV(f->C_SignUpdate(h, (CK_BYTE_PTR)msg, 4), CKR_OK);
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OPERATION_ACTIVE);
        len = sizeof sig;
        CHECK_RV(f->C_SignFinal(h, sig, &len), CKR_OK);
        CHECK_RV(verify_with(h, CKM_ECDSA_SHA256, pub, msg, 4, sig, len), CKR_OK);
        /* A C_Sign with no C_SignInit is still refused. */
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OPERATION_NOT_INITIALIZED);

        /* The key destroyed by another session between the two calls: the
         * init's error comes with C_Sign, and the next C_SignInit reports
         * the key gone at once. */
        CK_SESSION_HANDLE h2;
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h2), CKR_OK);
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_OK);
        CHECK_RV(f->C_DestroyObject(h2, priv), CKR_OK);
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_KEY_HANDLE_INVALID);
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv), CKR_KEY_HANDLE_INVALID);
        /* A held init dies with its session. */
        CK_OBJECT_HANDLE pub3, priv3;
        REQUIRE_RV(f->C_GenerateKeyPair(h2, &gen, pubt, 2, privt, 3, &pub3, &priv3), CKR_OK);
        CK_ULONG n2 = 0;
        CHECK(enumerate_once(h2, &n2));
        CHECK_RV(f->C_SignInit(h2, &ecdsa, priv3), CKR_OK);
        CHECK_RV(f->C_CloseSession(h2), CKR_OK);
        CHECK_RV(f->C_SignInit(h, &ecdsa, priv3), CKR_OK);
        len = sizeof sig;
        CHECK_RV(f->C_Sign(h, hash, sizeof hash, sig, &len), CKR_OK);
        CHECK_RV(verify_with(h, CKM_ECDSA, pub3, hash, sizeof hash, sig, len), CKR_OK);
        CHECK_RV(f->C_Logout(h), CKR_OK);
        CHECK_RV(f->C_CloseSession(h), CKR_OK);
}

int main(int argc, char **argv) {
        if (argc == 3 && strcmp(argv[1], "uid-child") == 0)
                return uid_child(argv[2]);
        if (argc != 2) {
                fprintf(stderr, "usage: %s fork|restart|nodaemon|uid|killed|finalize|threads|nothreads|events|version|cache[-nothreads]|signbatch[-nothreads]\n", argv[0]);
                return 2;
        }
        so_path = tu_env_path("NETCA_PKCS11_MODULE");
        netcad_path = tu_env_path("NETCA_NETCAD");
        setup_dirs();

        const char *s = argv[1];
        if (strcmp(s, "fork") == 0)
                scenario_fork();
        else if (strcmp(s, "restart") == 0)
                scenario_restart();
        else if (strcmp(s, "nodaemon") == 0)
                scenario_nodaemon();
        else if (strcmp(s, "uid") == 0)
                scenario_uid();
        else if (strcmp(s, "killed") == 0)
                scenario_killed();
        else if (strcmp(s, "finalize") == 0)
                scenario_finalize();
        else if (strcmp(s, "threads") == 0)
                scenario_threads();
        else if (strcmp(s, "nothreads") == 0)
                scenario_nothreads();
        else if (strcmp(s, "events") == 0)
                scenario_events();
        else if (strcmp(s, "cache") == 0)
                scenario_cache();
        else if (strcmp(s, "cache-nothreads") == 0) {
                /* As NSS (Firefox, certutil) and GnuTLS initialize modules:
                 * no thread of the module's own; events are taken in by a
                 * poll before each answer from what is kept. */
                static CK_C_INITIALIZE_ARGS a = { .flags = CKF_OS_LOCKING_OK | CKF_LIBRARY_CANT_CREATE_OS_THREADS };
                init_args = &a;
                scenario_cache();
        }
        else if (strcmp(s, "version") == 0)
                scenario_version();
        else if (strcmp(s, "signbatch") == 0)
                scenario_signbatch();
        else if (strcmp(s, "signbatch-nothreads") == 0) {
                static CK_C_INITIALIZE_ARGS a = { .flags = CKF_OS_LOCKING_OK | CKF_LIBRARY_CANT_CREATE_OS_THREADS };
                init_args = &a;
                scenario_signbatch();
        }
        else {
                fprintf(stderr, "unknown scenario %s\n", s);
                cleanup();
                return 2;
        }
        cleanup();
        if (tu_failures) {
                fprintf(stderr, "robustness %s: %u check(s) failed\n", s, tu_failures);
                return 1;
        }
        fprintf(stderr, "robustness %s: passed\n", s);
        return 0;
}
