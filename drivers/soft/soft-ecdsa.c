/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ECDSA signing for the soft token: P-256 and P-384 (soft-internal.h).
 *
 * Where the time goes (perf, issue 3): an ECDSA signature is R = k*G, the
 * scalar multiplication (about 95% of the cost), then a few operations
 * modulo n that need the key and the hash.  Three things follow:
 *
 * - Groups are kept.  mbedTLS computes a comb table for G on a group's first
 *   multiplication and caches it in the group; a freshly loaded group pays
 *   for it again (measured: ~1.7x the cost of a signature).  A few loaded
 *   groups per curve are kept in a free list and lent to whoever signs, so
 *   that signatures with the same key never wait for each other (the key's
 *   own group is not used: an mbedTLS group is not safe for concurrent use
 *   while its table is being built).
 *
 * - Nonces are precomputed.  k*G needs neither the key nor the message, so a
 *   background thread per CPU computes "presignatures" ahead of time, while
 *   the daemon waits for a client's next request or on a second core.  A
 *   sign then takes one from the pool and finishes in microseconds.  With
 *   the pool empty (every CPU busy) it presigns inline, which costs what
 *   mbedtls_ecdsa_sign costs.  The threads start with the first signature of
 *   the process, refill a curve's pool only once that curve has been used,
 *   and sleep (no timers, no wake-ups) once the pools are full, so they only
 *   ever do, ahead of time, the work of signatures already made: at most
 *   POOL_MAX presignatures per curve after the last one.  One per CPU: with
 *   a single one, 2 signing threads on 2 CPUs made 2,220-2,340 signatures/s,
 *   with two 2,460-2,600 (the idle moments of both CPUs are used).
 *   They run at normal priority.  At SCHED_IDLE (until 2026-12-02) every
 *   wake-up of the daemon's or the client's threads preempted one, and on
 *   the benchmark's paravirtualised machine that cost the daemon ~170 us of
 *   kernel time per signature, against ~60 us at normal priority: 1 signing
 *   thread 2,580-2,610 -> 3,210-3,360 signatures/s, 2 threads 2,040 ->
 *   2,890-3,040 (bench/, same runs).
 *
 * - The private scalar is kept in locked memory, outside mbedTLS's heap
 *   (struct soft_ec_key).
 *
 * Security of the pool: an ECDSA nonce must be secret, uniform and never
 * used twice.  A presignature is (r, t, u) with r = x(k*G) mod n, t a random
 * blinding value and u = (k*t)^-1 mod n; k itself is wiped once u is
 * computed.  Presignatures live in locked, non-dumpable memory (secmem.h);
 * one is claimed by an atomic compare-and-swap (so exactly one signer gets
 * it), copied out and wiped in the pool, and the copy is wiped after use.  A forked child empties the pool (pthread_atfork) and the pid is
 * checked on every take, so parent and child never share a nonce.  The
 * signature s = (e + r*d) * t * u mod n is the value mbedtls_ecdsa_sign
 * computes (it blinds the same inversion with t), with k drawn the same way
 * (mbedtls_ecp_gen_privkey) from the process DRBG.  The pool is not tied to
 * any key or login: its values are random and worthless without the
 * signature made from them, so logout does not need to drop it.
 *
 * NETCA_SOFT_ECDSA_POOL=0 in the environment (read once) turns the pool off,
 * for measurements. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/platform_util.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "common/util.h"
#include "soft-internal.h"

#define EC_MAX_BYTES 48  /* P-384 */
#define POOL_MAX 32      /* presignatures kept per curve */
#define GROUPS_MAX 8     /* idle loaded groups kept per curve */
#define REFILL_THREADS_MAX 4

struct presig {
        uint8_t r[EC_MAX_BYTES], t[EC_MAX_BYTES], u[EC_MAX_BYTES];
};

/* A pool slot moves EMPTY -> FILLING (refill thread) -> FULL -> TAKING (a
 * signer) -> EMPTY, each step by an atomic compare-and-swap: the refill
 * thread never holds a lock, so a signer never waits for one that was
 * preempted while holding it. */
enum { SLOT_EMPTY, SLOT_FILLING, SLOT_FULL, SLOT_TAKING };
struct slot {
        int state;               /* atomic */
        struct presig p;
};

