/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kill -9 in the middle of writes: a child creates objects in a loop and
 * reports each committed id through a pipe; it is SIGKILLed at random
 * points, about 20 times.  Afterwards every reported id must be there, every
 * reported private key must still sign, and SQLite's integrity check must
 * pass.  Also: the PIN retry counter is written before the PIN is checked,
 * so a child killed mid-login cannot have been refused more often than the
 * counter on disk says. */
#include "soft-helpers.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>

#define ROUNDS 20

struct rec {
        uint64_t id;
        uint64_t pub_id; /* for key pairs, else 0 */
};

static void child_create(const char *path, int fd, unsigned seed) {
        struct token *t;
        if (soft_token_open(path, &t) < 0)
                _exit(2);
        if (soft_login(t, CKU_USER, USER_PIN) < 0)
                _exit(3);
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL tru = CK_TRUE;
        uint8_t value[3000];
        for (unsigned i = 0;; i++) {
                struct rec r = { 0, 0 };
                if ((i + seed) % 4 == 0) {
                        struct dobj pub, priv;
                        soft_keygen(t, "p256", true, "dur", &pub, &priv);
                        r.id = priv.id;
                        r.pub_id = pub.id;
                        dobj_done(&pub);
                        dobj_done(&priv);
                } else {
                        memset(value, (int) (i & 0xff), sizeof value);
                        CK_ATTRIBUTE tm[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_TOKEN, &tru, 1 },
                                              { CKA_VALUE, value, 100 + (i * 37 + seed) % 2900 } };
                        struct dobj o;
                        if (soft_ops.create_object(t, tm, 3, true, &o) < 0)
                                _exit(4);
                        r.id = o.id;
                        dobj_done(&o);
                }
                if (write(fd, &r, sizeof r) != sizeof r)
                        _exit(5);
        }
}

static void child_wrong_pins(const char *path, int fd) {
        struct token *t;
        if (soft_token_open(path, &t) < 0)
                _exit(2);
        for (;;) {
                int r = soft_login(t, CKU_USER, "000000");
                uint8_t b = r == -EACCES ? 1 : 0;
                if (write(fd, &b, 1) != 1)
                        _exit(5);
        }
}

/* A writer that stops by itself after n objects. */
static void child_writer(const char *path, int fd, unsigned n) {
        struct token *t;
        if (soft_token_open(path, &t) < 0)
                _exit(2);
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL tru = CK_TRUE;
        for (unsigned i = 0; i < n; i++) {
                CK_ATTRIBUTE tm[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_TOKEN, &tru, 1 },
                                      { CKA_LABEL, "concurrent", 10 } };
                struct dobj o;
                if (soft_ops.create_object(t, tm, 3, true, &o) < 0)
                        _exit(4);
                struct rec r = { o.id, 0 };
                dobj_done(&o);
                if (write(fd, &r, sizeof r) != sizeof r)
                        _exit(5);
        }
        soft_ops.free(t);
        _exit(0);
}

static size_t read_all(int fd, void *buf, size_t cap) {
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, (uint8_t *) buf + n, cap - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                n += (size_t) k;
                if (n == cap)
                        break;
        }
        return n;
}

static pid_t spawn(const char *path, int mode, unsigned seed, int *ret_fd) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                if (mode == 0)
                        child_create(path, p[1], seed);
                else
                        child_wrong_pins(path, p[1]);
                _exit(0);
        }
        close(p[1]);
        *ret_fd = p[0];
        return pid;
}

static void kill_after(pid_t pid, unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        CHECK(kill(pid, SIGKILL) == 0);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        /* Killed, or it failed on its own (which is a test failure). */
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
                fprintf(stderr, "child exited with status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                CHECK(0);
        }
}

