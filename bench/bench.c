/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench: throughput and latency of any PKCS#11 module, plus two limits.
 *
 * Not a test: it asserts nothing about timings.  bench/run.sh drives it
 * against netca, SoftHSM2 and SoftHSM2 behind p11-kit server, and prints a
 * table.  Every measuring mode prints one line per metric:
 *
 *     RESULT <metric> <unit> <min> <median> <max> <repetitions>
 *
 * Modes (options first, then the mode):
 *   prepare CERT.DER   log in, generate an EC P-256 and an RSA-2048 key pair
 *                      and store the certificate: 5 objects (skipped when the
 *                      token already holds 5)
 *   p11 METRIC...      sessinfo tokeninfo slotlist enum ecdsa ecdsa2 rsa
 *   fresh              spawns itself N times (mode fresh-child) and times
 *                      each process from fork to exit (ms)
 *   fresh-child        C_Initialize + C_GetSlotList + C_GetTokenInfo + C_Finalize
 *   sessions           opens -n sessions, prints "ready", waits for a line on
 *                      stdin, closes them (the script reads the daemon's RSS)
 *   pingpong           64-byte round trips over a Unix stream socket pair
 *                      between two processes
 *   mbedtls            in-process mbedTLS ECDSA P-256 signatures, -t threads
 *   isolation SLOW     median C_SignInit+C_Sign (ECDSA P-256) latency on the token -l, idle
 *                      and while the token labelled SLOW (made slow with
 *                      NETCA_SOFT_DELAY in netcad-test's environment) is kept busy
 *                      by 8 threads here and 8 in each of 2 other processes
 *                      (mode isolation-load): 24 concurrent slow signatures,
 *                      3x netcad's 8 workers; reports both medians, their
 *                      ratio per repetition, and the slow token's rate
 *   hostile ATTACKER OTHER
 *                      the same latency idle and while ATTACKER
 *                      (netca-bench-hostile, bench/hostile.c) attempts each
 *                      of faults 1-5 of issue 23 on the token labelled OTHER
 *                      from another process; both medians and the ratio
 *                      per fault
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/x509_crt.h>

#include "common/p11.h"

#define MAX_THREADS 8
#define P11_THREADS 2 /* sessions opened by mode p11: one per thread */
#define MAX_OBJECTS 64

static const char *opt_module;
static const char *opt_label;
static const char *opt_pin;
static double opt_duration = 1.0;
static unsigned opt_reps = 5;
static unsigned opt_count = 1000;
static unsigned opt_threads = 1;
static const char *self_path;

static CK_FUNCTION_LIST_PTR p11;
static CK_SLOT_ID slot;

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what, CK_RV rv) {
        fprintf(stderr, "bench: %s failed: CKR 0x%lx\n", what, (unsigned long)rv);
        exit(EXIT_FAILURE);
}

#define CHECK(call)                      \
        do {                             \
                CK_RV _rv = (call);      \
                if (_rv != CKR_OK)       \
                        die(#call, _rv); \
        } while (0)

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

static void report(const char *metric, const char *unit, double *v, unsigned n) {
        qsort(v, n, sizeof(double), cmp_double);
        double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        printf("RESULT %s %s %.6g %.6g %.6g %u\n", metric, unit, v[0], med, v[n - 1], n);
        fflush(stdout);
}

/* ---- module loading ---- */

static void load_module(void) {
        CK_C_GetFunctionList get;
        void *h;

        h = dlopen(opt_module, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "bench: dlopen %s: %s\n", opt_module, dlerror());
                exit(EXIT_FAILURE);
        }
        get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
        if (!get) {
                fprintf(stderr, "bench: %s has no C_GetFunctionList\n", opt_module);
                exit(EXIT_FAILURE);
        }
        CHECK(get(&p11));
}

static void initialize(void) {
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

        CHECK(p11->C_Initialize(&args));
}

static bool label_matches(const CK_UTF8CHAR label[32]) {
        size_t n = strlen(opt_label);

        if (n > 32 || memcmp(label, opt_label, n) != 0)
                return false;
        for (size_t i = n; i < 32; i++)
                if (label[i] != ' ')
                        return false;
        return true;
}

/* Finds the slot holding the token labelled opt_label. */
static void find_slot(void) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;
        CK_TOKEN_INFO ti;

        CHECK(p11->C_GetSlotList(CK_TRUE, slots, &n));
        for (CK_ULONG i = 0; i < n; i++) {
                if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                if (label_matches(ti.label)) {
                        slot = slots[i];
                        return;
                }
        }
        fprintf(stderr, "bench: no token labelled '%s' in %s\n", opt_label, opt_module);
        exit(EXIT_FAILURE);
}

/* The slot of the token labelled label (slot itself is left as it was). */
static CK_SLOT_ID slot_of(const char *label) {
        CK_SLOT_ID saved = slot, ret;
        const char *saved_label = opt_label;

        opt_label = label;
        find_slot();
        ret = slot;
        slot = saved;
        opt_label = saved_label;
        return ret;
}

static CK_SESSION_HANDLE open_session(void) {
        CK_SESSION_HANDLE s;

        CHECK(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
        return s;
}

static void login(CK_SESSION_HANDLE s) {
        CK_RV rv;

        if (!opt_pin) {
                fprintf(stderr, "bench: this mode needs --pin\n");
                exit(EXIT_FAILURE);
        }
        rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)opt_pin, strlen(opt_pin));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
                die("C_Login", rv);
}