struct curve {
        mbedtls_ecp_group_id id;
        size_t nbytes;                   /* bytes of the order n */
        mbedtls_ecp_group *groups[GROUPS_MAX];
        size_t n_groups;
        struct slot *pool;               /* atomic pointer; secure memory, POOL_MAX slots; NULL until used */
        int wanted;                      /* atomic: signed with at least once, keep the pool full */
};

/* Signers only (never the refill thread): groups, pool allocation, thread start. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sem_t refill_sem;                 /* posted when a slot empties: wakes the refill thread */
static struct curve curves[] = {
        { .id = MBEDTLS_ECP_DP_SECP256R1, .nbytes = 32 },
        { .id = MBEDTLS_ECP_DP_SECP384R1, .nbytes = 48 },
};
static int pool_on = 1;                  /* atomic */
static unsigned threads_running;         /* refill threads, under lock */
static pid_t pool_pid;                   /* atomic: the process the pool belongs to */
static uint64_t n_pooled, n_inline;      /* atomic */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static struct curve *curve_of(mbedtls_ecp_group_id id) {
        for (size_t i = 0; i < ELEMENTSOF(curves); i++)
                if (curves[i].id == id)
                        return &curves[i];
        return NULL;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define CAS(x, from, to) \
        ({ \
                int _f = (from); \
                __atomic_compare_exchange_n(&(x), &_f, (to), false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE); \
        })

/* Empties the FULL slots (wiped).  A slot being filled is dropped by the
 * refill thread itself when it sees the pool off. */
static void pool_drain(void) {
        for (size_t i = 0; i < ELEMENTSOF(curves); i++) {
                struct slot *pool = LOAD(curves[i].pool);
                for (size_t j = 0; pool && j < POOL_MAX; j++)
                        if (CAS(pool[j].state, SLOT_FULL, SLOT_TAKING)) {
                                mbedtls_platform_zeroize(&pool[j].p, sizeof pool[j].p);
                                STORE(pool[j].state, SLOT_EMPTY);
                        }
        }
}

static void atfork_prepare(void) { pthread_mutex_lock(&lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&lock); }
static void atfork_child(void) {
        /* The refill thread does not exist here, and the parent may use
         * every presignature it holds (also one it was filling). */
        for (size_t i = 0; i < ELEMENTSOF(curves); i++) {
                struct curve *c = &curves[i];
                if (c->pool)
                        mbedtls_platform_zeroize(c->pool, POOL_MAX * sizeof *c->pool); /* all SLOT_EMPTY */
                c->wanted = 0;
        }
        (void) sem_init(&refill_sem, 0, 0);
        threads_running = 0;
        pool_pid = getpid();
        pthread_mutex_unlock(&lock);
}

static void init_once(void) {
        const char *e = secure_getenv("NETCA_SOFT_ECDSA_POOL");
        if (e && strcmp(e, "0") == 0)
                pool_on = 0;
        (void) sem_init(&refill_sem, 0, 0);
        pool_pid = getpid();
        (void) pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* A loaded group of curve c (its comb table kept from earlier use), or NULL. */
static mbedtls_ecp_group *group_get(struct curve *c) {
        mbedtls_ecp_group *g = NULL;
        pthread_mutex_lock(&lock);
        if (c->n_groups > 0)
                g = c->groups[--c->n_groups];
        pthread_mutex_unlock(&lock);
        if (g)
                return g;
        g = malloc(sizeof *g);
        if (!g)
                return NULL;
        mbedtls_ecp_group_init(g);
        if (mbedtls_ecp_group_load(g, c->id) != 0) {
                mbedtls_ecp_group_free(g);
                free(g);
                return NULL;
        }
        return g;
}

static void group_put(struct curve *c, mbedtls_ecp_group *g) {
        if (!g)
                return;
        pthread_mutex_lock(&lock);
        if (c->n_groups < GROUPS_MAX) {
                c->groups[c->n_groups++] = g;
                g = NULL;
        }
        pthread_mutex_unlock(&lock);
        if (g) {
                mbedtls_ecp_group_free(g);
                free(g);
        }
}

static int mbed_errno(int rc) {
        if (rc == MBEDTLS_ERR_MPI_ALLOC_FAILED || rc == MBEDTLS_ERR_ECP_ALLOC_FAILED)
                return -ENOMEM;
        return -EIO;
}

/* Computes one presignature with group g of curve c. */
static int presign(struct curve *c, mbedtls_ecp_group *g, struct presig *ret) {
        mbedtls_mpi k, t, r, u;
        mbedtls_ecp_point R;
        int rc;

        mbedtls_mpi_init(&k);
        mbedtls_mpi_init(&t);
        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&u);
        mbedtls_ecp_point_init(&R);
        for (unsigned tries = 0;; tries++) {
                /* r = 0 has probability ~2^-256: give up rather than loop
                 * forever on a broken generator. */
                if (tries >= 10) {
                        rc = MBEDTLS_ERR_ECP_RANDOM_FAILED;
                        goto out;
                }
                rc = mbedtls_ecp_gen_privkey(g, &k, pkc_rng, NULL);
                if (rc == 0)
                        rc = mbedtls_ecp_mul(g, &R, &k, &g->G, pkc_rng, NULL);
                if (rc == 0)
                        rc = mbedtls_mpi_mod_mpi(&r, &R.X, &g->N);
                if (rc != 0)
                        goto out;
                if (mbedtls_mpi_cmp_int(&r, 0) != 0)
                        break;
        }
        /* u = (k t)^-1 mod n: t blinds the inversion (its timing depends on
         * the value inverted). */
        rc = mbedtls_ecp_gen_privkey(g, &t, pkc_rng, NULL);
        if (rc == 0)
                rc = mbedtls_mpi_mul_mpi(&u, &k, &t);
        if (rc == 0)
                rc = mbedtls_mpi_mod_mpi(&u, &u, &g->N);
        if (rc == 0)
                rc = mbedtls_mpi_inv_mod(&u, &u, &g->N);
        if (rc == 0)
                rc = mbedtls_mpi_write_binary(&r, ret->r, c->nbytes);
        if (rc == 0)
                rc = mbedtls_mpi_write_binary(&t, ret->t, c->nbytes);
        if (rc == 0)
                rc = mbedtls_mpi_write_binary(&u, ret->u, c->nbytes);
out:
        mbedtls_mpi_free(&k);
        mbedtls_mpi_free(&t);
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&u);
        mbedtls_ecp_point_free(&R);
        if (rc != 0) {
                mbedtls_platform_zeroize(ret, sizeof *ret);
                return mbed_errno(rc);
        }
        return 0;
}

