/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#12 reader (see pkcs12.h).  Every length comes from mbedtls_asn1_get_tag,
 * which checks it against the end of the enclosing element; nesting is
 * bounded; iteration counts are capped; decrypted data lives in secure
 * memory. */
#include "pkcs12.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/cipher.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pkcs12.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#include "common/secmem.h"
#include "common/util.h"

#define P12_MAX_DEPTH 4

struct pw {
        const uint8_t *utf8;
        size_t utf8_len;
        uint8_t *bmp;           /* UTF-16BE + 00 00, secure memory */
        size_t bmp_len;
};

#define OID_PKCS(x) "\x2a\x86\x48\x86\xf7\x0d" x
static const char oid_data[] = OID_PKCS("\x01\x07\x01");
static const char oid_encrypted_data[] = OID_PKCS("\x01\x07\x06");
static const char oid_key_bag[] = OID_PKCS("\x01\x0c\x0a\x01\x01");
static const char oid_shrouded_key_bag[] = OID_PKCS("\x01\x0c\x0a\x01\x02");
static const char oid_cert_bag[] = OID_PKCS("\x01\x0c\x0a\x01\x03");
static const char oid_safe_contents_bag[] = OID_PKCS("\x01\x0c\x0a\x01\x06");
static const char oid_x509_cert[] = OID_PKCS("\x01\x09\x16\x01");
static const char oid_friendly_name[] = OID_PKCS("\x01\x09\x14");
static const char oid_local_key_id[] = OID_PKCS("\x01\x09\x15");
static const char oid_pbe_sha_3des3[] = OID_PKCS("\x01\x0c\x01\x03");
static const char oid_pbe_sha_3des2[] = OID_PKCS("\x01\x0c\x01\x04");
static const char oid_pbe_sha_rc2_128[] = OID_PKCS("\x01\x0c\x01\x05");
static const char oid_pbe_sha_rc2_40[] = OID_PKCS("\x01\x0c\x01\x06");
static const char oid_pbes2[] = OID_PKCS("\x01\x05\x0d");
static const char oid_pbkdf2[] = OID_PKCS("\x01\x05\x0c");
static const char oid_des_ede3_cbc[] = OID_PKCS("\x03\x07");
static const char oid_aes128_cbc[] = "\x60\x86\x48\x01\x65\x03\x04\x01\x02";
static const char oid_aes192_cbc[] = "\x60\x86\x48\x01\x65\x03\x04\x01\x16";
static const char oid_aes256_cbc[] = "\x60\x86\x48\x01\x65\x03\x04\x01\x2a";

#define OID_IS(buf, oid) ((buf)->len == sizeof(oid) - 1 && memcmp((buf)->p, oid, sizeof(oid) - 1) == 0)

static int asn1_err(int r) {
        return r == MBEDTLS_ERR_ASN1_ALLOC_FAILED ? -ENOMEM : -EBADMSG;
}

static int get_tag(uint8_t **p, const uint8_t *end, int tag, size_t *len) {
        int r = mbedtls_asn1_get_tag(p, end, len, tag);
        return r ? asn1_err(r) : 0;
}

static int get_oid(uint8_t **p, const uint8_t *end, mbedtls_asn1_buf *oid) {
        size_t len;
        int r = get_tag(p, end, MBEDTLS_ASN1_OID, &len);
        if (r < 0)
                return r;
        oid->tag = MBEDTLS_ASN1_OID;
        oid->p = *p;
        oid->len = len;
        *p += len;
        return 0;
}

static int get_uint(uint8_t **p, const uint8_t *end, int max, int *ret) {
        int v = 0;
        if (mbedtls_asn1_get_int(p, end, &v) != 0)
                return -EBADMSG;
        if (v < 0 || v > max)
                return -E2BIG;
        *ret = v;
        return 0;
}

/* salt OCTET STRING, iterations INTEGER (1 to P12_MAX_ITERATIONS): how
 * PKCS#12 PBE parameters, PBKDF2-params and MacData begin.  With
 * iterations_optional, iterations is left as it is when p is at end. */
static int get_salt_iterations(uint8_t **p, const uint8_t *end, bool iterations_optional, const uint8_t **salt,
                               size_t *saltlen, int *iterations) {
        int r = get_tag(p, end, MBEDTLS_ASN1_OCTET_STRING, saltlen);
        if (r < 0)
                return r;
        *salt = *p;
        *p += *saltlen;
        if (iterations_optional && *p >= end)
                return 0;
        r = get_uint(p, end, P12_MAX_ITERATIONS, iterations);
        if (r < 0)
                return r;
        return *iterations < 1 ? -EBADMSG : 0;
}

/* ---- RC2 (RFC 2268), decryption only, for the legacy PBEs ---- */