static CK_ULONG find_all(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *objs, CK_ULONG max) {
        CK_ULONG n = 0;

        CHECK(p11->C_FindObjectsInit(s, NULL, 0));
        CHECK(p11->C_FindObjects(s, objs, max, &n));
        CHECK(p11->C_FindObjectsFinal(s));
        return n;
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt) {
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &kt, sizeof(kt) },
        };
        CK_OBJECT_HANDLE o;
        CK_ULONG n = 0;

        CHECK(p11->C_FindObjectsInit(s, tmpl, 2));
        CHECK(p11->C_FindObjects(s, &o, 1, &n));
        CHECK(p11->C_FindObjectsFinal(s));
        if (n != 1) {
                fprintf(stderr, "bench: key (class %lu, type %lu) not found; run prepare\n", (unsigned long)cls,
                        (unsigned long)kt);
                exit(EXIT_FAILURE);
        }
        return o;
}

/* ---- prepare ---- */

static void *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "rbe");
        unsigned char *buf = NULL;
        size_t len = 0, cap = 0;

        if (!f) {
                fprintf(stderr, "bench: %s: %s\n", path, strerror(errno));
                exit(EXIT_FAILURE);
        }
        for (;;) {
                if (len == cap) {
                        cap = cap ? cap * 2 : 4096;
                        buf = realloc(buf, cap);
                        if (!buf)
                                abort();
                }
                size_t k = fread(buf + len, 1, cap - len, f);
                if (k == 0)
                        break;
                len += k;
        }
        fclose(f);
        *ret_len = len;
        return buf;
}

static void prepare(const char *cert_path) {
        static const CK_BYTE p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_BBOOL t = CK_TRUE;
        CK_BYTE id_ec[] = { 0x01 }, id_rsa[] = { 0x02 };
        CK_ULONG bits = 2048;
        CK_BYTE e[] = { 0x01, 0x00, 0x01 };
        CK_OBJECT_HANDLE objs[MAX_OBJECTS], pub, priv, cert;
        CK_SESSION_HANDLE s;
        CK_ULONG n;

        load_module();
        initialize();
        find_slot();
        s = open_session();
        login(s);

        n = find_all(s, objs, MAX_OBJECTS);
        if (n == 5) {
                fprintf(stderr, "bench: token '%s' already holds 5 objects\n", opt_label);
                goto out;
        }
        if (n != 0) {
                fprintf(stderr, "bench: token '%s' holds %lu objects, expected 0 or 5\n", opt_label, (unsigned long)n);
                exit(EXIT_FAILURE);
        }

        {
                CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
                CK_ATTRIBUTE pubt[] = {
                        { CKA_TOKEN, &t, sizeof(t) },
                        { CKA_VERIFY, &t, sizeof(t) },
                        { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) },
                        { CKA_ID, id_ec, sizeof(id_ec) },
                        { CKA_LABEL, "bench-ec", 8 },
                };
                CK_ATTRIBUTE privt[] = {
                        { CKA_TOKEN, &t, sizeof(t) },     { CKA_PRIVATE, &t, sizeof(t) },
                        { CKA_SENSITIVE, &t, sizeof(t) }, { CKA_SIGN, &t, sizeof(t) },
                        { CKA_ID, id_ec, sizeof(id_ec) }, { CKA_LABEL, "bench-ec", 8 },
                };
                CHECK(p11->C_GenerateKeyPair(s, &mech, pubt, 5, privt, 6, &pub, &priv));
        }
        {
                CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
                CK_ATTRIBUTE pubt[] = {
                        { CKA_TOKEN, &t, sizeof(t) },
                        { CKA_VERIFY, &t, sizeof(t) },
                        { CKA_MODULUS_BITS, &bits, sizeof(bits) },
                        { CKA_PUBLIC_EXPONENT, e, sizeof(e) },
                        { CKA_ID, id_rsa, sizeof(id_rsa) },
                        { CKA_LABEL, "bench-rsa", 9 },
                };
                CK_ATTRIBUTE privt[] = {
                        { CKA_TOKEN, &t, sizeof(t) },       { CKA_PRIVATE, &t, sizeof(t) },
                        { CKA_SENSITIVE, &t, sizeof(t) },   { CKA_SIGN, &t, sizeof(t) },
                        { CKA_ID, id_rsa, sizeof(id_rsa) }, { CKA_LABEL, "bench-rsa", 9 },
                };
                CHECK(p11->C_GenerateKeyPair(s, &mech, pubt, 6, privt, 6, &pub, &priv));
        }
        {
                mbedtls_x509_crt crt;
                CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
                CK_CERTIFICATE_TYPE ct = CKC_X_509;
                size_t len;
                void *der = read_file(cert_path, &len);

                mbedtls_x509_crt_init(&crt);
                if (mbedtls_x509_crt_parse_der(&crt, der, len) != 0) {
                        fprintf(stderr, "bench: %s is not a DER X.509 certificate\n", cert_path);
                        exit(EXIT_FAILURE);
                }
                CK_ATTRIBUTE certt[] = {
                        { CKA_CLASS, &cls, sizeof(cls) },
                        { CKA_CERTIFICATE_TYPE, &ct, sizeof(ct) },
                        { CKA_TOKEN, &t, sizeof(t) },
                        { CKA_ID, id_rsa, sizeof(id_rsa) },
                        { CKA_LABEL, "bench-rsa", 9 },
                        { CKA_SUBJECT, crt.subject_raw.p, crt.subject_raw.len },
                        { CKA_ISSUER, crt.issuer_raw.p, crt.issuer_raw.len },
                        { CKA_VALUE, der, len },
                };
                CHECK(p11->C_CreateObject(s, certt, sizeof(certt) / sizeof(certt[0]), &cert));
                mbedtls_x509_crt_free(&crt);
                free(der);
        }
        n = find_all(s, objs, MAX_OBJECTS);
        fprintf(stderr, "bench: token '%s' now holds %lu objects\n", opt_label, (unsigned long)n);
        if (n != 5)
                exit(EXIT_FAILURE);