/* s = (e + r d) t u mod n, with e the hash as an integer (SEC 1, 4.1.3
 * step 5: its leftmost nbits bits).  0 and r||s in out, -EAGAIN if s is 0
 * (take another presignature). */
static int finish(const struct curve *c, const mbedtls_mpi *N, size_t nbits, const struct presig *p,
                  const mbedtls_mpi *d, const uint8_t *hash, size_t hash_len, uint8_t *out) {
        mbedtls_mpi e, r, t, u, s;
        int rc;

        mbedtls_mpi_init(&e);
        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&t);
        mbedtls_mpi_init(&u);
        mbedtls_mpi_init(&s);
        size_t use = hash_len > c->nbytes ? c->nbytes : hash_len;
        rc = mbedtls_mpi_read_binary(&e, hash, use);
        if (rc == 0 && use * 8 > nbits)
                rc = mbedtls_mpi_shift_r(&e, use * 8 - nbits);
        if (rc == 0 && mbedtls_mpi_cmp_mpi(&e, N) >= 0)
                rc = mbedtls_mpi_sub_mpi(&e, &e, N);
        if (rc == 0)
                rc = mbedtls_mpi_read_binary(&r, p->r, c->nbytes);
        if (rc == 0)
                rc = mbedtls_mpi_read_binary(&t, p->t, c->nbytes);
        if (rc == 0)
                rc = mbedtls_mpi_read_binary(&u, p->u, c->nbytes);
        if (rc == 0)
                rc = mbedtls_mpi_mul_mpi(&s, &r, d);
        if (rc == 0)
                rc = mbedtls_mpi_add_mpi(&s, &s, &e);
        if (rc == 0)
                rc = mbedtls_mpi_mul_mpi(&s, &s, &t);
        if (rc == 0)
                rc = mbedtls_mpi_mod_mpi(&s, &s, N);
        if (rc == 0)
                rc = mbedtls_mpi_mul_mpi(&s, &s, &u);
        if (rc == 0)
                rc = mbedtls_mpi_mod_mpi(&s, &s, N);
        if (rc == 0 && mbedtls_mpi_cmp_int(&s, 0) == 0)
                rc = -EAGAIN;
        if (rc == 0)
                rc = mbedtls_mpi_write_binary(&r, out, c->nbytes);
        if (rc == 0)
                rc = mbedtls_mpi_write_binary(&s, out + c->nbytes, c->nbytes);
        mbedtls_mpi_free(&e);
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&t);
        mbedtls_mpi_free(&u);
        mbedtls_mpi_free(&s);
        if (rc == -EAGAIN)
                return rc;
        return rc == 0 ? 0 : mbed_errno(rc);
}

