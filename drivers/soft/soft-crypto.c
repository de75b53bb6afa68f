/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token private-key operations and the cache of parsed keys.
 *
 * sign/decrypt run without the token lock (ops->parallel_crypto): under the
 * lock they only find (or decrypt and parse) the key and take a reference;
 * the computation then runs outside it.  P-256/P-384 ECDSA goes to
 * soft-ecdsa.c, which needs no lock at all, so that two sessions signing
 * with the same key run in parallel (issue 3); the scalar is then kept in
 * secure memory, not in the mbedTLS context.  RSA (and any other curve)
 * holds the key's own mutex: mbedTLS contexts are not safe for concurrent
 * use (RSA blinding values, the padding/hash fields).  logout drops the
 * cache; a key still in use is freed by its last user. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "common/util.h"
#include "soft-internal.h"

static void key_unref_locked(struct soft_key *k) {
        if (!k || --k->refs > 0)
                return;
        mbedtls_pk_free(&k->pk);
        soft_ec_key_free(k->ec);
        pthread_mutex_destroy(&k->lock);
        free(k);
}

void soft_keys_drop(struct token *t) {
        for (size_t i = 0; i < t->n_keys; i++)
                key_unref_locked(t->keys[i]);
        t->n_keys = 0;
}

void soft_keys_drop_id(struct token *t, uint64_t id) {
        for (size_t i = 0; i < t->n_keys; i++)
                if (t->keys[i]->id == id) {
                        key_unref_locked(t->keys[i]);
                        memmove(&t->keys[i], &t->keys[i + 1], (t->n_keys - i - 1) * sizeof *t->keys);
                        t->n_keys--;
                        return;
                }
}

/* Under the token lock: a referenced key, from the cache or decrypted now. */
static int key_get_locked(struct token *t, uint64_t id, struct soft_key **ret) {
        struct nattrs a;
        uint8_t *sec = NULL;
        size_t sec_n = 0;
        CK_ULONG cls;
        int r;

        for (size_t i = 0; i < t->n_keys; i++)
                if (t->keys[i]->id == id) {
                        t->keys[i]->refs++;
                        *ret = t->keys[i];
                        return 0;
                }

        nattrs_init(&a);
        r = soft_object_get(t, id, &a, &sec, &sec_n);
        if (r < 0)
                return r;
        if (!nattrs_get_ulong(&a, CKA_CLASS, &cls) || cls != CKO_PRIVATE_KEY || !sec) {
                r = -ENOKEY;
                goto out;
        }
        struct soft_key *k = calloc(1, sizeof *k);
        if (!k) {
                r = -ENOMEM;
                goto out;
        }
        mbedtls_pk_init(&k->pk);
        r = soft_key_open(t, id, sec, sec_n, &k->pk);
        if (r < 0) {
                mbedtls_pk_free(&k->pk);
                free(k);
                goto out;
        }
        mbedtls_pk_type_t pt = mbedtls_pk_get_type(&k->pk);
        if ((pt == MBEDTLS_PK_ECKEY || pt == MBEDTLS_PK_ECDSA) && soft_ecdsa_supported(mbedtls_pk_ec(k->pk)->grp.id)) {
                mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->pk);
                r = soft_ec_key_new(ec, &k->ec);
                if (r < 0) {
                        mbedtls_pk_free(&k->pk);
                        free(k);
                        goto out;
                }
                /* The only copy of the scalar is now the locked one. */
                mbedtls_mpi_free(&ec->d);
        }
        pthread_mutex_init(&k->lock, NULL);
        k->id = id;
        k->can_sign = nattrs_get_bool(&a, CKA_SIGN, true);
        k->can_decrypt = nattrs_get_bool(&a, CKA_DECRYPT, false);
        k->can_unwrap = nattrs_get_bool(&a, CKA_UNWRAP, false);
        k->refs = 1; /* the cache's */
        struct soft_key **nv = realloc(t->keys, (t->n_keys + 1) * sizeof *nv);
        if (!nv) {
                key_unref_locked(k);
                r = -ENOMEM;
                goto out;
        }
        t->keys = nv;
        t->keys[t->n_keys++] = k;
        k->refs++;
        *ret = k;
        r = 0;
out:
        if (sec) {
                mbedtls_platform_zeroize(sec, sec_n);
                free(sec);
        }
        nattrs_done(&a);
        return r;
}