out:
        p11->C_CloseSession(s);
        p11->C_Finalize(NULL);
}

/* ---- the PKCS#11 loops ---- */

enum metric {
        M_SESSINFO,
        M_TOKENINFO,
        M_SLOTLIST,
        M_ENUM,
        M_ECDSA,
        M_RSA,
        M_RANDOM,
};

struct worker {
        pthread_t thread;
        enum metric metric;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE key;
        double duration;
        uint64_t ops;
        pthread_barrier_t *barrier;
};

static void one_op(struct worker *w) {
        switch (w->metric) {
        case M_SESSINFO: {
                CK_SESSION_INFO si;
                CHECK(p11->C_GetSessionInfo(w->session, &si));
                break;
        }
        case M_TOKENINFO: {
                CK_TOKEN_INFO ti;
                CHECK(p11->C_GetTokenInfo(slot, &ti));
                break;
        }
        case M_SLOTLIST: {
                CK_SLOT_ID slots[64];
                CK_ULONG n = 64;
                CHECK(p11->C_GetSlotList(CK_TRUE, slots, &n));
                break;
        }
        case M_ENUM: {
                CK_OBJECT_HANDLE objs[MAX_OBJECTS];
                CK_ULONG n = find_all(w->session, objs, MAX_OBJECTS);

                if (n != 5) {
                        fprintf(stderr, "bench: enumeration found %lu objects, expected 5\n", (unsigned long)n);
                        exit(EXIT_FAILURE);
                }
                for (CK_ULONG i = 0; i < n; i++) {
                        CK_OBJECT_CLASS cls;
                        CK_BYTE id[64];
                        CK_UTF8CHAR label[128];
                        CK_ATTRIBUTE a[] = {
                                { CKA_CLASS, &cls, sizeof(cls) },
                                { CKA_ID, id, sizeof(id) },
                                { CKA_LABEL, label, sizeof(label) },
                        };
                        CHECK(p11->C_GetAttributeValue(w->session, objs[i], a, 3));
                }
                break;
        }
        case M_ECDSA: {
                CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
                CK_BYTE hash[32] = { 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
                CK_BYTE sig[132];
                CK_ULONG len = sizeof(sig);
                CHECK(p11->C_SignInit(w->session, &mech, w->key));
                CHECK(p11->C_Sign(w->session, hash, sizeof(hash), sig, &len));
                break;
        }
        case M_RANDOM: {
                CK_BYTE buf[32];
                CHECK(p11->C_GenerateRandom(w->session, buf, sizeof(buf)));
                break;
        }
        case M_RSA: {
                CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };
                CK_BYTE data[32] = { 42 };
                CK_BYTE sig[512];
                CK_ULONG len = sizeof(sig);
                CHECK(p11->C_SignInit(w->session, &mech, w->key));
                CHECK(p11->C_Sign(w->session, data, sizeof(data), sig, &len));
                break;
        }
        }
}

static void *worker_run(void *userdata) {
        struct worker *w = userdata;
        /* Read the clock every `batch` operations: cheap calls would
         * otherwise measure clock_gettime too. */
        unsigned batch = w->metric <= M_SLOTLIST ? 32 : 1;
        double start, end;

        pthread_barrier_wait(w->barrier);
        start = now();
        end = start + w->duration;
        w->ops = 0;
        for (;;) {
                for (unsigned i = 0; i < batch; i++)
                        one_op(w);
                w->ops += batch;
                if (now() >= end)
                        break;
        }
        w->duration = now() - start;
        return NULL;
}

/* Runs the metric on nthreads threads, one session each, and returns the
 * total operations per second. */
static double run_once(enum metric m, unsigned nthreads, CK_SESSION_HANDLE *sessions, CK_OBJECT_HANDLE key) {
        struct worker w[MAX_THREADS] = {};
        pthread_barrier_t barrier;
        double rate = 0;

        pthread_barrier_init(&barrier, NULL, nthreads);
        for (unsigned i = 0; i < nthreads; i++) {
                w[i] = (struct worker){
                        .metric = m,
                        .session = sessions[i],
                        .key = key,
                        .duration = opt_duration,
                        .barrier = &barrier,
                };
                if (pthread_create(&w[i].thread, NULL, worker_run, &w[i]) != 0) {
                        fprintf(stderr, "bench: pthread_create failed\n");
                        exit(EXIT_FAILURE);
                }
        }
        for (unsigned i = 0; i < nthreads; i++) {
                pthread_join(w[i].thread, NULL);
                rate += (double)w[i].ops / w[i].duration;
        }
        pthread_barrier_destroy(&barrier);
        return rate;
}