/* The refill thread: fills EMPTY slots of the curves in use, sleeps on
 * refill_sem when there is none.  Takes no lock (see struct slot). */
static void *refill_main(void *arg) {
        (void) arg;

        mbedtls_ecp_group own[ELEMENTSOF(curves)];
        bool loaded[ELEMENTSOF(curves)] = { false };
        bool warned = false;
        pid_t me = LOAD(pool_pid);
        for (;;) {
                bool did = false;
                for (size_t i = 0; i < ELEMENTSOF(curves) && LOAD(pool_on); i++) {
                        struct curve *c = &curves[i];
                        struct slot *pool = LOAD(c->pool);
                        if (!pool || !LOAD(c->wanted))
                                continue;
                        for (size_t j = 0; j < POOL_MAX; j++) {
                                if (!CAS(pool[j].state, SLOT_EMPTY, SLOT_FILLING))
                                        continue;
                                if (!loaded[i]) {
                                        mbedtls_ecp_group_init(&own[i]);
                                        loaded[i] = mbedtls_ecp_group_load(&own[i], c->id) == 0;
                                }
                                int r = loaded[i] ? presign(c, &own[i], &pool[j].p) : -ENOMEM;
                                if (r < 0 || !LOAD(pool_on) || LOAD(pool_pid) != me) {
                                        if (r < 0 && !warned) {
                                                log_warning("soft token: ECDSA presignature failed (%d)", r);
                                                warned = true;
                                        }
                                        mbedtls_platform_zeroize(&pool[j].p, sizeof pool[j].p);
                                        STORE(pool[j].state, SLOT_EMPTY);
                                        if (r < 0)
                                                break; /* the signers presign inline */
                                } else {
                                        STORE(pool[j].state, SLOT_FULL);
                                        did = true;
                                }
                                break;
                        }
                }
                if (!did)
                        while (sem_wait(&refill_sem) < 0 && errno == EINTR)
                                ;
        }
        return NULL;
}

