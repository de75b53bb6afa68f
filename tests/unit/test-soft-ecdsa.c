/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token ECDSA (drivers/soft/soft-ecdsa.c): signatures made inline and
 * from the pool of precomputed nonces both verify (mbedTLS's verify, an
 * independent path), for P-256 and P-384 and hash lengths shorter and longer
 * than the order; no two signatures share r; the same key signs from several
 * threads at once; logout drops the cached key (sign fails with -EPERM until
 * the next login); a forked child starts with an empty pool and still
 * signs. */
#include "soft-helpers.h"

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "common/util.h"
#include "drivers/soft/soft-internal.h"

static void sign_hash(struct token *t, const struct dobj *pub, uint64_t priv, const uint8_t *hash, size_t hlen,
                      uint8_t *ret_r, size_t *ret_rlen) {
        mbedtls_pk_context pk;
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        uint8_t sig[96];
        size_t sl = sizeof sig, want;

        mbedtls_pk_init(&pk);
        CHECK_OK(pkc_pk_from_attrs(&pub->attrs, &pk));
        CHECK_OK(pkc_key_size(&pk, NULL, &want));
        CHECK_OK(soft_ops.sign(t, priv, &m, hash, hlen, sig, &sl));
        CHECK(sl == want);
        CHECK_OK(pkc_verify(&pk, &m, hash, hlen, sig, sl));
        /* A signature over another hash does not verify. */
        uint8_t other[64];
        memcpy(other, hash, hlen);
        other[0] ^= 0x80;
        CHECK_RC(pkc_verify(&pk, &m, other, hlen, sig, sl), -EBADMSG);
        if (ret_r) {
                memcpy(ret_r, sig, sl / 2);
                *ret_rlen = sl / 2;
        }
        mbedtls_pk_free(&pk);
}

static void sign_random(struct token *t, const struct dobj *pub, uint64_t priv, uint8_t *ret_r, size_t *ret_rlen) {
        uint8_t hash[32];
        CHECK_OK(pkc_random(hash, sizeof hash));
        sign_hash(t, pub, priv, hash, sizeof hash, ret_r, ret_rlen);
}

/* Waits (bounded) until the refill threads have put at least n
 * presignatures in the pools.  A loaded machine slows them down: the bound
 * is generous and only there so that a broken thread fails. */