static const struct {
        const char *name;
        enum metric metric;
        unsigned threads;
} metrics[] = {
        { "sessinfo", M_SESSINFO, 1 }, { "tokeninfo", M_TOKENINFO, 1 }, { "slotlist", M_SLOTLIST, 1 },
        { "enum", M_ENUM, 1 },         { "ecdsa", M_ECDSA, 1 },         { "ecdsa2", M_ECDSA, 2 },
        { "rsa", M_RSA, 1 },           { "random", M_RANDOM, 1 },
};

static void bench_p11(int argc, char **argv) {
        CK_SESSION_HANDLE sessions[P11_THREADS];
        CK_OBJECT_HANDLE ec_key, rsa_key;
        double v[opt_reps];

        load_module();
        initialize();
        find_slot();
        for (unsigned i = 0; i < P11_THREADS; i++)
                sessions[i] = open_session();
        login(sessions[0]);
        ec_key = find_key(sessions[0], CKO_PRIVATE_KEY, CKK_EC);
        rsa_key = find_key(sessions[0], CKO_PRIVATE_KEY, CKK_RSA);

        for (int a = 0; a < argc; a++) {
                size_t k;

                for (k = 0; k < sizeof(metrics) / sizeof(metrics[0]); k++)
                        if (strcmp(metrics[k].name, argv[a]) == 0)
                                break;
                if (k == sizeof(metrics) / sizeof(metrics[0])) {
                        fprintf(stderr, "bench: unknown metric '%s'\n", argv[a]);
                        exit(EXIT_FAILURE);
                }
                CK_OBJECT_HANDLE key = metrics[k].metric == M_RSA ? rsa_key : ec_key;
                /* A short warm-up, not counted. */
                double saved = opt_duration;
                opt_duration = 0.1;
                run_once(metrics[k].metric, metrics[k].threads, sessions, key);
                opt_duration = saved;
                for (unsigned r = 0; r < opt_reps; r++)
                        v[r] = run_once(metrics[k].metric, metrics[k].threads, sessions, key);
                report(metrics[k].name, "ops/s", v, opt_reps);
        }
        for (unsigned i = 0; i < P11_THREADS; i++)
                p11->C_CloseSession(sessions[i]);
        p11->C_Finalize(NULL);
}

/* ---- fresh process ---- */

static int fresh_child(void) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;
        CK_TOKEN_INFO ti;
        bool found = false;

        if (strcmp(opt_module, "none") == 0)
                return 0;
        load_module();
        double start = now();
        initialize();
        CHECK(p11->C_GetSlotList(CK_TRUE, slots, &n));
        for (CK_ULONG i = 0; i < n && !found; i++)
                if (p11->C_GetTokenInfo(slots[i], &ti) == CKR_OK && label_matches(ti.label))
                        found = true;
        double calls = now() - start;
        p11->C_Finalize(NULL);
        /* The three calls alone, for the parent (fd 3, when it gave one). */
        char line[32];
        int len = snprintf(line, sizeof line, "%.6f\n", calls * 1000);
        if (fcntl(3, F_GETFD) >= 0)
                (void)!write(3, line, (size_t)len);
        return found ? 0 : 2;
}

/* Two figures per process: the wall time from fork to exit ("fresh"), and
 * the time the child spent in C_Initialize + C_GetSlotList + C_GetTokenInfo
 * alone ("fresh-calls"), measured in the child around the calls and sent
 * back on a pipe (its fd 3). */
static void bench_fresh(void) {
        double v[opt_count], calls[opt_count];
        bool module = strcmp(opt_module, "none") != 0;

        for (unsigned i = 0; i < opt_count; i++) {
                int pfd[2];
                if (pipe(pfd) < 0) {
                        perror("bench: pipe");
                        exit(EXIT_FAILURE);
                }
                double start = now();
                int status;
                pid_t pid = fork();

                if (pid < 0) {
                        perror("bench: fork");
                        exit(EXIT_FAILURE);
                }
                if (pid == 0) {
                        close(pfd[0]);
                        if (pfd[1] != 3) {
                                dup2(pfd[1], 3);
                                close(pfd[1]);
                        }
                        execl(self_path, self_path, "-m", opt_module, "-l", opt_label, "fresh-child", (char *)NULL);
                        _exit(127);
                }
                close(pfd[1]);
                if (waitpid(pid, &status, 0) < 0) {
                        perror("bench: waitpid");
                        exit(EXIT_FAILURE);
                }
                v[i] = (now() - start) * 1000;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "bench: fresh-child failed (status 0x%x)\n", status);
                        exit(EXIT_FAILURE);
                }
                char line[32] = "";
                ssize_t got = read(pfd[0], line, sizeof line - 1);
                close(pfd[0]);
                if (module && got <= 0) {
                        fprintf(stderr, "bench: fresh-child sent no timing\n");
                        exit(EXIT_FAILURE);
                }
                calls[i] = got > 0 ? strtod(line, NULL) : 0;
        }
        report(module ? "fresh" : "fresh-exec-only", "ms", v, opt_count);
        if (module)
                report("fresh-calls", "ms", calls, opt_count);
}

/* ---- many sessions ---- */

