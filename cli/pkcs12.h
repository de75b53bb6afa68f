/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A PKCS#12 (.p12/.pfx, RFC 7292) reader for netca-tool's import.
 *
 * mbedTLS 2.28 has the PBE primitives but no container parser; this walks the
 * DER with mbedtls/asn1.h, checking every length against its enclosing one.
 * Supported: password integrity (HMAC with SHA-1/224/256/384/512 under the
 * PKCS#12 KDF), PBES2 with PBKDF2 (HMAC-SHA-1/224/256/384/512) and
 * AES-128/192/256-CBC or DES-EDE3-CBC (OpenSSL 3's default), and the legacy
 * PKCS#12 PBEs pbeWithSHAAnd3-KeyTripleDES-CBC, pbeWithSHAAnd2-KeyTripleDES-CBC,
 * pbeWithSHAAnd128BitRC2-CBC and pbeWithSHAAnd40BitRC2-CBC (OpenSSL's
 * -legacy).  Bags: keyBag, pkcs8ShroudedKeyBag, certBag (X.509); others are
 * skipped.  Public-key integrity/privacy modes are not supported. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define P12_MAX_SIZE (4u << 20)
#define P12_MAX_ITERATIONS 10000000
#define P12_MAX_CERTS 64

struct p12_cert {
        uint8_t *der;
        size_t len;
        uint8_t *key_id;        /* localKeyId attribute, or NULL */
        size_t key_id_len;
        char *name;             /* friendlyName (UTF-8), or NULL */
};

struct p12 {
        struct p12_cert certs[P12_MAX_CERTS];
        size_t n_certs;
        uint8_t *key;           /* PKCS#8 PrivateKeyInfo DER, secure memory; NULL: none */
        size_t key_len;
        uint8_t *key_id;
        size_t key_id_len;
        char *key_name;
};

/* Parses and decrypts.  Returns 0, -EBADMSG (not PKCS#12 or malformed),
 * -EACCES (wrong password), -EOPNOTSUPP (an algorithm not supported),
 * -E2BIG, -ENOMEM.  *ret untouched on failure. */
int p12_parse(const uint8_t *data, size_t len, const char *password, struct p12 *ret);
void p12_done(struct p12 *p);
/* Decrypts a PKCS#8 EncryptedPrivateKeyInfo (DER) with the PBEs above
 * (mbedTLS 2.28 reads only PBES2 with HMAC-SHA-1 and DES): the
 * PrivateKeyInfo DER in secure memory.  Same errors as p12_parse. */
int p12_decrypt_pkcs8(const uint8_t *der, size_t len, const char *password, uint8_t **ret, size_t *ret_len);
/* Quick check: does this look like a PFX (SEQUENCE { INTEGER 3, SEQUENCE ...})? */
int p12_looks_like(const uint8_t *data, size_t len);
