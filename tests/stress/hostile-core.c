/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A hostile or buggy local client against the core (issue 23): one
 * executable, one scenario per argument, each its own meson test.
 *
 *   login-race  20 C_Login with the same wrong PIN, on 20 sessions of one
 *               connection, written in one go: the token's try counter
 *               drops by exactly one (the rate limit's "refused before"
 *               check runs under the token lock), and every answer is
 *               CKR_PIN_INCORRECT; then the right PIN the same way: one
 *               CKR_OK, the others CKR_USER_ALREADY_LOGGED_IN (the login
 *               state is looked at again under the lock)
 *   exponent    RSA public keys (session objects, 4096-bit modulus) whose
 *               exponent is longer than 64 bits (4095 bits, 2^64+1) are
 *               refused with CKR_ATTRIBUTE_VALUE_INVALID; 64 bits and 65537
 *               are taken, and a verification with them is answered
 *   sessions    with NETCA_MAX_SESSIONS=SESSION_CAP, a client opens that
 *               many sessions and the next one gets CKR_SESSION_COUNT;
 *               another client is not affected; closing one makes room for
 *               one; every handle answers C_GetSessionInfo to its client and
 *               CKR_SESSION_HANDLE_INVALID to another (the hash table)
 *   verify-loop VERIFY_ROUNDS C_VerifyInit + C_Verify with an RSA-4096 key
 *               whose exponent is 2^64-1 (the costliest allowed), written
 *               in one go: the event loop thread (netcad's main thread) ran
 *               less than half of the CPU time netcad spent on them
 *               (/proc/PID/task/TID/schedstat, in ns: a count, not a
 *               timing; run inline, the loop runs nearly all of it)
 *   kdf-iterations  a second token file whose PBKDF2 iteration count was
 *               set to 2^31-2 (a login would derive for a quarter of an
 *               hour): netcad does not open it (it lists only the good
 *               token), and the good one works
 *
 * Environment (from meson): NETCA_PKCS11_MODULE, NETCA_NETCAD. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/wire.h"
#include "drivers/soft/soft.h"
#include "stress-util.h"
#include "testutil.h"

#define LABEL "hostile"
#define REPLY_MS 20000
#define RACE_LOGINS 20
#define SESSION_CAP 300
#define VERIFY_ROUNDS 300

static const char *so_path, *netcad_path;
static void *module;
static CK_FUNCTION_LIST_PTR f;
static char *dir, *data_dir, *sock;
static pid_t daemon_pid = -1;

static void setup(void) {
        dir = tu_mkdtemp("hostile");
        bool ok = asprintf(&data_dir, "%s/data", dir) >= 0 && asprintf(&sock, "%s/netcad.sock", dir) >= 0 &&
                  tu_create_token(data_dir, LABEL) >= 0;
        if (!ok)
                exit(1);
        setenv("NETCA_AUTOSTART", "0", 1);
        setenv("NETCA_SOCKET", sock, 1);
        char cap[16];
        snprintf(cap, sizeof cap, "%u", SESSION_CAP);
        setenv("NETCA_MAX_SESSIONS", cap, 1);
}

static void cleanup(void) {
        if (f)
                f->C_Finalize(NULL);
        f = NULL;
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        tu_rmrf(dir);
}

/* A connection that said HELLO, or -1 (counted). */
static int conn_open(void) {
        int fd = raw_connect(sock);
        if (fd >= 0 && raw_hello(fd) == 0)
                return fd;
        if (fd >= 0)
                close(fd);
        tu_failures++;
        fprintf(stderr, "FAIL: no connection to netcad\n");
        return -1;
}

/* The first slot with a token, over the raw wire. */
static bool raw_first_slot(int fd, CK_SLOT_ID *ret) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 1, 0);
        wire_put_u8(&m, 1);
        wire_put_outreq(&m, false, 16);
        int r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        uint8_t *frame = NULL;
        uint64_t rv = 1, count = 0;
        CK_ULONG *v = NULL;
        size_t n = 0;
        bool ok = r == 0 && raw_reply_read(fd, WIRE_OP_GET_SLOT_LIST, &m, &frame) && wire_get_u64(&m, &rv) &&
                  rv == CKR_OK && wire_get_outlist(&m, &count, &v, &n) && v && n >= 1;
        if (ok)
                *ret = v[0];
        free(v);
        wire_msg_done(&m);
        free(frame);
        return ok;
}