static void bench_sessions(void) {
        CK_SESSION_HANDLE *s = calloc(opt_count, sizeof(*s));
        char line[16];

        if (!s)
                abort();
        load_module();
        initialize();
        find_slot();
        for (unsigned i = 0; i < opt_count; i++)
                s[i] = open_session();
        if (opt_pin)
                login(s[0]);
        printf("ready %u\n", opt_count);
        fflush(stdout);
        (void)fgets(line, sizeof(line), stdin);
        for (unsigned i = 0; i < opt_count; i++)
                p11->C_CloseSession(s[i]);
        p11->C_Finalize(NULL);
        free(s);
}

/* ---- limit: Unix socket ping-pong ---- */

static int full_io(int fd, unsigned char *buf, size_t len, bool wr) {
        size_t done = 0;

        while (done < len) {
                ssize_t k = wr ? write(fd, buf + done, len - done) : read(fd, buf + done, len - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -1;
                done += (size_t)k;
        }
        return 0;
}

static void bench_pingpong(void) {
        unsigned char buf[64] = { 7 };
        double v[opt_reps];
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("bench: socketpair");
                exit(EXIT_FAILURE);
        }
        pid = fork();
        if (pid < 0) {
                perror("bench: fork");
                exit(EXIT_FAILURE);
        }
        if (pid == 0) {
                close(sv[0]);
                while (full_io(sv[1], buf, sizeof(buf), false) == 0)
                        if (full_io(sv[1], buf, sizeof(buf), true) < 0)
                                break;
                _exit(0);
        }
        close(sv[1]);
        for (unsigned r = 0; r < opt_reps; r++) {
                double start = now(), end = start + opt_duration, t;
                uint64_t n = 0;

                do {
                        for (unsigned i = 0; i < 64; i++)
                                if (full_io(sv[0], buf, sizeof(buf), true) < 0 ||
                                    full_io(sv[0], buf, sizeof(buf), false) < 0) {
                                        fprintf(stderr, "bench: ping-pong I/O failed\n");
                                        exit(EXIT_FAILURE);
                                }
                        n += 64;
                        t = now();
                } while (t < end);
                v[r] = (double)n / (t - start);
        }
        close(sv[0]);
        waitpid(pid, NULL, 0);
        report("pingpong", "rt/s", v, opt_reps);
}

/* ---- limit: in-process mbedTLS ECDSA ---- */

struct mworker {
        pthread_t thread;
        mbedtls_ecdsa_context key;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_entropy_context entropy;
        pthread_barrier_t *barrier;
        double duration;
        uint64_t ops;
};

static void *mworker_run(void *userdata) {
        struct mworker *w = userdata;
        unsigned char hash[32] = { 1, 2, 3 };
        mbedtls_mpi r, s;
        double start, end;

        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&s);
        pthread_barrier_wait(w->barrier);
        start = now();
        end = start + w->duration;
        w->ops = 0;
        do {
                if (mbedtls_ecdsa_sign(&w->key.grp, &r, &s, &w->key.d, hash, sizeof(hash), mbedtls_ctr_drbg_random,
                                       &w->drbg) != 0) {
                        fprintf(stderr, "bench: mbedtls_ecdsa_sign failed\n");
                        exit(EXIT_FAILURE);
                }
                w->ops++;
        } while (now() < end);
        w->duration = now() - start;
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&s);
        return NULL;
}

static void bench_mbedtls(void) {
        struct mworker w[MAX_THREADS] = {};
        unsigned nt = opt_threads;
        double v[opt_reps];
        char name[32];

        for (unsigned i = 0; i < nt; i++) {
                mbedtls_entropy_init(&w[i].entropy);
                mbedtls_ctr_drbg_init(&w[i].drbg);
                mbedtls_ecdsa_init(&w[i].key);
                if (mbedtls_ctr_drbg_seed(&w[i].drbg, mbedtls_entropy_func, &w[i].entropy,
                                          (const unsigned char *)"bench", 5) != 0 ||
                    mbedtls_ecdsa_genkey(&w[i].key, MBEDTLS_ECP_DP_SECP256R1, mbedtls_ctr_drbg_random, &w[i].drbg) !=
                            0) {
                        fprintf(stderr, "bench: mbedTLS setup failed\n");
                        exit(EXIT_FAILURE);
                }
        }
        for (int r = -1; r < (int)opt_reps; r++) {
                pthread_barrier_t barrier;
                double rate = 0;

                pthread_barrier_init(&barrier, NULL, nt);
                for (unsigned i = 0; i < nt; i++) {
                        w[i].barrier = &barrier;
                        w[i].duration = r < 0 ? 0.1 : opt_duration; /* r = -1: warm-up */
                        pthread_create(&w[i].thread, NULL, mworker_run, &w[i]);
                }
                for (unsigned i = 0; i < nt; i++) {
                        pthread_join(w[i].thread, NULL);
                        rate += (double)w[i].ops / w[i].duration;
                }
                pthread_barrier_destroy(&barrier);
                if (r >= 0)
                        v[r] = rate;
        }
        for (unsigned i = 0; i < nt; i++) {
                mbedtls_ecdsa_free(&w[i].key);
                mbedtls_ctr_drbg_free(&w[i].drbg);
                mbedtls_entropy_free(&w[i].entropy);
        }
        snprintf(name, sizeof(name), nt == 1 ? "mbedtls-ecdsa" : "mbedtls-ecdsa%u", nt);
        report(name, "ops/s", v, opt_reps);
}