static const uint8_t rc2_pitable[256] = {
        0xd9, 0x78, 0xf9, 0xc4, 0x19, 0xdd, 0xb5, 0xed, 0x28, 0xe9, 0xfd, 0x79, 0x4a, 0xa0, 0xd8, 0x9d,
        0xc6, 0x7e, 0x37, 0x83, 0x2b, 0x76, 0x53, 0x8e, 0x62, 0x4c, 0x64, 0x88, 0x44, 0x8b, 0xfb, 0xa2,
        0x17, 0x9a, 0x59, 0xf5, 0x87, 0xb3, 0x4f, 0x13, 0x61, 0x45, 0x6d, 0x8d, 0x09, 0x81, 0x7d, 0x32,
        0xbd, 0x8f, 0x40, 0xeb, 0x86, 0xb7, 0x7b, 0x0b, 0xf0, 0x95, 0x21, 0x22, 0x5c, 0x6b, 0x4e, 0x82,
        0x54, 0xd6, 0x65, 0x93, 0xce, 0x60, 0xb2, 0x1c, 0x73, 0x56, 0xc0, 0x14, 0xa7, 0x8c, 0xf1, 0xdc,
        0x12, 0x75, 0xca, 0x1f, 0x3b, 0xbe, 0xe4, 0xd1, 0x42, 0x3d, 0xd4, 0x30, 0xa3, 0x3c, 0xb6, 0x26,
        0x6f, 0xbf, 0x0e, 0xda, 0x46, 0x69, 0x07, 0x57, 0x27, 0xf2, 0x1d, 0x9b, 0xbc, 0x94, 0x43, 0x03,
        0xf8, 0x11, 0xc7, 0xf6, 0x90, 0xef, 0x3e, 0xe7, 0x06, 0xc3, 0xd5, 0x2f, 0xc8, 0x66, 0x1e, 0xd7,
        0x08, 0xe8, 0xea, 0xde, 0x80, 0x52, 0xee, 0xf7, 0x84, 0xaa, 0x72, 0xac, 0x35, 0x4d, 0x6a, 0x2a,
        0x96, 0x1a, 0xd2, 0x71, 0x5a, 0x15, 0x49, 0x74, 0x4b, 0x9f, 0xd0, 0x5e, 0x04, 0x18, 0xa4, 0xec,
        0xc2, 0xe0, 0x41, 0x6e, 0x0f, 0x51, 0xcb, 0xcc, 0x24, 0x91, 0xaf, 0x50, 0xa1, 0xf4, 0x70, 0x39,
        0x99, 0x7c, 0x3a, 0x85, 0x23, 0xb8, 0xb4, 0x7a, 0xfc, 0x02, 0x36, 0x5b, 0x25, 0x55, 0x97, 0x31,
        0x2d, 0x5d, 0xfa, 0x98, 0xe3, 0x8a, 0x92, 0xae, 0x05, 0xdf, 0x29, 0x10, 0x67, 0x6c, 0xba, 0xc9,
        0xd3, 0x00, 0xe6, 0xcf, 0xe1, 0x9e, 0xa8, 0x2c, 0x63, 0x16, 0x01, 0x3f, 0x58, 0xe2, 0x89, 0xa9,
        0x0d, 0x38, 0x34, 0x1b, 0xab, 0x33, 0xff, 0xb0, 0xbb, 0x48, 0x0c, 0x5f, 0xb9, 0xb1, 0xcd, 0x2e,
        0xc5, 0xf3, 0xdb, 0x47, 0xe5, 0xa5, 0x9c, 0x77, 0x0a, 0xa6, 0x20, 0x68, 0xfe, 0x7f, 0xc1, 0xad,
};

struct rc2 {
        uint16_t k[64];
};

static void rc2_setup(struct rc2 *c, const uint8_t *key, size_t len, unsigned effective_bits) {
        uint8_t l[128];
        size_t t8 = (effective_bits + 7) / 8;
        uint8_t tm = (uint8_t)(0xff >> (8 * t8 - effective_bits));

        memcpy(l, key, len);
        for (size_t i = len; i < 128; i++)
                l[i] = rc2_pitable[(uint8_t)(l[i - 1] + l[i - len])];
        l[128 - t8] = rc2_pitable[l[128 - t8] & tm];
        for (size_t i = 128 - t8; i-- > 0;)
                l[i] = rc2_pitable[l[i + 1] ^ l[i + t8]];
        for (size_t i = 0; i < 64; i++)
                c->k[i] = (uint16_t)(l[2 * i] | l[2 * i + 1] << 8);
        mbedtls_platform_zeroize(l, sizeof l);
}

static uint16_t rotr16(uint16_t x, unsigned s) {
        return (uint16_t)((x >> s) | (x << (16 - s)));
}