static void wait_pool(size_t n) {
        for (int i = 0; i < 120 * 100; i++) {
                size_t avail;
                soft_ecdsa_stats(NULL, NULL, &avail);
                if (avail >= n)
                        return;
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        fprintf(stderr, "the ECDSA pool never reached %zu presignatures\n", n);
        exit(EXIT_FAILURE);
}

struct par_arg {
        struct token *t;
        const struct dobj *pub;
        uint64_t priv;
};

static void *par_sign(void *p) {
        struct par_arg *a = p;
        for (int i = 0; i < 25; i++)
                sign_random(a->t, a->pub, a->priv, NULL, NULL);
        return NULL;
}

#define N_R 200

int main(void) {
        const char *dir = unit_tmpdir_new();
        struct token *t = soft_new(dir, "ecdsa", 0, NULL);
        struct dobj p256_pub, p256_priv, p384_pub, p384_priv;
        uint64_t pooled0, inline0, pooled1, inline1;
        static uint8_t rs[N_R][48];
        size_t rlen[N_R];

        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        soft_keygen(t, "p256", true, "a", &p256_pub, &p256_priv);
        soft_keygen(t, "p384", true, "b", &p384_pub, &p384_priv);

        /* Pool off: every signature presigns inline. */
        soft_ecdsa_pool_enable(false);
        soft_ecdsa_stats(&pooled0, &inline0, NULL);
        for (int i = 0; i < 10; i++) {
                sign_random(t, &p256_pub, p256_priv.id, NULL, NULL);
                sign_random(t, &p384_pub, p384_priv.id, NULL, NULL);
        }
        soft_ecdsa_stats(&pooled1, &inline1, NULL);
        CHECK(pooled1 == pooled0 && inline1 == inline0 + 20);

        /* Hash lengths: SHA-1, SHA-256, SHA-384, SHA-512 sizes, and 1 byte
         * (shorter and longer than either order: truncation as in SEC 1). */
        static const size_t hl[] = { 1, 20, 32, 48, 64 };
        for (size_t i = 0; i < ELEMENTSOF(hl); i++) {
                uint8_t h[64];
                CHECK_OK(pkc_random(h, sizeof h));
                h[0] |= 0x80; /* a leading 1 bit: truncation must shift */
                sign_hash(t, &p256_pub, p256_priv.id, h, hl[i], NULL, NULL);
                sign_hash(t, &p384_pub, p384_priv.id, h, hl[i], NULL, NULL);
                memset(h, 0xff, sizeof h); /* above the order: reduced */
                sign_hash(t, &p256_pub, p256_priv.id, h, hl[i], NULL, NULL);
        }
        {
                CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
                uint8_t sig[96], h[32] = { 0 };
                size_t sl = sizeof sig;
                CHECK_RC(soft_ops.sign(t, p256_priv.id, &m, h, 0, sig, &sl), -ERANGE);
        }

        /* Pool on: the first signature starts the refill thread; once it has
         * filled some, signatures come from the pool and still verify. */
        soft_ecdsa_pool_enable(true);
        sign_random(t, &p256_pub, p256_priv.id, NULL, NULL);
        sign_random(t, &p384_pub, p384_priv.id, NULL, NULL);
        wait_pool(4);
        soft_ecdsa_stats(&pooled0, NULL, NULL);
        for (int i = 0; i < 3; i++)
                sign_random(t, &p256_pub, p256_priv.id, NULL, NULL);
        soft_ecdsa_stats(&pooled1, NULL, NULL);
        CHECK(pooled1 > pooled0);

        /* No nonce twice: r differs across signatures, pooled or inline
         * (the loop outruns the refill thread, so both kinds are in it). */
        soft_ecdsa_stats(&pooled0, &inline0, NULL);
        for (int i = 0; i < N_R; i++)
                sign_random(t, &p256_pub, p256_priv.id, rs[i], &rlen[i]);
        soft_ecdsa_stats(&pooled1, &inline1, NULL);
        CHECK(pooled1 + inline1 == pooled0 + inline0 + N_R);
        for (int i = 0; i < N_R; i++) {
                CHECK(rlen[i] == 32);
                for (int j = 0; j < i; j++)
                        CHECK(memcmp(rs[i], rs[j], 32) != 0);
        }

        /* One key, four threads at once (no lock around the key any more). */
        pthread_t th[4];
        struct par_arg pa = { t, &p256_pub, p256_priv.id }, pb = { t, &p384_pub, p384_priv.id };
        for (int i = 0; i < 4; i++)
                CHECK(pthread_create(&th[i], NULL, par_sign, i < 3 ? &pa : &pb) == 0);
        for (int i = 0; i < 4; i++)
                pthread_join(th[i], NULL);

        /* Logout drops the cached key: signing fails until the next login. */
        CHECK_OK(soft_ops.logout(t));
        {
                CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
                uint8_t sig[96], h[32] = { 1 };
                size_t sl = sizeof sig;
                CHECK_RC(soft_ops.sign(t, p256_priv.id, &m, h, sizeof h, sig, &sl), -EPERM);
                sl = sizeof sig;
                CHECK_RC(soft_ops.sign(t, p384_priv.id, &m, h, sizeof h, sig, &sl), -EPERM);
        }
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        sign_random(t, &p256_pub, p256_priv.id, NULL, NULL);

        /* Fork: the child never sees the parent's presignatures. */
        wait_pool(1);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                size_t avail;
                soft_ecdsa_stats(&pooled0, &inline0, &avail);
                if (avail != 0)
                        _exit(3);
                sign_random(t, &p256_pub, p256_priv.id, NULL, NULL);
                soft_ecdsa_stats(&pooled1, &inline1, NULL);
                _exit(pooled1 == pooled0 && inline1 == inline0 + 1 ? 0 : 4);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fprintf(stderr, "child: status 0x%x\n", st);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        sign_random(t, &p256_pub, p256_priv.id, NULL, NULL);

        CHECK_OK(soft_ops.logout(t));
        soft_ops.free(t);
        dobj_done(&p256_pub);
        dobj_done(&p256_priv);
        dobj_done(&p384_pub);
        dobj_done(&p384_priv);
        return 0;
}