/* ---- isolation: a fast token's C_Sign latency while a slow token is busy ---- */

#define ISO_THREADS 8 /* loader threads per process */
#define ISO_PROCS 2   /* loader processes besides this one */

struct iso_loader {
        pthread_t thread;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE key;
};

static atomic_bool iso_go;      /* loaders sign while set */
static atomic_bool iso_quit;
static atomic_uint iso_busy;    /* loaders inside a sign (or about to be) */
static atomic_ulong iso_done;   /* slow signatures completed */

static void *iso_loader_run(void *userdata) {
        struct iso_loader *l = userdata;
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32] = { 9 }, sig[132];

        while (!atomic_load(&iso_quit)) {
                if (!atomic_load(&iso_go)) {
                        usleep(1000);
                        continue;
                }
                atomic_fetch_add(&iso_busy, 1);
                if (atomic_load(&iso_go)) {
                        CK_ULONG len = sizeof(sig);
                        CHECK(p11->C_SignInit(l->session, &mech, l->key));
                        CHECK(p11->C_Sign(l->session, hash, sizeof(hash), sig, &len));
                        atomic_fetch_add(&iso_done, 1);
                }
                atomic_fetch_sub(&iso_busy, 1);
        }
        return NULL;
}

/* Opens ISO_THREADS sessions on the token labelled slow_label, logs in and
 * makes a session EC key (nothing is stored on the token), starts the
 * loader threads (idle until iso_go). */
static void iso_loaders_start(const char *slow_label, struct iso_loader *l) {
        static const CK_BYTE p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_BBOOL t = CK_TRUE, f = CK_FALSE;
        CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_ATTRIBUTE pubt[] = {
                { CKA_TOKEN, &f, sizeof(f) },
                { CKA_VERIFY, &t, sizeof(t) },
                { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) },
        };
        CK_ATTRIBUTE privt[] = {
                { CKA_TOKEN, &f, sizeof(f) },
                { CKA_SIGN, &t, sizeof(t) },
        };
        CK_OBJECT_HANDLE pub, priv;
        CK_SLOT_ID saved = slot;

        slot = slot_of(slow_label);
        for (unsigned i = 0; i < ISO_THREADS; i++)
                l[i].session = open_session();
        login(l[0].session);
        CHECK(p11->C_GenerateKeyPair(l[0].session, &gen, pubt, 3, privt, 2, &pub, &priv));
        for (unsigned i = 0; i < ISO_THREADS; i++) {
                l[i].key = priv;
                if (pthread_create(&l[i].thread, NULL, iso_loader_run, &l[i]) != 0) {
                        fprintf(stderr, "bench: pthread_create failed\n");
                        exit(EXIT_FAILURE);
                }
        }
        slot = saved;
}

static void iso_loaders_stop(struct iso_loader *l) {
        atomic_store(&iso_go, false);
        atomic_store(&iso_quit, true);
        for (unsigned i = 0; i < ISO_THREADS; i++)
                pthread_join(l[i].thread, NULL);
}

static void iso_wait_idle(void) {
        while (atomic_load(&iso_busy) > 0)
                usleep(1000);
}

/* Mode isolation-load SLOW: a loader process driven by lines on stdin:
 * "go" (start signing), "stop" (stop; answers "idle N" once no sign of ours
 * is in flight, N the signatures done so far), EOF (exit). */
static void iso_load_child(const char *slow_label) {
        struct iso_loader l[ISO_THREADS];
        char line[32];

        load_module();
        initialize();
        iso_loaders_start(slow_label, l);
        printf("ready\n");
        fflush(stdout);
        while (fgets(line, sizeof(line), stdin)) {
                if (strncmp(line, "go", 2) == 0)
                        atomic_store(&iso_go, true);
                else if (strncmp(line, "stop", 4) == 0) {
                        atomic_store(&iso_go, false);
                        iso_wait_idle();
                        printf("idle %lu\n", (unsigned long)atomic_load(&iso_done));
                        fflush(stdout);
                }
        }
        iso_loaders_stop(l);
        p11->C_Finalize(NULL);
}

struct iso_child {
        pid_t pid;
        FILE *in, *out; /* its stdin, its stdout */
};

/* Starts argv[0] (argv NULL-terminated) with pipes on its stdin and
 * stdout, and waits for its "ready" line. */
static void child_start(struct iso_child *c, char *const argv[]) {
        int to[2], from[2];
        char line[32];

        if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
                perror("bench: pipe");
                exit(EXIT_FAILURE);
        }
        c->pid = fork();
        if (c->pid < 0) {
                perror("bench: fork");
                exit(EXIT_FAILURE);
        }
        if (c->pid == 0) {
                dup2(to[0], 0);
                dup2(from[1], 1);
                execv(argv[0], argv);
                _exit(127);
        }
        close(to[0]);
        close(from[1]);
        c->in = fdopen(to[1], "w");
        c->out = fdopen(from[0], "r");
        if (!c->in || !c->out || !fgets(line, sizeof(line), c->out) || strncmp(line, "ready", 5) != 0) {
                fprintf(stderr, "bench: %s did not start\n", argv[0]);
                exit(EXIT_FAILURE);
        }
}