static void rc2_decrypt_block(const struct rc2 *c, const uint8_t in[8], uint8_t out[8]) {
        static const unsigned s[4] = { 1, 2, 3, 5 };
        uint16_t r[4];
        int j = 63;

        for (int i = 0; i < 4; i++)
                r[i] = (uint16_t)(in[2 * i] | in[2 * i + 1] << 8);
        for (int round = 0; round < 16; round++) {
                for (int i = 3; i >= 0; i--) {
                        r[i] = rotr16(r[i], s[i]);
                        r[i] = (uint16_t)(r[i] - c->k[j] - (r[(i + 3) & 3] & r[(i + 2) & 3]) -
                                          ((uint16_t)~r[(i + 3) & 3] & r[(i + 1) & 3]));
                        j--;
                }
                if (round == 4 || round == 10) { /* reverse mash after mixing rounds 5 and 11 */
                        for (int i = 3; i >= 0; i--)
                                r[i] = (uint16_t)(r[i] - c->k[r[(i + 3) & 3] & 63]);
                }
        }
        for (int i = 0; i < 4; i++) {
                out[2 * i] = (uint8_t)r[i];
                out[2 * i + 1] = (uint8_t)(r[i] >> 8);
        }
}

/* CBC + PKCS#7 padding check; out holds len bytes. */
static int rc2_cbc_decrypt(const uint8_t *key, size_t keylen, unsigned bits, const uint8_t iv[8], const uint8_t *in,
                           size_t len, uint8_t *out, size_t *ret_len) {
        struct rc2 c;
        uint8_t prev[8], pad;

        if (len == 0 || len % 8)
                return -EBADMSG;
        rc2_setup(&c, key, keylen, bits);
        memcpy(prev, iv, 8);
        for (size_t off = 0; off < len; off += 8) {
                rc2_decrypt_block(&c, in + off, out + off);
                for (int i = 0; i < 8; i++)
                        out[off + i] ^= prev[i];
                memcpy(prev, in + off, 8);
        }
        mbedtls_platform_zeroize(&c, sizeof c);
        pad = out[len - 1];
        if (pad == 0 || pad > 8)
                return -EACCES;
        for (size_t i = len - pad; i < len; i++)
                if (out[i] != pad)
                        return -EACCES;
        *ret_len = len - pad;
        return 0;
}

/* ---- decryption of an AlgorithmIdentifier + ciphertext ---- */

static int cipher_cbc_decrypt(mbedtls_cipher_type_t type, const uint8_t *key, size_t keylen, const uint8_t *iv,
                              size_t ivlen, const uint8_t *in, size_t len, uint8_t *out, size_t *ret_len) {
        const mbedtls_cipher_info_t *info = mbedtls_cipher_info_from_type(type);
        mbedtls_cipher_context_t ctx;
        size_t olen = 0;
        int r;

        if (!info)
                return -EOPNOTSUPP;
        if (keylen * 8 != info->key_bitlen || ivlen != info->iv_size)
                return -EBADMSG;
        mbedtls_cipher_init(&ctx);
        r = mbedtls_cipher_setup(&ctx, info);
        if (r == 0)
                r = mbedtls_cipher_setkey(&ctx, key, (int)info->key_bitlen, MBEDTLS_DECRYPT);
        if (r == 0)
                r = mbedtls_cipher_set_padding_mode(&ctx, MBEDTLS_PADDING_PKCS7);
        if (r == 0)
                r = mbedtls_cipher_crypt(&ctx, iv, ivlen, in, len, out, &olen);
        mbedtls_cipher_free(&ctx);
        if (r == MBEDTLS_ERR_CIPHER_INVALID_PADDING)
                return -EACCES;
        if (r != 0)
                return -EBADMSG;
        *ret_len = olen;
        return 0;
}