/* MGMT_TOKEN_LIST's "tokens" array (cJSON_Delete() the result), or NULL. */
static cJSON *token_list(void) {
        cJSON *o = raw_mgmt_json(sock, WIRE_OP_MGMT_TOKEN_LIST);
        cJSON *tokens = cJSON_DetachItemFromObject(o, "tokens");
        cJSON_Delete(o);
        return tokens;
}

/* The first token's user PIN tries left, or -1. */
static int user_tries_left(void) {
        cJSON *tokens = token_list();
        cJSON *v = cJSON_GetObjectItem(cJSON_GetArrayItem(tokens, 0), "user_tries_left");
        int left = cJSON_IsNumber(v) ? v->valueint : -1;
        cJSON_Delete(tokens);
        return left;
}

/* ------------------------------------------------------------ login-race */

/* Appends a C_Login(CKU_USER, pin) on session h to *all. */
static bool put_login(struct nbuf *all, uint32_t id, CK_SESSION_HANDLE h, const char *pin) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_LOGIN, id, 0);
        wire_put_u64(&m, h);
        wire_put_u64(&m, CKU_USER);
        wire_put_blob(&m, pin, strlen(pin));
        bool ok = wire_msg_finish(&m) == 0;
        if (ok)
                nbuf_put_raw(all, m.buf.data, m.buf.len);
        wire_msg_done(&m);
        return ok;
}

/* RACE_LOGINS logins with pin on as many new sessions of a new
 * connection, all in one write (netcad reads them in one go and runs them
 * on its token lane's threads at once); counts the answers that were want
 * into *ret_want, CKR_USER_ALREADY_LOGGED_IN into *ret_already. */
static bool login_burst(const char *pin, CK_RV want, unsigned *ret_want, unsigned *ret_already) {
        int fd = conn_open();
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE h[RACE_LOGINS];
        bool ok = fd >= 0 && raw_first_slot(fd, &slot);
        for (unsigned i = 0; ok && i < RACE_LOGINS; i++)
                ok = raw_open_session(fd, slot, &h[i]) == CKR_OK;
        struct nbuf all;
        nbuf_init(&all, 1u << 20);
        for (unsigned i = 0; ok && i < RACE_LOGINS; i++)
                ok = put_login(&all, 100 + i, h[i], pin);
        ok = ok && !nbuf_failed(&all) && raw_send_all(fd, all.data, all.len) == 0;
        nbuf_done(&all);
        *ret_want = *ret_already = 0;
        for (unsigned i = 0; ok && i < RACE_LOGINS; i++) {
                CK_RV rv = raw_reply_rv(fd, WIRE_OP_LOGIN, NULL);
                *ret_want += rv == want;
                *ret_already += rv == CKR_USER_ALREADY_LOGGED_IN;
        }
        if (fd >= 0)
                close(fd);
        if (!ok)
                fprintf(stderr, "FAIL: login burst could not be sent\n");
        return ok;
}

static void scenario_login_race(void) {
        int before = user_tries_left();
        REQUIRE(before >= 2);
        unsigned incorrect, already;
        REQUIRE(login_burst("999999", CKR_PIN_INCORRECT, &incorrect, &already));
        int after = user_tries_left();
        fprintf(stderr, "login-race: %u of %u answered CKR_PIN_INCORRECT; tries left %d before, %d after\n",
                incorrect, RACE_LOGINS, before, after);
        CHECK(incorrect == RACE_LOGINS);
        CHECK(after == before - 1);
        /* The right PIN, at once on all sessions: one login, the others
         * find it done. */
        unsigned good;
        REQUIRE(login_burst(TU_USER_PIN, CKR_OK, &good, &already));
        fprintf(stderr, "login-race: right PIN: %u CKR_OK, %u CKR_USER_ALREADY_LOGGED_IN; tries left %d\n", good,
                already, user_tries_left());
        CHECK(good == 1 && already == RACE_LOGINS - 1);
        CHECK(user_tries_left() == before);
}

