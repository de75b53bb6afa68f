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
#include <mbedtls/gcm.h>
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

/* ---------------------------------------------------------------- AES */

#define AES_BLOCK 16

bool soft_is_aes(CK_MECHANISM_TYPE m) {
        return m == CKM_AES_ECB || m == CKM_AES_CBC || m == CKM_AES_CBC_PAD || m == CKM_AES_CTR ||
               m == CKM_AES_GCM;
}

/* The GCM tag length in bytes (the core checked the parameters). */
static size_t gcm_tag_len(const CK_MECHANISM *mech) {
        return ((const CK_GCM_PARAMS *) mech->pParameter)->ulTagBits / 8;
}

/* The output size for in_len bytes in (the upper bound for CBC-PAD
 * decryption): -ERANGE when in_len does not suit the mode. */
static int aes_out_size(const CK_MECHANISM *mech, bool enc, size_t in_len, size_t *ret) {
        switch (mech->mechanism) {
        case CKM_AES_ECB:
        case CKM_AES_CBC:
                if (in_len % AES_BLOCK)
                        return -ERANGE;
                *ret = in_len;
                return 0;
        case CKM_AES_CBC_PAD:
                if (!enc && (in_len == 0 || in_len % AES_BLOCK))
                        return -ERANGE;
                *ret = enc ? (in_len / AES_BLOCK + 1) * AES_BLOCK : in_len;
                return 0;
        case CKM_AES_CTR:
                *ret = in_len;
                return 0;
        case CKM_AES_GCM: {
                size_t tag = gcm_tag_len(mech);
                if (!enc && in_len < tag)
                        return -ERANGE;
                *ret = enc ? in_len + tag : in_len - tag;
                return 0;
        }
        default:
                return -ENOTSUP;
        }
}

/* CTR: the data must not run the counter (its low ulCounterBits bits)
 * past its end. */
static int ctr_room(const CK_AES_CTR_PARAMS *p, size_t in_len) {
        if (p->ulCounterBits >= 64)
                return 0;
        uint64_t c = 0;
        for (int i = 8; i < AES_BLOCK; i++)
                c = (c << 8) | p->cb[i];
        c &= (UINT64_C(1) << p->ulCounterBits) - 1;
        uint64_t blocks = (in_len + AES_BLOCK - 1) / AES_BLOCK;
        return blocks > (UINT64_C(1) << p->ulCounterBits) - c ? -ERANGE : 0;
}

/* GCM encryption (ciphertext || tag) or decryption and tag check. */
static int aes_gcm(const uint8_t *key, size_t klen, const CK_GCM_PARAMS *p, bool enc, const uint8_t *in,
                   size_t in_len, uint8_t *out) {
        mbedtls_gcm_context gcm;
        size_t tag = p->ulTagBits / 8;
        mbedtls_gcm_init(&gcm);
        int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, (unsigned) klen * 8);
        if (rc == 0 && enc)
                rc = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, in_len, p->pIv, p->ulIvLen, p->pAAD,
                                               p->ulAADLen, in, out, tag, out + in_len);
        else if (rc == 0)
                rc = mbedtls_gcm_auth_decrypt(&gcm, in_len - tag, p->pIv, p->ulIvLen, p->pAAD, p->ulAADLen,
                                              in + in_len - tag, tag, in, out);
        mbedtls_gcm_free(&gcm);
        return rc == 0 ? 0 : rc == MBEDTLS_ERR_GCM_AUTH_FAILED ? -EBADMSG : -EIO;
}