static int key_get(struct token *t, uint64_t id, struct soft_key **ret) {
        pthread_mutex_lock(&t->lock);
        int r = key_get_locked(t, id, ret);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static void key_put(struct token *t, struct soft_key *k) {
        pthread_mutex_lock(&t->lock);
        key_unref_locked(k);
        pthread_mutex_unlock(&t->lock);
}

static int mbed_err(int rc) {
        if (rc == MBEDTLS_ERR_RSA_BAD_INPUT_DATA || rc == MBEDTLS_ERR_ECP_BAD_INPUT_DATA)
                return -ERANGE;
        if (rc == MBEDTLS_ERR_MPI_ALLOC_FAILED || rc == MBEDTLS_ERR_ECP_ALLOC_FAILED)
                return -ENOMEM;
        return -EIO;
}

/* Checks the mechanism against the key and returns the output size. */
static int sign_size(struct soft_key *k, const CK_MECHANISM *mech, size_t *ret) {
        mbedtls_pk_type_t pt = mbedtls_pk_get_type(&k->pk);
        switch (mech->mechanism) {
        case CKM_RSA_PKCS:
        case CKM_RSA_X_509:
        case CKM_RSA_PKCS_PSS:
                if (pt != MBEDTLS_PK_RSA)
                        return -ENOKEY;
                *ret = mbedtls_rsa_get_len(mbedtls_pk_rsa(k->pk));
                return 0;
        case CKM_ECDSA:
                if (pt != MBEDTLS_PK_ECKEY && pt != MBEDTLS_PK_ECDSA)
                        return -ENOKEY;
                *ret = 2 * ((mbedtls_pk_ec(k->pk)->grp.nbits + 7) / 8);
                return 0;
        default:
                return -ENOTSUP;
        }
}

static int do_sign(struct soft_key *k, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len, uint8_t *out,
                   size_t sz) {
        int rc;

        switch (mech->mechanism) {
        case CKM_RSA_PKCS: {
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(k->pk);
                if (in_len + 11 > sz)
                        return -ERANGE;
                mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_NONE);
                rc = mbedtls_rsa_rsassa_pkcs1_v15_sign(rsa, pkc_rng, NULL, MBEDTLS_RSA_PRIVATE, MBEDTLS_MD_NONE,
                                                       (unsigned) in_len, in, out);
                return rc == 0 ? 0 : mbed_err(rc);
        }
        case CKM_RSA_X_509: {
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(k->pk);
                if (in_len > sz)
                        return -ERANGE;
                uint8_t *m = calloc(1, sz);
                if (!m)
                        return -ENOMEM;
                memcpy(m + sz - in_len, in, in_len);
                rc = mbedtls_rsa_private(rsa, pkc_rng, NULL, m, out);
                mbedtls_platform_zeroize(m, sz);
                free(m);
                return rc == 0 ? 0 : (rc == MBEDTLS_ERR_RSA_PRIVATE_FAILED + MBEDTLS_ERR_MPI_BAD_INPUT_DATA ||
                                      rc == MBEDTLS_ERR_RSA_BAD_INPUT_DATA)
                                             ? -ERANGE
                                             : mbed_err(rc);
        }
        case CKM_RSA_PKCS_PSS: {
                mbedtls_md_type_t md, mgf;
                size_t slen;
                int r = pkc_pss_params(mech, &k->pk, in_len, &md, &mgf, &slen);
                if (r < 0)
                        return r;
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(k->pk);
                mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V21, mgf);
                rc = mbedtls_rsa_rsassa_pss_sign_ext(rsa, pkc_rng, NULL, md, (unsigned) in_len, in, (int) slen,
                                                     out);
                return rc == 0 ? 0 : mbed_err(rc);
        }
        case CKM_ECDSA: {
                mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->pk);
                size_t olen = sz / 2;
                mbedtls_mpi r, s;
                if (in_len == 0)
                        return -ERANGE;
                mbedtls_mpi_init(&r);
                mbedtls_mpi_init(&s);
                rc = mbedtls_ecdsa_sign(&ec->grp, &r, &s, &ec->d, in, in_len, pkc_rng, NULL);
                if (rc == 0)
                        rc = mbedtls_mpi_write_binary(&r, out, olen);
                if (rc == 0)
                        rc = mbedtls_mpi_write_binary(&s, out + olen, olen);
                mbedtls_mpi_free(&r);
                mbedtls_mpi_free(&s);
                return rc == 0 ? 0 : mbed_err(rc);
        }
        default:
                return -ENOTSUP;
        }
}