/* ------------------------------------------------------------- exponent */

/* The module, initialized, and a R/W session on the token. */
static bool module_session(CK_SESSION_HANDLE *ret) {
        CK_SLOT_ID slot;
        if (!f)
                f = tu_load_module(so_path, &module);
        return f && f->C_Initialize(NULL) == CKR_OK && tu_find_slot(f, LABEL, &slot) &&
               f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, ret) == CKR_OK;
}

/* C_CreateObject of a session RSA public key with a 4096-bit modulus and
 * the exponent e (e_len bytes); on CKR_OK, a C_Verify with it must say
 * CKR_SIGNATURE_INVALID. */
static CK_RV create_rsa_pub(CK_SESSION_HANDLE h, const CK_BYTE *e, CK_ULONG e_len) {
        static CK_BYTE n[512];
        memset(n, 0xc5, sizeof n); /* odd, top bit set: all mbedTLS checks of a modulus */
        CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
        CK_KEY_TYPE kt = CKK_RSA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },     { CKA_KEY_TYPE, &kt, sizeof kt },
                { CKA_TOKEN, &no, sizeof no },       { CKA_VERIFY, &yes, sizeof yes },
                { CKA_MODULUS, n, sizeof n },        { CKA_PUBLIC_EXPONENT, (void *)e, e_len },
        };
        CK_OBJECT_HANDLE o;
        CK_RV rv = f->C_CreateObject(h, t, sizeof t / sizeof t[0], &o);
        if (rv != CKR_OK)
                return rv;
        CK_MECHANISM mech = { CKM_RSA_X_509, NULL, 0 };
        CK_BYTE data[512] = { 0 }, sig[512] = { 0 };
        sig[511] = 2;
        CHECK_RV(f->C_VerifyInit(h, &mech, o), CKR_OK);
        CHECK_RV(f->C_Verify(h, data, sizeof data, sig, sizeof sig), CKR_SIGNATURE_INVALID);
        CHECK_RV(f->C_DestroyObject(h, o), CKR_OK);
        return rv;
}

