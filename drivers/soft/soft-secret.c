/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token secret keys (CKK_GENERIC_SECRET, CKK_AES) in use: their
 * value is opened from its seal for each operation, into secure memory,
 * and wiped when the operation is done; it never leaves the driver but
 * into a digest (C_DigestKey) or wrapped (C_WrapKey).  soft_secret_get and
 * soft_digest_key run under the token lock (the ops in soft.c take it);
 * HMAC, AES and the key wraps take it only to open a key, as soft_sign
 * does. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "common/pkcrypto.h"
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

/* ---------------------------------------------------------------- key wrap */

/* AES key wrap, RFC 3394 (KW) and RFC 5649 (KWP, with padding), on the
 * AES block cipher: mbedTLS's nist_kw is not in Debian 12's build. */

static const uint8_t kw_iv[8] = { 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6 };
static const uint8_t kwp_iv[4] = { 0xa6, 0x59, 0x59, 0xa6 };

/* One step's counter t, XORed into A (big-endian). */
static void kw_xor_t(uint8_t a[8], uint64_t t) {
        for (int q = 0; q < 8; q++)
                a[7 - q] ^= (uint8_t) (t >> (8 * q));
}

/* RFC 3394's W (enc) or W^-1 over r = A || R[1..n], in place. */
static int kw_rounds(mbedtls_aes_context *aes, bool enc, uint8_t *r, size_t n) {
        uint8_t b[16];
        int rc = 0;
        for (size_t s = 0; rc == 0 && s < 6 * n; s++) {
                size_t j = enc ? s / n : 5 - s / n, i = enc ? s % n + 1 : n - s % n;
                memcpy(b, r, 8);
                if (!enc)
                        kw_xor_t(b, n * j + i);
                memcpy(b + 8, r + 8 * i, 8);
                rc = mbedtls_aes_crypt_ecb(aes, enc ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT, b, b);
                if (enc)
                        kw_xor_t(b, n * j + i);
                memcpy(r, b, 8);
                memcpy(r + 8 * i, b + 8, 8);
        }
        mbedtls_platform_zeroize(b, sizeof b);
        return rc == 0 ? 0 : -EIO;
}

/* The wrapped size of len bytes, or -ERANGE. */
static int kw_size(bool pad, size_t len, size_t *ret) {
        if (pad ? len == 0 || len > UINT32_MAX : len < 16 || len % 8)
                return -ERANGE;
        *ret = (len + 7) / 8 * 8 + 8;
        return 0;
}

/* Wraps in (in_len bytes) into out (kw_size bytes). */
static int kw_wrap(const uint8_t *key, size_t klen, bool pad, const uint8_t *in, size_t in_len, uint8_t *out) {
        mbedtls_aes_context aes;
        size_t size = 0;
        int r = kw_size(pad, in_len, &size);
        if (r < 0)
                return r;
        memset(out, 0, size);
        if (pad) {
                memcpy(out, kwp_iv, 4);
                for (int q = 0; q < 4; q++)
                        out[7 - q] = (uint8_t) (in_len >> (8 * q));
        } else
                memcpy(out, kw_iv, 8);
        memcpy(out + 8, in, in_len);
        mbedtls_aes_init(&aes);
        r = mbedtls_aes_setkey_enc(&aes, key, (unsigned) klen * 8) != 0 ? -EIO
            : size == 16 ? (mbedtls_aes_crypt_ecb(&aes, MBEDTLS_AES_ENCRYPT, out, out) != 0 ? -EIO : 0)
                         : kw_rounds(&aes, true, out, size / 8 - 1);
        mbedtls_aes_free(&aes);
        return r;
}

/* Unwraps in into buf (in_len bytes, secure): the key at buf, *ret_len
 * bytes; -EBADMSG when the integrity check fails. */
static int kw_unwrap(const uint8_t *key, size_t klen, bool pad, const uint8_t *in, size_t in_len, uint8_t *buf,
                     size_t *ret_len) {
        mbedtls_aes_context aes;
        if (in_len % 8 || in_len < (pad ? 16u : 24u))
                return -ERANGE;
        memcpy(buf, in, in_len);
        mbedtls_aes_init(&aes);
        int r = mbedtls_aes_setkey_dec(&aes, key, (unsigned) klen * 8) != 0 ? -EIO
                : in_len == 16 ? (mbedtls_aes_crypt_ecb(&aes, MBEDTLS_AES_DECRYPT, buf, buf) != 0 ? -EIO : 0)
                               : kw_rounds(&aes, false, buf, in_len / 8 - 1);
        mbedtls_aes_free(&aes);
        if (r < 0)
                return r;
        size_t n = in_len - 8, len = n;
        unsigned bad = 0;
        if (pad) {
                len = 0;
                for (int q = 4; q < 8; q++)
                        len = (len << 8) | buf[q];
                bad |= (unsigned) mbedtls_ct_memcmp(buf, kwp_iv, 4) | (len > n) | (len + 8 <= n);
                for (size_t q = 0; !bad && q < n - len; q++)
                        bad |= buf[8 + len + q];
        } else
                bad |= (unsigned) mbedtls_ct_memcmp(buf, kw_iv, 8);
        if (bad)
                return -EBADMSG;
        memmove(buf, buf + 8, len);
        *ret_len = len;
        return 0;
}