/* Marks the curve used and makes sure the refill thread runs. */
static void want_refill(struct curve *c) {
        if (!LOAD(pool_on))
                return;
        if (LOAD(c->wanted))
                return;
        pthread_mutex_lock(&lock);
        if (!c->pool) {
                struct slot *pool = secure_alloc(POOL_MAX * sizeof *pool);
                if (!pool)
                        goto out;
                STORE(c->pool, pool);
        }
        if (threads_running == 0) {
                /* One per CPU (at most REFILL_THREADS_MAX): with one, the
                 * idle time of the other CPUs was lost (a signer waiting for
                 * its client's next request leaves its CPU idle). */
                long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
                unsigned want = ncpu < 1 ? 1 : ncpu > REFILL_THREADS_MAX ? REFILL_THREADS_MAX : (unsigned) ncpu;
                pthread_attr_t attr;
                pthread_t th;
                sigset_t all, old;
                /* Signals stay with the daemon's own threads. */
                sigfillset(&all);
                pthread_sigmask(SIG_SETMASK, &all, &old);
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                /* Small stack: mbedTLS keeps its numbers on the heap. */
                pthread_attr_setstacksize(&attr, 128 * 1024);
                for (unsigned i = 0; i < want; i++)
                        if (pthread_create(&th, &attr, refill_main, NULL) == 0)
                                threads_running++;
                pthread_attr_destroy(&attr);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        if (threads_running > 0)
                STORE(c->wanted, 1);
out:
        pthread_mutex_unlock(&lock);
        sem_post(&refill_sem);
}

/* Takes one presignature of curve c into *ret: true if there was one. */
static bool pool_take(struct curve *c, struct presig *ret) {
        struct slot *pool = LOAD(c->pool);
        bool got = false;
        /* A child forked without pthread_atfork having run (raw clone):
         * never use the parent's nonces. */
        if (LOAD(pool_on) && pool && LOAD(pool_pid) == getpid())
                for (size_t j = 0; j < POOL_MAX && !got; j++)
                        if (LOAD(pool[j].state) == SLOT_FULL && CAS(pool[j].state, SLOT_FULL, SLOT_TAKING)) {
                                *ret = pool[j].p;
                                mbedtls_platform_zeroize(&pool[j].p, sizeof pool[j].p);
                                STORE(pool[j].state, SLOT_EMPTY);
                                got = true;
                        }
        __atomic_add_fetch(got ? &n_pooled : &n_inline, 1, __ATOMIC_RELAXED);
        if (got)
                sem_post(&refill_sem);
        want_refill(c);
        return got;
}

bool soft_ecdsa_supported(mbedtls_ecp_group_id id) {
        return curve_of(id) != NULL;
}

int soft_ec_key_new(const mbedtls_ecp_keypair *ec, struct soft_ec_key **ret) {
        if (!ec || !ret || !curve_of(ec->grp.id) || ec->d.s != 1 || ec->d.n == 0)
                return -EINVAL;
        size_t limbs = ec->d.n;
        struct soft_ec_key *k = secure_alloc(sizeof *k + limbs * sizeof(mbedtls_mpi_uint));
        if (!k)
                return -ENOMEM;
        k->id = ec->grp.id;
        k->nbits = ec->grp.nbits;
        k->limbs = (mbedtls_mpi_uint *) (k + 1);
        memcpy(k->limbs, ec->d.p, limbs * sizeof(mbedtls_mpi_uint));
        /* A read-only view: mbedTLS reads d as an operand and never grows
         * or frees it (no mbedtls_mpi_free on it; soft_ec_key_free wipes). */
        k->d.s = 1;
        k->d.n = limbs;
        k->d.p = k->limbs;
        *ret = k;
        return 0;
}

struct soft_ec_key *soft_ec_key_free(struct soft_ec_key *k) {
        return secure_free(k);
}

int soft_ecdsa_sign(const struct soft_ec_key *key, const uint8_t *hash, size_t hash_len, uint8_t *out,
                    size_t out_len) {
        if (!key || !out || (!hash && hash_len))
                return -EINVAL;
        struct curve *c = curve_of(key->id);
        if (!c)
                return -ENOKEY;
        if (out_len != 2 * c->nbytes)
                return -ERANGE;
        if (hash_len == 0)
                return -ERANGE;
        pthread_once(&once, init_once);

        mbedtls_ecp_group *g = NULL;
        struct presig p;
        int r = -EAGAIN;
        /* s = 0 (probability ~2^-256) wants another nonce; bounded. */
        for (unsigned tries = 0; r == -EAGAIN && tries < 10; tries++) {
                if (!pool_take(c, &p)) {
                        if (!g && !(g = group_get(c))) {
                                r = -ENOMEM;
                                break;
                        }
                        r = presign(c, g, &p);
                        if (r < 0)
                                break;
                }
                /* N from a group we hold, or the curve's order loaded now
                 * (cheap: group_load points at static data). */
                if (g)
                        r = finish(c, &g->N, key->nbits, &p, &key->d, hash, hash_len, out);
                else {
                        mbedtls_ecp_group tmp;
                        mbedtls_ecp_group_init(&tmp);
                        if (mbedtls_ecp_group_load(&tmp, c->id) != 0)
                                r = -ENOMEM;
                        else
                                r = finish(c, &tmp.N, key->nbits, &p, &key->d, hash, hash_len, out);
                        mbedtls_ecp_group_free(&tmp);
                }
                mbedtls_platform_zeroize(&p, sizeof p);
        }
        if (r == -EAGAIN)
                r = -EIO;
        group_put(c, g);
        return r;
}

void soft_ecdsa_pool_enable(bool on) {
        pthread_once(&once, init_once);
        STORE(pool_on, on ? 1 : 0);
        if (!on)
                pool_drain();
        sem_post(&refill_sem);
}

void soft_ecdsa_stats(uint64_t *ret_pooled, uint64_t *ret_inline, size_t *ret_available) {
        size_t avail = 0;
        for (size_t i = 0; i < ELEMENTSOF(curves); i++) {
                struct slot *pool = LOAD(curves[i].pool);
                for (size_t j = 0; pool && j < POOL_MAX; j++)
                        avail += LOAD(pool[j].state) == SLOT_FULL;
        }
        if (ret_pooled)
                *ret_pooled = __atomic_load_n(&n_pooled, __ATOMIC_RELAXED);
        if (ret_inline)
                *ret_inline = __atomic_load_n(&n_inline, __ATOMIC_RELAXED);
        if (ret_available)
                *ret_available = avail;
}