static int decrypt_pkcs12_pbe(const mbedtls_asn1_buf *oid, const mbedtls_asn1_buf *params, const struct pw *pw,
                              const uint8_t *in, size_t len, uint8_t *out, size_t *ret_len) {
        uint8_t key[24], iv[8];
        uint8_t *p = params->p;
        const uint8_t *end = params->p + params->len;
        size_t keylen, saltlen;
        const uint8_t *salt;
        int iterations = 1, r;

        if (OID_IS(oid, oid_pbe_sha_3des3))
                keylen = 24;
        else if (OID_IS(oid, oid_pbe_sha_3des2))
                keylen = 16;
        else if (OID_IS(oid, oid_pbe_sha_rc2_128))
                keylen = 16;
        else
                keylen = 5; /* 40-bit RC2 */

        if (params->tag != (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
                return -EBADMSG;
        r = get_salt_iterations(&p, end, false, &salt, &saltlen, &iterations);
        if (r < 0)
                return r;
        if (mbedtls_pkcs12_derivation(key, keylen, pw->bmp, pw->bmp_len, salt, saltlen, MBEDTLS_MD_SHA1,
                                      MBEDTLS_PKCS12_DERIVE_KEY, iterations) != 0 ||
            mbedtls_pkcs12_derivation(iv, sizeof iv, pw->bmp, pw->bmp_len, salt, saltlen, MBEDTLS_MD_SHA1,
                                      MBEDTLS_PKCS12_DERIVE_IV, iterations) != 0) {
                r = -EIO;
                goto out;
        }
        if (OID_IS(oid, oid_pbe_sha_3des3))
                r = cipher_cbc_decrypt(MBEDTLS_CIPHER_DES_EDE3_CBC, key, 24, iv, 8, in, len, out, ret_len);
        else if (OID_IS(oid, oid_pbe_sha_3des2))
                r = cipher_cbc_decrypt(MBEDTLS_CIPHER_DES_EDE_CBC, key, 16, iv, 8, in, len, out, ret_len);
        else
                r = rc2_cbc_decrypt(key, keylen, (unsigned)keylen * 8, iv, in, len, out, ret_len);
out:
        mbedtls_platform_zeroize(key, sizeof key);
        mbedtls_platform_zeroize(iv, sizeof iv);
        return r;
}

static int decrypt_pbes2(const mbedtls_asn1_buf *params, const struct pw *pw, const uint8_t *in, size_t len,
                         uint8_t *out, size_t *ret_len) {
        mbedtls_asn1_buf kdf_oid, kdf_params, enc_oid, enc_params, prf_oid, prf_params;
        mbedtls_md_type_t md = MBEDTLS_MD_SHA1;
        mbedtls_cipher_type_t ct;
        const mbedtls_md_info_t *md_info;
        mbedtls_md_context_t mdc;
        uint8_t key[32];
        uint8_t *p = params->p, *kp, *kend;
        const uint8_t *end = params->p + params->len, *salt;
        size_t saltlen, keylen;
        int iterations, klen_field = 0, r;

        if (params->tag != (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
                return -EBADMSG;
        if (mbedtls_asn1_get_alg(&p, end, &kdf_oid, &kdf_params) != 0 ||
            mbedtls_asn1_get_alg(&p, end, &enc_oid, &enc_params) != 0)
                return -EBADMSG;
        if (!OID_IS(&kdf_oid, oid_pbkdf2))
                return -EOPNOTSUPP;

        if (OID_IS(&enc_oid, oid_aes256_cbc)) {
                ct = MBEDTLS_CIPHER_AES_256_CBC;
                keylen = 32;
        } else if (OID_IS(&enc_oid, oid_aes192_cbc)) {
                ct = MBEDTLS_CIPHER_AES_192_CBC;
                keylen = 24;
        } else if (OID_IS(&enc_oid, oid_aes128_cbc)) {
                ct = MBEDTLS_CIPHER_AES_128_CBC;
                keylen = 16;
        } else if (OID_IS(&enc_oid, oid_des_ede3_cbc)) {
                ct = MBEDTLS_CIPHER_DES_EDE3_CBC;
                keylen = 24;
        } else {
                return -EOPNOTSUPP;
        }
        if (enc_params.tag != MBEDTLS_ASN1_OCTET_STRING)
                return -EBADMSG;

        /* PBKDF2-params ::= SEQUENCE { salt OCTET STRING, iterationCount INTEGER,
         *   keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT hmacWithSHA1 } */
        if (kdf_params.tag != (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
                return -EBADMSG;
        kp = kdf_params.p;
        kend = kdf_params.p + kdf_params.len;
        r = get_salt_iterations(&kp, kend, false, &salt, &saltlen, &iterations);
        if (r < 0)
                return r;
        if (kp < kend && *kp == MBEDTLS_ASN1_INTEGER) {
                r = get_uint(&kp, kend, 64, &klen_field);
                if (r < 0)
                        return r;
                if ((size_t)klen_field != keylen)
                        return -EBADMSG;
        }
        if (kp < kend) {
                if (mbedtls_asn1_get_alg(&kp, kend, &prf_oid, &prf_params) != 0)
                        return -EBADMSG;
                if (mbedtls_oid_get_md_hmac(&prf_oid, &md) != 0)
                        return -EOPNOTSUPP;
        }
        if (kp != kend)
                return -EBADMSG;

        md_info = mbedtls_md_info_from_type(md);
        if (!md_info)
                return -EOPNOTSUPP;
        mbedtls_md_init(&mdc);
        r = mbedtls_md_setup(&mdc, md_info, 1);
        if (r == 0)
                r = mbedtls_pkcs5_pbkdf2_hmac(&mdc, pw->utf8, pw->utf8_len, salt, saltlen, (unsigned)iterations,
                                              (uint32_t)keylen, key);
        mbedtls_md_free(&mdc);
        if (r != 0) {
                mbedtls_platform_zeroize(key, sizeof key);
                return -EIO;
        }
        r = cipher_cbc_decrypt(ct, key, keylen, enc_params.p, enc_params.len, in, len, out, ret_len);
        mbedtls_platform_zeroize(key, sizeof key);
        return r;
}

/* EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }
 * at *p: its algorithm, and *p left at the ciphertext of *ret_len bytes. */
static int get_encrypted_pki(uint8_t **p, const uint8_t *end, mbedtls_asn1_buf *alg, mbedtls_asn1_buf *params,
                             size_t *ret_len) {
        size_t len;
        int r = get_tag(p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
        if (r < 0)
                return r;
        end = *p + len;
        if (mbedtls_asn1_get_alg(p, end, alg, params) != 0)
                return -EBADMSG;
        return get_tag(p, end, MBEDTLS_ASN1_OCTET_STRING, ret_len);
}

/* Decrypts into fresh secure memory. */
static int decrypt(const mbedtls_asn1_buf *oid, const mbedtls_asn1_buf *params, const struct pw *pw,
                   const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len) {
        uint8_t *out;
        size_t olen = 0;
        int r;

        if (len == 0 || len > P12_MAX_SIZE)
                return -EBADMSG;
        out = secure_alloc(len + 32);
        if (!out)
                return -ENOMEM;
        if (OID_IS(oid, oid_pbes2))
                r = decrypt_pbes2(params, pw, in, len, out, &olen);
        else if (OID_IS(oid, oid_pbe_sha_3des3) || OID_IS(oid, oid_pbe_sha_3des2) || OID_IS(oid, oid_pbe_sha_rc2_128) ||
                 OID_IS(oid, oid_pbe_sha_rc2_40))
                r = decrypt_pkcs12_pbe(oid, params, pw, in, len, out, &olen);
        else
                r = -EOPNOTSUPP;
        if (r < 0) {
                secure_free(out);
                return r;
        }
        *ret = out;
        *ret_len = olen;
        return 0;
}

/* ---- bags ---- */

static char *bmp_to_utf8(const uint8_t *p, size_t len) {
        char *s, *q;

        if (len % 2 || len > 4096)
                return NULL;
        s = malloc(len / 2 * 3 + 1);
        if (!s)
                return NULL;
        q = s;
        for (size_t i = 0; i < len; i += 2) {
                unsigned c = (unsigned)p[i] << 8 | p[i + 1];
                if (c == 0)
                        break;
                if (c < 0x80) {
                        *q++ = (char)c;
                } else if (c < 0x800) {
                        *q++ = (char)(0xc0 | c >> 6);
                        *q++ = (char)(0x80 | (c & 0x3f));
                } else {
                        /* surrogates are kept as-is (3-byte forms): labels only */
                        *q++ = (char)(0xe0 | c >> 12);
                        *q++ = (char)(0x80 | ((c >> 6) & 0x3f));
                        *q++ = (char)(0x80 | (c & 0x3f));
                }
        }
        *q = '\0';
        return s;
}

struct bag_attrs {
        uint8_t *key_id;
        size_t key_id_len;
        char *name;
};

static void bag_attrs_done(struct bag_attrs *a) {
        free(a->key_id);
        free(a->name);
        memset(a, 0, sizeof *a);
}

/* SET OF Attribute { attrId OID, attrValues SET OF ANY } */
static int parse_attrs(uint8_t *p, const uint8_t *end, struct bag_attrs *ret) {
        while (p < end) {
                mbedtls_asn1_buf oid;
                uint8_t *aend, *vend;
                size_t len;
                int r;

                r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        return r;
                aend = p + len;
                r = get_oid(&p, aend, &oid);
                if (r < 0)
                        return r;
                r = get_tag(&p, aend, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SET, &len);
                if (r < 0)
                        return r;
                vend = p + len;
                if (OID_IS(&oid, oid_local_key_id) && !ret->key_id) {
                        r = get_tag(&p, vend, MBEDTLS_ASN1_OCTET_STRING, &len);
                        if (r < 0)
                                return r;
                        if (len > 0 && len <= 256) {
                                ret->key_id = malloc(len);
                                if (!ret->key_id)
                                        return -ENOMEM;
                                memcpy(ret->key_id, p, len);
                                ret->key_id_len = len;
                        }
                } else if (OID_IS(&oid, oid_friendly_name) && !ret->name) {
                        r = get_tag(&p, vend, MBEDTLS_ASN1_BMP_STRING, &len);
                        if (r < 0)
                                return r;
                        ret->name = bmp_to_utf8(p, len);
                }
                p = aend;
        }
        return 0;
}

static int dup_bytes(const uint8_t *p, size_t len, bool secure, uint8_t **ret) {
        uint8_t *q = secure ? secure_alloc(len) : malloc(len);
        if (!q)
                return -ENOMEM;
        memcpy(q, p, len);
        *ret = q;
        return 0;
}

static int parse_safe_contents(uint8_t *p, const uint8_t *end, const struct pw *pw, struct p12 *out, int depth);

static int set_key(struct p12 *out, uint8_t *key, size_t len, struct bag_attrs *attrs) {
        if (out->key) {
                /* Only the first key is imported. */
                secure_free(key);
                return 0;
        }
        out->key = key;
        out->key_len = len;
        out->key_id = TAKE_PTR(attrs->key_id);
        out->key_id_len = attrs->key_id_len;
        out->key_name = TAKE_PTR(attrs->name);
        return 0;
}

static int parse_bag(uint8_t *p, const uint8_t *end, const struct pw *pw, struct p12 *out, int depth) {
        struct bag_attrs attrs = {};
        mbedtls_asn1_buf oid;
        uint8_t *vp, *vend;
        size_t len;
        int r;

        r = get_oid(&p, end, &oid);
        if (r < 0)
                return r;
        r = get_tag(&p, end, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0, &len);
        if (r < 0)
                return r;
        vp = p;
        vend = p + len;
        p = vend;
        if (p < end) {
                r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SET, &len);
                if (r < 0)
                        return r;
                r = parse_attrs(p, p + len, &attrs);
                if (r < 0)
                        goto out;
                p += len;
                if (p != end) {
                        r = -EBADMSG;
                        goto out;
                }
        }

        if (OID_IS(&oid, oid_key_bag)) {
                uint8_t *start = vp, *key;
                r = get_tag(&vp, vend, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        goto out;
                len += (size_t)(vp - start);
                r = dup_bytes(start, len, true, &key);
                if (r < 0)
                        goto out;
                r = set_key(out, key, len, &attrs);
        } else if (OID_IS(&oid, oid_shrouded_key_bag)) {
                mbedtls_asn1_buf alg, params;
                uint8_t *key = NULL;
                size_t key_len = 0;

                r = get_encrypted_pki(&vp, vend, &alg, &params, &len);
                if (r < 0)
                        goto out;
                r = decrypt(&alg, &params, pw, vp, len, &key, &key_len);
                if (r < 0)
                        goto out;
                r = set_key(out, key, key_len, &attrs);
        } else if (OID_IS(&oid, oid_cert_bag)) {
                /* CertBag ::= SEQUENCE { certId OID, certValue [0] EXPLICIT OCTET STRING } */
                mbedtls_asn1_buf cid;
                struct p12_cert *c;
                uint8_t *cend;

                r = get_tag(&vp, vend, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        goto out;
                cend = vp + len;
                r = get_oid(&vp, cend, &cid);
                if (r < 0)
                        goto out;
                if (!OID_IS(&cid, oid_x509_cert))
                        goto out; /* SDSI certificates etc.: skipped */
                r = get_tag(&vp, cend, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0, &len);
                if (r < 0)
                        goto out;
                r = get_tag(&vp, cend, MBEDTLS_ASN1_OCTET_STRING, &len);
                if (r < 0)
                        goto out;
                if (out->n_certs >= P12_MAX_CERTS) {
                        r = -E2BIG;
                        goto out;
                }
                c = &out->certs[out->n_certs];
                r = dup_bytes(vp, len, false, &c->der);
                if (r < 0)
                        goto out;
                c->len = len;
                c->key_id = TAKE_PTR(attrs.key_id);
                c->key_id_len = attrs.key_id_len;
                c->name = TAKE_PTR(attrs.name);
                out->n_certs++;
        } else if (OID_IS(&oid, oid_safe_contents_bag)) {
                r = get_tag(&vp, vend, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        goto out;
                r = parse_safe_contents(vp, vp + len, pw, out, depth + 1);
        }
        /* Other bags (CRL, secret): skipped. */
out:
        bag_attrs_done(&attrs);
        return r;
}

/* SafeContents ::= SEQUENCE OF SafeBag; p..end is the SEQUENCE's content. */
static int parse_safe_contents(uint8_t *p, const uint8_t *end, const struct pw *pw, struct p12 *out, int depth) {
        if (depth > P12_MAX_DEPTH)
                return -EBADMSG;
        while (p < end) {
                size_t len;
                int r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        return r;
                r = parse_bag(p, p + len, pw, out, depth);
                if (r < 0)
                        return r;
                p += len;
        }
        return 0;
}

/* A SafeContents held in an OCTET STRING (plain or decrypted). */
static int parse_safe_contents_der(uint8_t *p, const uint8_t *end, const struct pw *pw, struct p12 *out) {
        size_t len;
        int r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
        if (r < 0)
                return r;
        return parse_safe_contents(p, p + len, pw, out, 0);
}

/* ContentInfo (SEQUENCE content at p..end) from the AuthenticatedSafe. */
static int parse_content_info(uint8_t *p, const uint8_t *end, const struct pw *pw, struct p12 *out) {
        mbedtls_asn1_buf oid;
        size_t len;
        int r;

        r = get_oid(&p, end, &oid);
        if (r < 0)
                return r;
        r = get_tag(&p, end, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0, &len);
        if (r < 0)
                return r;
        end = p + len;
        if (OID_IS(&oid, oid_data)) {
                r = get_tag(&p, end, MBEDTLS_ASN1_OCTET_STRING, &len);
                if (r < 0)
                        return r == -EBADMSG && *p == (MBEDTLS_ASN1_OCTET_STRING | MBEDTLS_ASN1_CONSTRUCTED)
                                       ? -EOPNOTSUPP
                                       : r;
                return parse_safe_contents_der(p, p + len, pw, out);
        }
        if (OID_IS(&oid, oid_encrypted_data)) {
                /* EncryptedData ::= SEQUENCE { version INTEGER, EncryptedContentInfo ::= SEQUENCE {
                 *   contentType OID, contentEncryptionAlgorithm AlgorithmIdentifier,
                 *   encryptedContent [0] IMPLICIT OCTET STRING } } */
                mbedtls_asn1_buf ctype, alg, params;
                uint8_t *pt = NULL, *eend;
                size_t pt_len = 0;
                int version;

                r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        return r;
                end = p + len;
                r = get_uint(&p, end, 2, &version);
                if (r < 0)
                        return -EBADMSG;
                r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
                if (r < 0)
                        return r;
                eend = p + len;
                r = get_oid(&p, eend, &ctype);
                if (r < 0)
                        return r;
                if (!OID_IS(&ctype, oid_data))
                        return -EBADMSG;
                if (mbedtls_asn1_get_alg(&p, eend, &alg, &params) != 0)
                        return -EBADMSG;
                r = get_tag(&p, eend, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0, &len);
                if (r < 0)
                        return r == -EBADMSG && p < eend &&
                                               *p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED)
                                       ? -EOPNOTSUPP
                                       : r;
                r = decrypt(&alg, &params, pw, p, len, &pt, &pt_len);
                if (r < 0)
                        return r;
                r = parse_safe_contents_der(pt, pt + pt_len, pw, out);
                secure_free(pt);
                return r;
        }
        /* envelopedData (public-key privacy mode) and others. */
        return -EOPNOTSUPP;
}

/* MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 } */
static int verify_mac(uint8_t *p, const uint8_t *end, const struct pw *pw, const uint8_t *content, size_t clen) {
        mbedtls_asn1_buf alg, params;
        mbedtls_md_type_t md;
        const mbedtls_md_info_t *info;
        uint8_t key[MBEDTLS_MD_MAX_SIZE], mac[MBEDTLS_MD_MAX_SIZE], *dend;
        const uint8_t *digest, *salt;
        size_t len, dlen, saltlen, mdlen;
        int iterations = 1, r;
        uint8_t diff = 0;

        r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
        if (r < 0)
                return r;
        end = p + len;
        r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &len);
        if (r < 0)
                return r;
        dend = p + len;
        if (mbedtls_asn1_get_alg(&p, dend, &alg, &params) != 0)
                return -EBADMSG;
        r = get_tag(&p, dend, MBEDTLS_ASN1_OCTET_STRING, &dlen);
        if (r < 0)
                return r;
        digest = p;
        p += dlen;
        r = get_salt_iterations(&p, end, true, &salt, &saltlen, &iterations);
        if (r < 0)
                return r;
        if (mbedtls_oid_get_md_alg(&alg, &md) != 0)
                return -EOPNOTSUPP;
        info = mbedtls_md_info_from_type(md);
        if (!info)
                return -EOPNOTSUPP;
        mdlen = mbedtls_md_get_size(info);
        if (dlen != mdlen)
                return -EBADMSG;
        if (mbedtls_pkcs12_derivation(key, mdlen, pw->bmp, pw->bmp_len, salt, saltlen, md,
                                      MBEDTLS_PKCS12_DERIVE_MAC_KEY, iterations) != 0)
                return -EIO;
        r = mbedtls_md_hmac(info, key, mdlen, content, clen, mac);
        mbedtls_platform_zeroize(key, sizeof key);
        if (r != 0)
                return -EIO;
        for (size_t i = 0; i < mdlen; i++)
                diff |= (uint8_t)(mac[i] ^ digest[i]);
        return diff ? -EACCES : 0;
}

static int pw_init(struct pw *pw, const char *password) {
        size_t n = password ? strlen(password) : 0, k = 0;
        const uint8_t *s = (const uint8_t *)(password ? password : "");

        pw->utf8 = s;
        pw->utf8_len = n;
        pw->bmp = secure_alloc(2 * n + 2);
        if (!pw->bmp)
                return -ENOMEM;
        for (size_t i = 0; i < n;) {
                unsigned c = s[i];
                size_t extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : 3;
                if (extra) {
                        c &= 0x3f >> extra;
                        for (size_t j = 1; j <= extra; j++)
                                c = c << 6 | (i + j < n ? (s[i + j] & 0x3f) : 0);
                }
                i += extra + 1;
                if (c > 0xffff)
                        c = 0xfffd; /* outside the BMP */
                pw->bmp[k++] = (uint8_t)(c >> 8);
                pw->bmp[k++] = (uint8_t)c;
        }
        pw->bmp[k++] = 0;
        pw->bmp[k++] = 0;
        pw->bmp_len = k;
        return 0;
}

int p12_looks_like(const uint8_t *data, size_t len) {
        uint8_t *p = (uint8_t *)data;
        const uint8_t *end = data + len;
        size_t l;
        int version;

        if (get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &l) < 0)
                return 0;
        end = p + l;
        if (get_uint(&p, end, 100, &version) < 0 || version != 3)
                return 0;
        return get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &l) == 0;
}

void p12_done(struct p12 *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_certs; i++) {
                free(p->certs[i].der);
                free(p->certs[i].key_id);
                free(p->certs[i].name);
        }
        secure_free(p->key);
        free(p->key_id);
        free(p->key_name);
        memset(p, 0, sizeof *p);
}

int p12_parse(const uint8_t *data, size_t len, const char *password, struct p12 *ret) {
        struct p12 *out;
        struct pw pw = {};
        uint8_t *p = (uint8_t *)data, *pfx_end, *ci_end, *safe, *safe_end;
        const uint8_t *end = data + len;
        mbedtls_asn1_buf oid;
        size_t l;
        int version, r;

        if (len > P12_MAX_SIZE)
                return -E2BIG;
        out = calloc(1, sizeof *out);
        if (!out)
                return -ENOMEM;
        r = pw_init(&pw, password);
        if (r < 0)
                goto out;

        /* PFX ::= SEQUENCE { version INTEGER {v3(3)}, authSafe ContentInfo, macData MacData OPTIONAL } */
        r = get_tag(&p, end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &l);
        if (r < 0)
                goto out;
        pfx_end = p + l;
        r = get_uint(&p, pfx_end, 100, &version);
        if (r < 0 || version != 3) {
                r = -EBADMSG;
                goto out;
        }
        r = get_tag(&p, pfx_end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &l);
        if (r < 0)
                goto out;
        ci_end = p + l;
        r = get_oid(&p, ci_end, &oid);
        if (r < 0)
                goto out;
        if (!OID_IS(&oid, oid_data)) {
                r = -EOPNOTSUPP; /* signedData: public-key integrity mode */
                goto out;
        }
        r = get_tag(&p, ci_end, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0, &l);
        if (r < 0)
                goto out;
        r = get_tag(&p, ci_end, MBEDTLS_ASN1_OCTET_STRING, &l);
        if (r < 0) {
                if (p < ci_end && *p == (MBEDTLS_ASN1_OCTET_STRING | MBEDTLS_ASN1_CONSTRUCTED))
                        r = -EOPNOTSUPP; /* BER constructed OCTET STRING */
                goto out;
        }
        safe = p;
        safe_end = p + l;
        p = ci_end;
        if (p < pfx_end) {
                r = verify_mac(p, pfx_end, &pw, safe, l);
                if (r < 0)
                        goto out;
        }

        /* AuthenticatedSafe ::= SEQUENCE OF ContentInfo */
        p = safe;
        r = get_tag(&p, safe_end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &l);
        if (r < 0)
                goto out;
        safe_end = p + l;
        while (p < safe_end) {
                r = get_tag(&p, safe_end, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, &l);
                if (r < 0)
                        goto out;
                r = parse_content_info(p, p + l, &pw, out);
                if (r < 0)
                        goto out;
                p += l;
        }
        *ret = *out;
        memset(out, 0, sizeof *out);
        r = 0;
out:
        p12_done(out);
        free(out);
        secure_free(pw.bmp);
        return r;
}

int p12_decrypt_pkcs8(const uint8_t *der, size_t len, const char *password, uint8_t **ret, size_t *ret_len) {
        uint8_t *p = (uint8_t *)der;
        mbedtls_asn1_buf alg, params;
        struct pw pw = {};
        size_t l;
        int r;

        if (len > P12_MAX_SIZE)
                return -E2BIG;
        r = get_encrypted_pki(&p, der + len, &alg, &params, &l);
        if (r < 0)
                return r;
        r = pw_init(&pw, password);
        if (r < 0)
                return r;
        r = decrypt(&alg, &params, &pw, p, l, ret, ret_len);
        secure_free(pw.bmp);
        return r;
}