/* The AES wrapping key's value (secure memory). */
static int aes_key_get(struct token *t, uint64_t id, uint8_t **ret, size_t *ret_len) {
        struct nattrs a;
        CK_ULONG kt = 0;
        nattrs_init(&a);
        int r = secret_get(t, id, &a, ret, ret_len);
        if (r >= 0 && (!nattrs_get_ulong(&a, CKA_KEY_TYPE, &kt) || kt != CKK_AES)) {
                *ret = secure_free(*ret);
                r = -ENOKEY;
        }
        nattrs_done(&a);
        return r;
}

/* RSA encryption of value under public key wkey (CKM_RSA_PKCS, OAEP). */
static int rsa_wrap(struct token *t, uint64_t wkey, const CK_MECHANISM *mech, const uint8_t *value, size_t len,
                    uint8_t *out, size_t *outlen) {
        struct nattrs a;
        mbedtls_pk_context pk;
        nattrs_init(&a);
        mbedtls_pk_init(&pk);
        pthread_mutex_lock(&t->lock);
        int r = soft_object_get(t, wkey, &a, NULL, NULL);
        pthread_mutex_unlock(&t->lock);
        if (r >= 0)
                r = pkc_pk_from_attrs(&a, &pk) < 0 ? -ENOKEY : 0;
        if (r >= 0)
                r = pkc_encrypt(&pk, mech, value, len, out, outlen);
        mbedtls_pk_free(&pk);
        nattrs_done(&a);
        return r;
}

int soft_wrap_key(struct token *t, uint64_t wkey, const CK_MECHANISM *mech, uint64_t key, uint8_t *out,
                  size_t *outlen) {
        uint8_t *value = NULL, *wv = NULL;
        size_t len = 0, wl = 0, size = 0;
        bool aes = mech->mechanism == CKM_AES_KEY_WRAP || mech->mechanism == CKM_AES_KEY_WRAP_PAD;
        bool pad = mech->mechanism == CKM_AES_KEY_WRAP_PAD;
        if (!aes && mech->mechanism != CKM_RSA_PKCS && mech->mechanism != CKM_RSA_PKCS_OAEP)
                return -ENOTSUP;
        int r = secret_get(t, key, NULL, &value, &len);
        if (r >= 0 && !aes)
                r = rsa_wrap(t, wkey, mech, value, len, out, outlen);
        else if (r >= 0 && (r = kw_size(pad, len, &size)) >= 0) {
                if (!out)
                        *outlen = size;
                else if (*outlen < size) {
                        *outlen = size;
                        r = -ENOBUFS;
                } else if ((r = aes_key_get(t, wkey, &wv, &wl)) >= 0 &&
                           (r = kw_wrap(wv, wl, pad, value, len, out)) >= 0)
                        *outlen = size;
        }
        secure_free(wv);
        secure_free(value);
        return r;
}

/* The unwrapped key's template: a secret key with no value given, and
 * a CKA_VALUE_LEN, if any, that is the key's. */
static int unwrap_template(const CK_ATTRIBUTE *tmpl, CK_ULONG n, size_t len, struct nattrs *a) {
        CK_ULONG vl;
        int r = nattrs_from_template(a, tmpl, n);
        if (r >= 0 && nattrs_get(a, CKA_VALUE))
                r = -EINVAL;
        if (r >= 0 && nattrs_get(a, CKA_VALUE_LEN) && (!nattrs_get_ulong(a, CKA_VALUE_LEN, &vl) || vl != len))
                r = -EINVAL;
        return r;
}

int soft_unwrap_key(struct token *t, uint64_t ukey, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                    const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret) {
        struct nattrs a;
        uint8_t *value = secure_alloc(in_len ? in_len : 1), *uv = NULL;
        size_t len = in_len, ul = 0;
        bool pad = mech->mechanism == CKM_AES_KEY_WRAP_PAD;
        int r = value ? 0 : -ENOMEM;
        nattrs_init(&a);
        if (r >= 0 && (pad || mech->mechanism == CKM_AES_KEY_WRAP)) {
                if ((r = aes_key_get(t, ukey, &uv, &ul)) >= 0)
                        r = kw_unwrap(uv, ul, pad, in, in_len, value, &len);
        } else if (r >= 0)
                r = soft_rsa_unwrap(t, ukey, mech, in, in_len, value, &len);
        if (r >= 0)
                r = unwrap_template(tmpl, n, len, &a);
        if (r >= 0) {
                pthread_mutex_lock(&t->lock);
                r = soft_secret_object(t, &a, value, len, persistent, ret);
                pthread_mutex_unlock(&t->lock);
        }
        nattrs_done(&a);
        secure_free(uv);
        secure_free(value);
        return r;
}