static void child_end(struct iso_child *c) {
        fclose(c->in);
        fclose(c->out);
        waitpid(c->pid, NULL, 0);
}

static void iso_child_start(struct iso_child *c, const char *slow_label) {
        char *argv[] = { (char *)self_path, "-m",       (char *)opt_module, "-l", (char *)opt_label,
                         "isolation-load",  (char *)slow_label, NULL };

        child_start(c, argv);
}

static void iso_child_say(struct iso_child *c, const char *what) {
        fprintf(c->in, "%s\n", what);
        fflush(c->in);
}

/* Signatures the child has made so far, once it is idle. */
static unsigned long iso_child_idle(struct iso_child *c) {
        char line[64];
        unsigned long n = 0;

        if (!fgets(line, sizeof(line), c->out) || sscanf(line, "idle %lu", &n) != 1) {
                fprintf(stderr, "bench: a loader process failed\n");
                exit(EXIT_FAILURE);
        }
        return n;
}

/* Median signature latency (C_SignInit + C_Sign, us) on the fast token for opt_duration seconds. */
static double iso_measure(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key) {
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32] = { 1, 2, 3 }, sig[132];
        size_t n = 0, cap = 1024;
        double *lat = malloc(cap * sizeof(*lat)), end = now() + opt_duration, med;

        if (!lat)
                abort();
        do {
                CK_ULONG len = sizeof(sig);
                /* The whole signature: since issue 12 the module may send
                 * the C_SignInit with the C_Sign. */
                double t0 = now();
                CHECK(p11->C_SignInit(s, &mech, key));
                CHECK(p11->C_Sign(s, hash, sizeof(hash), sig, &len));
                double t1 = now();
                if (n == cap) {
                        cap *= 2;
                        lat = realloc(lat, cap * sizeof(*lat));
                        if (!lat)
                                abort();
                }
                lat[n++] = (t1 - t0) * 1e6;
        } while (now() < end);
        qsort(lat, n, sizeof(double), cmp_double);
        med = n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2;
        free(lat);
        return med;
}

/* The measuring client of isolation and hostile: the module loaded, a
 * logged-in session on the token -l and its EC key, warmed up. */
static void sign_client_start(CK_SESSION_HANDLE *ret_s, CK_OBJECT_HANDLE *ret_key) {
        double saved = opt_duration;

        load_module();
        initialize();
        find_slot();
        *ret_s = open_session();
        login(*ret_s);
        *ret_key = find_key(*ret_s, CKO_PRIVATE_KEY, CKK_EC);
        opt_duration = 0.1;
        iso_measure(*ret_s, *ret_key); /* warm-up */
        opt_duration = saved;
}

static void bench_isolation(const char *slow_label) {
        struct iso_loader l[ISO_THREADS];
        struct iso_child kids[ISO_PROCS];
        double idle[opt_reps], busy[opt_reps], ratio[opt_reps], slow_rate[opt_reps];
        unsigned long kids_done[ISO_PROCS] = { 0 };
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;

        /* The children first: they load the module themselves. */
        for (unsigned i = 0; i < ISO_PROCS; i++)
                iso_child_start(&kids[i], slow_label);
        sign_client_start(&s, &key);
        iso_loaders_start(slow_label, l);
        for (unsigned r = 0; r < opt_reps; r++) {
                idle[r] = iso_measure(s, key);

                unsigned long before = atomic_load(&iso_done), after;
                double t0 = now();
                for (unsigned i = 0; i < ISO_PROCS; i++)
                        iso_child_say(&kids[i], "go");
                atomic_store(&iso_go, true);
                /* Let every loader get its request into the daemon (a slow
                 * signature takes 200 ms). */
                usleep(300000);
                busy[r] = iso_measure(s, key);
                atomic_store(&iso_go, false);
                for (unsigned i = 0; i < ISO_PROCS; i++)
                        iso_child_say(&kids[i], "stop");
                iso_wait_idle();
                after = atomic_load(&iso_done);
                for (unsigned i = 0; i < ISO_PROCS; i++) {
                        unsigned long n = iso_child_idle(&kids[i]);
                        after += n - kids_done[i];
                        kids_done[i] = n;
                }
                /* Slow signatures per second from "go" until all are done:
                 * evidence that the slow token was busy. */
                slow_rate[r] = (double)(after - before) / (now() - t0);
                ratio[r] = busy[r] / idle[r];
        }
        report("sign-idle-latency", "us", idle, opt_reps);
        report("sign-busy-latency", "us", busy, opt_reps);
        report("isolation-ratio", "x", ratio, opt_reps);
        report("slow-token-rate", "ops/s", slow_rate, opt_reps);

        for (unsigned i = 0; i < ISO_PROCS; i++)
                child_end(&kids[i]);
        iso_loaders_stop(l);
        p11->C_CloseSession(s);
        p11->C_Finalize(NULL);
}

/* ---- hostile: a client's C_Sign latency while a neighbour attempts a fault ---- */

/* The faults of netca-bench-hostile (bench/hostile.c): issue 23, items 1-5. */
static const char *const hostile_faults[] = { "connections", "frames", "unread", "events", "cpu" };

/* For each fault: the median C_SignInit+C_Sign latency on the token -l,
 * idle and while the process ATTACKER attempts the fault on the token
 * labelled other (started afresh for each repetition, killed with its
 * process group after it), and the ratio per repetition. */