static void integrity(const char *path) {
        sqlite3 *db;
        sqlite3_stmt *st;
        CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        const char *res = (const char *) sqlite3_column_text(st, 0);
        CHECK(res);
        if (strcmp(res, "ok") != 0) {
                fprintf(stderr, "integrity_check: %s\n", res);
                CHECK(0);
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
}

int main(void) {
        const char *dir = unit_tmpdir_new();
        char *path;
        struct token *t = soft_new(dir, "durable", 100, &path);
        soft_ops.free(t);

        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        srand((unsigned) now.tv_nsec);

        static struct rec recs[100000];
        size_t nrec = 0;
        for (int round = 0; round < ROUNDS; round++) {
                int fd;
                pid_t pid = spawn(path, 0, (unsigned) round, &fd);
                /* Login costs a PBKDF2; kill anywhere from before it to well after. */
                kill_after(pid, 20 + (unsigned) (rand() % 300));
                size_t got = read_all(fd, &recs[nrec], sizeof recs - nrec * sizeof recs[0]);
                close(fd);
                nrec += got / sizeof recs[0]; /* a torn last record was never reported */
        }
        fprintf(stderr, "%zu objects reported over %d kills\n", nrec, ROUNDS);

        integrity(path);
        CHECK_OK(soft_token_open(path, &t));
        struct dobj *objs;
        size_t on;
        CHECK_OK(soft_ops.load_objects(t, &objs, &on));
        CHECK(on >= nrec);
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        size_t keys = 0;
        for (size_t i = 0; i < nrec; i++) {
                CHECK(find_obj(objs, on, recs[i].id));
                if (recs[i].pub_id && keys++ % 25 == 0) {
                        const struct dobj *pub = find_obj(objs, on, recs[i].pub_id);
                        CHECK(pub);
                        sign_and_verify(t, pub, recs[i].id, CKM_ECDSA);
                }
        }
        fprintf(stderr, "%zu key pairs, every 25th signed with\n", keys);
        dobj_free_array(objs, on);
        CHECK_OK(soft_ops.logout(t));
        soft_ops.free(t);

        /* Concurrent writers in several processes lose nothing. */
        {
                int fds[3];
                pid_t pids[3];
                for (int i = 0; i < 3; i++) {
                        int p[2];
                        CHECK(pipe2(p, O_CLOEXEC) == 0);
                        pids[i] = fork();
                        CHECK(pids[i] >= 0);
                        if (pids[i] == 0) {
                                close(p[0]);
                                child_writer(path, p[1], 40);
                        }
                        close(p[1]);
                        fds[i] = p[0];
                }
                static struct rec w[120];
                size_t nw = 0;
                for (int i = 0; i < 3; i++) {
                        nw += read_all(fds[i], &w[nw], sizeof w - nw * sizeof w[0]) / sizeof w[0];
                        close(fds[i]);
                        int st;
                        CHECK(waitpid(pids[i], &st, 0) == pids[i]);
                        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                }
                CHECK(nw == 120);
                CHECK_OK(soft_token_open(path, &t));
                CHECK_OK(soft_ops.load_objects(t, &objs, &on));
                for (size_t i = 0; i < nw; i++) {
                        CHECK(find_obj(objs, on, w[i].id));
                        for (size_t j = 0; j < i; j++)
                                CHECK(w[i].id != w[j].id);
                }
                dobj_free_array(objs, on);
                soft_ops.free(t);
        }

        /* Retry counter vs kill -9 during login. */
        for (int round = 0; round < 3; round++) {
                int fd;
                CHECK_OK(soft_token_open(path, &t));
                int before = soft_info(t).user_tries_left;
                soft_ops.free(t);
                pid_t pid = spawn(path, 1, 0, &fd);
                kill_after(pid, 50 + (unsigned) (rand() % 400));
                uint8_t res[1000];
                size_t got = read_all(fd, res, sizeof res);
                close(fd);
                int refused = 0;
                for (size_t i = 0; i < got; i++)
                        refused += res[i];
                CHECK_OK(soft_token_open(path, &t));
                int after = soft_info(t).user_tries_left;
                /* Every refusal the child saw is on disk (a kill mid-check may add one more). */
                CHECK(before - after >= refused);
                CHECK(before - after <= refused + 1);
                soft_ops.free(t);
        }
        integrity(path);
        free(path);
        return 0;
}
