/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The token lock's one owner (daemon/core-registry.c): a scope that holds
 * it releases it on every way out, TAKE_PTR hands the release on, and a
 * misuse (a second lock by the holder, an unlock by a thread that does not
 * hold it) aborts instead of corrupting the token. */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "unit.h"
#include "common/util.h"
#include "daemon/core-internal.h"

static bool lock_is_free(struct tok *k) {
        int r = pthread_mutex_trylock(&k->lock);
        if (r == 0)
                pthread_mutex_unlock(&k->lock);
        return r == 0;
}

/* Holds the lock in a scope and leaves it by the path chosen. */
static int scoped(struct tok *k, int way) {
        _cleanup_tok_unlock_ struct tok *held = tok_lock(k);
        if (way == 0)
                return 0;
        if (way == 1) {
                tok_unlock(TAKE_PTR(held));
                return 1;
        }
        return 2;
}

/* Runs fn in a child; true when it died of SIGABRT. */
static bool aborts(void (*fn)(struct tok *), struct tok *k) {
        fflush(NULL);
        pid_t p = fork();
        CHECK(p >= 0);
        if (p == 0) {
                /* The abort is expected: no core file for it. */
                struct rlimit no_core = { 0, 0 };
                setrlimit(RLIMIT_CORE, &no_core);
                signal(SIGABRT, SIG_DFL);
                fn(k);
                _exit(0);
        }
        int st;
        CHECK(waitpid(p, &st, 0) == p);
        return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void scoped_default(struct tok *k) {
        (void)scoped(k, 2);
}

static void lock_twice(struct tok *k) {
        tok_lock(k);
        tok_lock(k);
}

static void *other_unlocks(void *arg) {
        tok_unlock(arg);
        return NULL;
}

static void unlock_from_other_thread(struct tok *k) {
        tok_lock(k);
        pthread_t th;
        pthread_create(&th, NULL, other_unlocks, k);
        pthread_join(th, NULL);
}

static void unlock_unheld(struct tok *k) {
        tok_unlock(k);
}

int main(void) {
        struct tok k;
        memset(&k, 0, sizeof k);
        tok_lock_init(&k);
        CHECK(lock_is_free(&k));
        for (int way = 0; way < 3; way++) {
                CHECK(scoped(&k, way) == way);
                CHECK(lock_is_free(&k));
        }
        /* A NULL guard (a parallel_crypto driver's sign) releases nothing. */
        {
                _cleanup_tok_unlock_ struct tok *held = NULL;
                (void)held;
        }
        CHECK(lock_is_free(&k));
        CHECK(aborts(lock_twice, &k));
        CHECK(aborts(unlock_from_other_thread, &k));
        CHECK(aborts(unlock_unheld, &k));
        /* Not one of the misuses: a lock and unlock in a child exits 0. */
        CHECK(!aborts(scoped_default, &k));
        tok_lock_done(&k);
        printf("core-lock: ok\n");
        return 0;
}