static void bench_hostile(const char *attacker, const char *other) {
        size_t nf = sizeof(hostile_faults) / sizeof(hostile_faults[0]);
        double idle[opt_reps], busy[opt_reps], ratio[opt_reps];
        char slot_arg[24], name[64];
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;

        sign_client_start(&s, &key);
        snprintf(slot_arg, sizeof(slot_arg), "%lu", (unsigned long)slot_of(other));
        for (size_t f = 0; f < nf; f++) {
                char *argv[] = { (char *)attacker, (char *)hostile_faults[f], slot_arg, NULL };

                for (unsigned r = 0; r < opt_reps; r++) {
                        struct iso_child c;

                        idle[r] = iso_measure(s, key);
                        child_start(&c, argv);
                        usleep(100000); /* under way: let it settle in */
                        busy[r] = iso_measure(s, key);
                        kill(-c.pid, SIGKILL);
                        child_end(&c);
                        usleep(200000); /* the daemon sees its connections go */
                        ratio[r] = busy[r] / idle[r];
                }
                snprintf(name, sizeof(name), "hostile-%s-idle", hostile_faults[f]);
                report(name, "us", idle, opt_reps);
                snprintf(name, sizeof(name), "hostile-%s-busy", hostile_faults[f]);
                report(name, "us", busy, opt_reps);
                snprintf(name, sizeof(name), "hostile-%s-ratio", hostile_faults[f]);
                report(name, "x", ratio, opt_reps);
        }
        p11->C_CloseSession(s);
        p11->C_Finalize(NULL);
}

/* ---- main ---- */

static _Noreturn void usage(int rc) {
        fprintf(rc ? stderr : stdout, "usage: bench [OPTIONS] MODE [ARGS...]\n"
                                      "  -m, --module PATH    PKCS#11 module\n"
                                      "  -l, --label LABEL    token label\n"
                                      "  -p, --pin PIN        user PIN (also from $BENCH_PIN)\n"
                                      "  -d, --duration SEC   length of one repetition (default 1)\n"
                                      "  -r, --reps N         repetitions (default 5)\n"
                                      "  -n, --count N        fresh: processes; sessions: sessions (default 1000)\n"
                                      "  -t, --threads N      mbedtls: threads (default 1)\n"
                                      "modes: prepare CERT.DER | p11 METRIC... | fresh | fresh-child | sessions |\n"
                                      "       pingpong | mbedtls | isolation SLOW-LABEL | isolation-load SLOW-LABEL |\n"
                                      "       hostile ATTACKER OTHER-LABEL\n"
                                      "metrics: sessinfo tokeninfo slotlist enum ecdsa ecdsa2 rsa\n");
        exit(rc);
}

int main(int argc, char **argv) {
        static const struct option opts[] = { { "module", required_argument, NULL, 'm' },
                                              { "label", required_argument, NULL, 'l' },
                                              { "pin", required_argument, NULL, 'p' },
                                              { "duration", required_argument, NULL, 'd' },
                                              { "reps", required_argument, NULL, 'r' },
                                              { "count", required_argument, NULL, 'n' },
                                              { "threads", required_argument, NULL, 't' },
                                              { "help", no_argument, NULL, 'h' },
                                              {} };
        const char *mode;
        int c;

        self_path = "/proc/self/exe";
        opt_pin = getenv("BENCH_PIN");
        while ((c = getopt_long(argc, argv, "+m:l:p:d:r:n:t:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'm': opt_module = optarg; break;
                case 'l': opt_label = optarg; break;
                case 'p': opt_pin = optarg; break;
                case 'd': opt_duration = strtod(optarg, NULL); break;
                case 'r': opt_reps = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'n': opt_count = (unsigned)strtoul(optarg, NULL, 10); break;
                case 't': opt_threads = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'h': usage(0);
                default: usage(2);
                }
        }
        if (optind >= argc)
                usage(2);
        if (opt_reps < 1 || opt_reps > 1000 || opt_count < 1 || opt_count > 100000 || opt_threads < 1 ||
            opt_threads > MAX_THREADS || !(opt_duration > 0))
                usage(2);
        mode = argv[optind++];

        if (strcmp(mode, "pingpong") == 0) {
                bench_pingpong();
                return 0;
        }
        if (strcmp(mode, "mbedtls") == 0) {
                bench_mbedtls();
                return 0;
        }
        if (!opt_module || !opt_label)
                usage(2);
        if (strcmp(mode, "fresh-child") == 0)
                return fresh_child();
        if (strcmp(mode, "fresh") == 0)
                bench_fresh();
        else if (strcmp(mode, "sessions") == 0)
                bench_sessions();
        else if (strcmp(mode, "prepare") == 0 && optind < argc)
                prepare(argv[optind]);
        else if (strcmp(mode, "isolation") == 0 && optind < argc)
                bench_isolation(argv[optind]);
        else if (strcmp(mode, "hostile") == 0 && optind + 1 < argc)
                bench_hostile(argv[optind], argv[optind + 1]);
        else if (strcmp(mode, "isolation-load") == 0 && optind < argc)
                iso_load_child(argv[optind]);
        else if (strcmp(mode, "p11") == 0 && optind < argc)
                bench_p11(argc - optind, argv + optind);
        else
                usage(2);
        return 0;
}