/* ECB, CBC and CTR over whole buffers (CBC-PAD padded by the caller). */
static int aes_blocks(const uint8_t *key, size_t klen, const CK_MECHANISM *mech, bool enc, const uint8_t *in,
                      size_t in_len, uint8_t *out) {
        mbedtls_aes_context aes;
        uint8_t iv[AES_BLOCK], stream[AES_BLOCK];
        size_t off = 0;
        int rc;
        bool ctr = mech->mechanism == CKM_AES_CTR;
        mbedtls_aes_init(&aes);
        rc = enc || ctr ? mbedtls_aes_setkey_enc(&aes, key, (unsigned) klen * 8)
                        : mbedtls_aes_setkey_dec(&aes, key, (unsigned) klen * 8);
        int mode = enc ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT;
        if (rc == 0 && mech->mechanism == CKM_AES_ECB)
                for (size_t i = 0; rc == 0 && i < in_len; i += AES_BLOCK)
                        rc = mbedtls_aes_crypt_ecb(&aes, mode, in + i, out + i);
        else if (rc == 0 && ctr) {
                memcpy(iv, ((const CK_AES_CTR_PARAMS *) mech->pParameter)->cb, AES_BLOCK);
                rc = mbedtls_aes_crypt_ctr(&aes, in_len, &off, iv, stream, in, out);
        } else if (rc == 0) {
                memcpy(iv, mech->pParameter, AES_BLOCK);
                rc = mbedtls_aes_crypt_cbc(&aes, mode, in_len, iv, in, out);
        }
        mbedtls_aes_free(&aes);
        mbedtls_platform_zeroize(stream, sizeof stream);
        return rc == 0 ? 0 : -EIO;
}

/* PKCS #7 padding of the last block, checked after CBC decryption:
 * the length of the data in *ret. */
static int unpad(const uint8_t *p, size_t len, size_t *ret) {
        uint8_t n = p[len - 1];
        unsigned bad = n == 0 || n > AES_BLOCK;
        for (size_t i = 0; i < AES_BLOCK; i++)
                bad |= (i < n) & (p[len - 1 - i] != n);
        if (bad)
                return -EBADMSG;
        *ret = len - n;
        return 0;
}

/* Runs mechanism mech of AES key value over in into buf (size bytes,
 * from aes_out_size); *ret_len the bytes made. */
static int aes_run(const uint8_t *key, size_t klen, const CK_MECHANISM *mech, bool enc, const uint8_t *in,
                   size_t in_len, uint8_t *buf, size_t size, size_t *ret_len) {
        *ret_len = size;
        if (mech->mechanism == CKM_AES_GCM)
                return aes_gcm(key, klen, mech->pParameter, enc, in, in_len, buf);
        if (mech->mechanism == CKM_AES_CTR && ctr_room(mech->pParameter, in_len) < 0)
                return -ERANGE;
        if (mech->mechanism != CKM_AES_CBC_PAD)
                return aes_blocks(key, klen, mech, enc, in, in_len, buf);
        CK_MECHANISM cbc = { CKM_AES_CBC, mech->pParameter, mech->ulParameterLen };
        if (!enc) {
                int r = aes_blocks(key, klen, &cbc, false, in, in_len, buf);
                return r < 0 ? r : unpad(buf, in_len, ret_len);
        }
        uint8_t pad = (uint8_t) (size - in_len);
        memcpy(buf, in, in_len);
        memset(buf + in_len, pad, pad);
        return aes_blocks(key, klen, &cbc, true, buf, size, buf);
}

int soft_aes(struct token *t, uint64_t id, const CK_MECHANISM *mech, bool enc, const uint8_t *in, size_t in_len,
             uint8_t *out, size_t *outlen) {
        struct nattrs a;
        uint8_t *value = NULL, *buf = NULL;
        size_t len = 0, size = 0, made = 0;
        CK_ULONG kt = 0;

        if (!soft_is_aes(mech->mechanism))
                return -ENOTSUP;
        int r = aes_out_size(mech, enc, in_len, &size);
        if (r < 0)
                return r;
        if (!out) {
                *outlen = size;
                return 0;
        }
        if (*outlen < size && mech->mechanism != CKM_AES_CBC_PAD) {
                *outlen = size;
                return -ENOBUFS;
        }
        nattrs_init(&a);
        r = secret_get(t, id, &a, &value, &len);
        if (r >= 0 && (!nattrs_get_ulong(&a, CKA_KEY_TYPE, &kt) || kt != CKK_AES))
                r = -ENOKEY;
        if (r >= 0 && !(buf = secure_alloc(size ? size : 1)))
                r = -ENOMEM;
        if (r >= 0)
                r = aes_run(value, len, mech, enc, in, in_len, buf, size, &made);
        if (r >= 0 && *outlen < made) {
                *outlen = made;
                r = -ENOBUFS;
        } else if (r >= 0) {
                memcpy(out, buf, made);
                *outlen = made;
        }
        secure_free(buf);
        secure_free(value);
        nattrs_done(&a);
        return r;
}
