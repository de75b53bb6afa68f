/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token secret keys (CKK_GENERIC_SECRET, CKK_AES) in use: their
 * value is opened from its seal for each operation, into secure memory,
 * and wiped when the operation is done; it never leaves the driver but
 * into a digest (C_DigestKey).  Every function here runs under the token
 * lock (the ops in soft.c take it). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "common/secmem.h"
#include "common/util.h"
#include "soft-internal.h"

int soft_aes_check_value(const uint8_t *key, size_t len, uint8_t out[3]) {
        static const uint8_t zero[16];
        uint8_t block[16];
        mbedtls_aes_context aes;
        mbedtls_aes_init(&aes);
        int rc = mbedtls_aes_setkey_enc(&aes, key, (unsigned) len * 8);
        if (rc == 0)
                rc = mbedtls_aes_crypt_ecb(&aes, MBEDTLS_AES_ENCRYPT, zero, block);
        mbedtls_aes_free(&aes);
        if (rc != 0)
                return -EDOM;
        memcpy(out, block, 3);
        mbedtls_platform_zeroize(block, sizeof block);
        return 0;
}

int soft_secret_get(struct token *t, uint64_t id, struct nattrs *ret_attrs, uint8_t **ret_value,
                    size_t *ret_len) {
        struct nattrs a;
        uint8_t *sec = NULL;
        size_t sec_n = 0;
        CK_ULONG cls = 0;

        nattrs_init(&a);
        int r = soft_object_get(t, id, &a, &sec, &sec_n);
        if (r < 0)
                return r;
        if (!nattrs_get_ulong(&a, CKA_CLASS, &cls) || cls != CKO_SECRET_KEY || !sec)
                r = -ENOKEY;
        else
                r = soft_secret_open(t, id, sec, sec_n, ret_value, ret_len);
        if (sec) {
                mbedtls_platform_zeroize(sec, sec_n);
                free(sec);
        }
        if (r >= 0 && ret_attrs) {
                nattrs_done(ret_attrs);
                *ret_attrs = a;
        } else
                nattrs_done(&a);
        return r;
}

int soft_digest_key(struct token *t, uint64_t key, int (*feed)(void *ctx, const uint8_t *p, size_t n), void *ctx) {
        uint8_t *value = NULL;
        size_t len = 0;
        int r = soft_secret_get(t, key, NULL, &value, &len);
        if (r < 0)
                return r;
        r = feed(ctx, value, len);
        secure_free(value);
        return r;
}

/* ---------------------------------------------------------------- HMAC */

static const mbedtls_md_info_t *hmac_md(CK_MECHANISM_TYPE m) {
        switch (m) {
        case CKM_SHA_1_HMAC: return mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
        case CKM_SHA256_HMAC: return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
        case CKM_SHA384_HMAC: return mbedtls_md_info_from_type(MBEDTLS_MD_SHA384);
        case CKM_SHA512_HMAC: return mbedtls_md_info_from_type(MBEDTLS_MD_SHA512);
        default: return NULL;
        }
}

bool soft_is_hmac(CK_MECHANISM_TYPE m) { return hmac_md(m) != NULL; }

/* The key's value and attributes, opened under the token lock. */
static int secret_get(struct token *t, uint64_t id, struct nattrs *ret_attrs, uint8_t **ret_value, size_t *ret_len) {
        pthread_mutex_lock(&t->lock);
        int r = soft_secret_get(t, id, ret_attrs, ret_value, ret_len);
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* HMAC of in under generic secret key id (sign; the core verifies by
 * comparing).  Runs without the token lock but to open the key. */
int soft_hmac(struct token *t, uint64_t id, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
              uint8_t *out, size_t *outlen) {
        const mbedtls_md_info_t *md = hmac_md(mech->mechanism);
        struct nattrs a;
        uint8_t *value = NULL;
        size_t len = 0;
        CK_ULONG kt = 0;

        if (!md)
                return -ENOTSUP;
        if (mech->ulParameterLen)
                return -EBADR;
        size_t sz = mbedtls_md_get_size(md);
        nattrs_init(&a);
        int r = secret_get(t, id, &a, &value, &len);
        if (r >= 0 && (!nattrs_get_ulong(&a, CKA_KEY_TYPE, &kt) || kt != CKK_GENERIC_SECRET))
                r = -ENOKEY;
        if (r >= 0 && !out)
                *outlen = sz;
        else if (r >= 0 && *outlen < sz) {
                *outlen = sz;
                r = -ENOBUFS;
        } else if (r >= 0) {
                r = mbedtls_md_hmac(md, value, len, in, in_len, out) == 0 ? 0 : -EIO;
                if (r >= 0)
                        *outlen = sz;
        }
        secure_free(value);
        nattrs_done(&a);
        return r;
}