static void scenario_exponent(void) {
        CK_SESSION_HANDLE h;
        REQUIRE(module_session(&h));
        static CK_BYTE e4095[512];
        memset(e4095, 0xff, sizeof e4095);
        e4095[0] = 0x7f;
        const CK_BYTE e65[9] = { 1, 0, 0, 0, 0, 0, 0, 0, 1 }; /* 2^64 + 1 */
        const CK_BYTE e64[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        const CK_BYTE f4[3] = { 1, 0, 1 };
        CHECK_RV(create_rsa_pub(h, e4095, sizeof e4095), CKR_ATTRIBUTE_VALUE_INVALID);
        CHECK_RV(create_rsa_pub(h, e65, sizeof e65), CKR_ATTRIBUTE_VALUE_INVALID);
        CHECK_RV(create_rsa_pub(h, e64, sizeof e64), CKR_OK);
        CHECK_RV(create_rsa_pub(h, f4, sizeof f4), CKR_OK);
}

/* ------------------------------------------------------------- sessions */

/* A request whose only argument is session h (C_CloseSession,
 * C_GetSessionInfo...): its CK_RV. */
static CK_RV raw_session_call(int fd, uint16_t op, CK_SESSION_HANDLE h) {
        struct wire_msg m;
        wire_msg_init_write(&m, op, 7, 0);
        wire_put_u64(&m, h);
        int r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        return r < 0 ? CKR_GENERAL_ERROR : raw_reply_rv(fd, op, NULL);
}

static void scenario_sessions(void) {
        int a = conn_open(), b = conn_open();
        CK_SLOT_ID slot;
        REQUIRE(a >= 0 && b >= 0);
        REQUIRE(raw_first_slot(a, &slot));
        static CK_SESSION_HANDLE h[SESSION_CAP];
        unsigned opened = 0;
        while (opened < SESSION_CAP && raw_open_session(a, slot, &h[opened]) == CKR_OK)
                opened++;
        CK_SESSION_HANDLE extra, other;
        CK_RV over = raw_open_session(a, slot, &extra);
        fprintf(stderr, "sessions: %u opened (cap %u), the next one: %s\n", opened, SESSION_CAP, tu_rv_name(over));
        CHECK(opened == SESSION_CAP);
        CHECK_RV(over, CKR_SESSION_COUNT);
        CHECK_RV(raw_open_session(b, slot, &other), CKR_OK);
        unsigned info_ok = 0, foreign_refused = 0;
        for (unsigned i = 0; i < opened; i++) {
                info_ok += raw_session_call(a, WIRE_OP_GET_SESSION_INFO, h[i]) == CKR_OK;
                foreign_refused += raw_session_call(b, WIRE_OP_GET_SESSION_INFO, h[i]) == CKR_SESSION_HANDLE_INVALID;
        }
        CHECK(info_ok == opened);
        CHECK(foreign_refused == opened);
        CHECK_RV(raw_session_call(a, WIRE_OP_GET_SESSION_INFO, other), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(raw_session_call(a, WIRE_OP_CLOSE_SESSION, h[opened / 2]), CKR_OK);
        CHECK_RV(raw_session_call(a, WIRE_OP_GET_SESSION_INFO, h[opened / 2]), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(raw_open_session(a, slot, &extra), CKR_OK);
        CHECK_RV(raw_open_session(a, slot, &extra), CKR_SESSION_COUNT);
        close(a);
        close(b);
        /* The cap counts per client: a new one has all of it. */
        REQUIRE((a = conn_open()) >= 0);
        for (opened = 0; opened < SESSION_CAP && raw_open_session(a, slot, &h[opened]) == CKR_OK;)
                opened++;
        CHECK(opened == SESSION_CAP);
        close(a);
}

/* ---------------------------------------------------------- verify-loop */

/* CPU time (ns) of netcad's thread tid (0: the sum over all its threads),
 * from schedstat; -1 when unreadable. */
static long long daemon_cpu_ns(pid_t tid) {
        char path[96];
        if (tid)
                snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)daemon_pid, (int)tid);
        else {
                long long sum = 0;
                snprintf(path, sizeof path, "/proc/%d/task", (int)daemon_pid);
                DIR *d = opendir(path);
                for (struct dirent *de; d && (de = readdir(d));)
                        if (de->d_name[0] != '.')
                                sum += daemon_cpu_ns((pid_t)atoi(de->d_name));
                if (d)
                        closedir(d);
                return sum;
        }
        FILE *fp = fopen(path, "re");
        long long ns = -1;
        if (fp && fscanf(fp, "%lld", &ns) != 1)
                ns = -1;
        if (fp)
                fclose(fp);
        return ns < 0 ? 0 : ns;
}

static void scenario_verify_loop(void) {
        int fd = conn_open();
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE h;
        CK_OBJECT_HANDLE key;
        REQUIRE(fd >= 0);
        REQUIRE(raw_first_slot(fd, &slot));
        REQUIRE_RV(raw_open_session(fd, slot, &h), CKR_OK);
        REQUIRE_RV(raw_create_costly_key(fd, h, &key), CKR_OK);
        struct nbuf all;
        nbuf_init(&all, 4u << 20);
        for (unsigned i = 0; i < VERIFY_ROUNDS; i++)
                raw_put_verify(&all, h, key);
        REQUIRE(!nbuf_failed(&all));
        long long loop0 = daemon_cpu_ns(daemon_pid), all0 = daemon_cpu_ns(0);
        REQUIRE(raw_send_all(fd, all.data, all.len) == 0);
        nbuf_done(&all);
        unsigned inits = 0, invalid = 0;
        for (unsigned i = 0; i < VERIFY_ROUNDS; i++) {
                inits += raw_reply_rv(fd, WIRE_OP_VERIFY_INIT, NULL) == CKR_OK;
                invalid += raw_reply_rv(fd, WIRE_OP_VERIFY, NULL) == CKR_SIGNATURE_INVALID;
        }
        long long loop = daemon_cpu_ns(daemon_pid) - loop0, total = daemon_cpu_ns(0) - all0;
        fprintf(stderr, "verify-loop: %u inits, %u verifications answered; netcad CPU %lld us, %lld us of it on the loop (%.0f%%)\n",
                inits, invalid, total / 1000, loop / 1000, total > 0 ? 100.0 * (double)loop / (double)total : 0.0);
        CHECK(inits == VERIFY_ROUNDS && invalid == VERIFY_ROUNDS);
        CHECK(total > 0 && loop * 2 < total);
        close(fd);
}

/* ------------------------------------------------------- kdf-iterations */

/* Before netcad starts: a second token, "crafted", whose file asks for
 * 2^31-2 PBKDF2 iterations. */
static void craft_token(void) {
        char *path = NULL;
        sqlite3 *db = NULL;
        int r = soft_token_create(data_dir, "crafted", TU_USER_PIN, strlen(TU_USER_PIN), TU_SO_PIN,
                                  strlen(TU_SO_PIN), 0, &path);
        bool ok = r == 0 && sqlite3_open(path, &db) == SQLITE_OK &&
                  sqlite3_exec(db, "UPDATE meta SET value = 2147483646 WHERE key = 'iterations'", NULL, NULL, NULL) ==
                          SQLITE_OK &&
                  sqlite3_changes(db) == 1;
        sqlite3_close(db);
        free(path);
        if (!ok) {
                fprintf(stderr, "FATAL: cannot craft the token file\n");
                exit(1);
        }
}

static void scenario_kdf_iterations(void) {
        cJSON *tokens = token_list();
        unsigned good = 0, crafted = 0;
        cJSON *t;
        cJSON_ArrayForEach(t, tokens) {
                const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(t, "label"));
                good += label && strcmp(label, LABEL) == 0;
                crafted += label && strcmp(label, "crafted") == 0;
        }
        cJSON_Delete(tokens);
        fprintf(stderr, "kdf-iterations: listed: %u good token, %u crafted one\n", good, crafted);
        CHECK(good == 1);
        CHECK(crafted == 0);
        unsigned ok, already;
        REQUIRE(login_burst(TU_USER_PIN, CKR_OK, &ok, &already));
        CHECK(ok == 1);
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s login-race|exponent|sessions|verify-loop|kdf-iterations\n", argv[0]);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        so_path = tu_env_path("NETCA_PKCS11_MODULE");
        netcad_path = tu_env_path("NETCA_NETCAD");
        setup();
        const char *s = argv[1];
        void (*run)(void) = NULL;
        if (strcmp(s, "login-race") == 0)
                run = scenario_login_race;
        else if (strcmp(s, "exponent") == 0)
                run = scenario_exponent;
        else if (strcmp(s, "sessions") == 0)
                run = scenario_sessions;
        else if (strcmp(s, "verify-loop") == 0)
                run = scenario_verify_loop;
        else if (strcmp(s, "kdf-iterations") == 0) {
                craft_token();
                run = scenario_kdf_iterations;
        }
        if (!run) {
                fprintf(stderr, "unknown scenario %s\n", s);
                cleanup();
                return 2;
        }
        daemon_pid = tu_start_daemon(netcad_path, sock, data_dir);
        if (daemon_pid > 0)
                run();
        cleanup();
        if (tu_failures) {
                fprintf(stderr, "hostile-core %s: %u check(s) failed\n", s, tu_failures);
                return 1;
        }
        fprintf(stderr, "hostile-core %s: passed\n", s);
        return 0;
}