int soft_sign(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
              uint8_t *out, size_t *outlen) {
        struct soft_key *k = NULL;
        size_t sz;
        int r;

        if (!t || !mech || !outlen || (!in && in_len))
                return -EINVAL;
        if (soft_is_hmac(mech->mechanism))
                return soft_hmac(t, key, mech, in, in_len, out, outlen);
        r = key_get(t, key, &k);
        if (r < 0)
                return r;
        r = sign_size(k, mech, &sz);
        if (r < 0)
                goto out;
        if (!k->can_sign) {
                r = -EKEYEXPIRED;
                goto out;
        }
        if (!out) {
                *outlen = sz;
                goto out;
        }
        if (*outlen < sz) {
                *outlen = sz;
                r = -ENOBUFS;
                goto out;
        }
        if (mech->mechanism == CKM_ECDSA && k->ec)
                r = soft_ecdsa_sign(k->ec, in, in_len, out, sz);
        else {
                pthread_mutex_lock(&k->lock);
                r = do_sign(k, mech, in, in_len, out, sz);
                pthread_mutex_unlock(&k->lock);
        }
        if (r >= 0)
                *outlen = sz;
out:
        key_put(t, k);
        return r;
}

int soft_encrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                 uint8_t *out, size_t *outlen) {
        if (!t || !mech || !outlen || (!in && in_len))
                return -EINVAL;
        return soft_aes(t, key, mech, true, in, in_len, out, outlen);
}

/* RSA decryption for C_Decrypt, or (unwrap) of a wrapped key. */
static int rsa_decrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                       uint8_t *out, size_t *outlen, bool unwrap) {
        struct soft_key *k = NULL;
        uint8_t *buf = NULL;
        size_t olen = 0;
        mbedtls_md_type_t md = MBEDTLS_MD_NONE;
        int r, rc;

        if (mech->mechanism != CKM_RSA_PKCS && mech->mechanism != CKM_RSA_PKCS_OAEP &&
            mech->mechanism != CKM_RSA_X_509)
                return -ENOTSUP;
        if (mech->mechanism == CKM_RSA_PKCS_OAEP) {
                if (pkc_oaep_params(mech, &md) < 0)
                        return -EBADR;
        }
        r = key_get(t, key, &k);
        if (r < 0)
                return r;
        if (mbedtls_pk_get_type(&k->pk) != MBEDTLS_PK_RSA) {
                r = -ENOKEY;
                goto out;
        }
        if (unwrap ? !k->can_unwrap || mech->mechanism == CKM_RSA_X_509 : !k->can_decrypt) {
                r = -EKEYEXPIRED;
                goto out;
        }
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(k->pk);
        size_t klen = mbedtls_rsa_get_len(rsa);
        if (!out) {
                *outlen = klen;
                goto out;
        }
        if (in_len != klen) {
                r = -ERANGE;
                goto out;
        }
        buf = secure_alloc(klen);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        pthread_mutex_lock(&k->lock);
        switch (mech->mechanism) {
        case CKM_RSA_PKCS:
                mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_NONE);
                rc = mbedtls_rsa_rsaes_pkcs1_v15_decrypt(rsa, pkc_rng, NULL, MBEDTLS_RSA_PRIVATE, &olen, in, buf,
                                                         klen);
                break;
        case CKM_RSA_PKCS_OAEP:
                mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V21, md);
                rc = mbedtls_rsa_rsaes_oaep_decrypt(rsa, pkc_rng, NULL, MBEDTLS_RSA_PRIVATE, NULL, 0, &olen, in, buf,
                                                    klen);
                break;
        default:
                rc = mbedtls_rsa_private(rsa, pkc_rng, NULL, in, buf);
                olen = klen;
                break;
        }
        pthread_mutex_unlock(&k->lock);
        if (rc != 0) {
                bool priv_failed = rc <= MBEDTLS_ERR_RSA_PRIVATE_FAILED && rc > MBEDTLS_ERR_RSA_PRIVATE_FAILED - 0x80;
                r = rc == MBEDTLS_ERR_RSA_INVALID_PADDING || rc == MBEDTLS_ERR_RSA_BAD_INPUT_DATA || priv_failed
                            ? -EBADMSG
                            : -EIO;
                goto out;
        }
        if (*outlen < olen) {
                *outlen = olen;
                r = -ENOBUFS;
                goto out;
        }
        memcpy(out, buf, olen);
        *outlen = olen;
out:
        secure_free(buf);
        key_put(t, k);
        return r;
}

int soft_decrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                 uint8_t *out, size_t *outlen) {
        if (!t || !mech || !outlen || (!in && in_len))
                return -EINVAL;
        if (soft_is_aes(mech->mechanism))
                return soft_aes(t, key, mech, false, in, in_len, out, outlen);
        return rsa_decrypt(t, key, mech, in, in_len, out, outlen, false);
}

int soft_rsa_unwrap(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                    uint8_t *out, size_t *outlen) {
        return rsa_decrypt(t, key, mech, in, in_len, out, outlen, true);
}
