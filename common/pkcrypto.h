/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Public-key helpers over mbedTLS 2.28, shared by the daemon core and the
 * drivers: mechanism tables, hashing, DigestInfo, public-key operations from
 * PKCS#11 attributes, certificate attribute extraction, and the process-wide
 * random generator.
 *
 * All functions return 0 or a negative errno from the table in
 * drivers/driver.h (e.g. -ENOTSUP unknown mechanism, -ERANGE bad input length,
 * -EBADMSG invalid signature or ciphertext, -ENOBUFS with *outlen set to the
 * size needed, -EDOM malformed attribute value).  Outputs untouched on
 * failure.  Thread-safe. */
#pragma once

#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"
#include "p11.h"

/* CKM_SHA_1/SHA224/SHA256/SHA384/SHA512 -> mbedTLS md type; NONE if not a hash. */
mbedtls_md_type_t pkc_md_type(CK_MECHANISM_TYPE hash_mech);
/* The hash of an MGF1 (CKG_MGF1_*), MBEDTLS_MD_NONE when unknown. */
mbedtls_md_type_t pkc_mgf_md(CK_RSA_PKCS_MGF_TYPE mgf);
/* The parameters of CKM_RSA_PKCS_PSS (CK_RSA_PKCS_PSS_PARAMS) for a hash
 * of hash_len bytes: *ret_md, *ret_mgf (the MGF1 hash), *ret_slen.  With
 * pk, also that the encoded message fits the key (hLen + sLen + 2 bytes of
 * the modulus less one bit).  -EBADR bad or unsupported parameters (sLen
 * over 1024 included), -ERANGE hash_len not the hash's size. */
int pkc_pss_params(const CK_MECHANISM *mech, const mbedtls_pk_context *pk, size_t hash_len,
                   mbedtls_md_type_t *ret_md, mbedtls_md_type_t *ret_mgf, size_t *ret_slen);
/* The parameters of CKM_RSA_PKCS_OAEP (CK_RSA_PKCS_OAEP_PARAMS): a SHA
 * hash, MGF1 with the same hash, an empty label.  *ret_md; -EBADR. */
int pkc_oaep_params(const CK_MECHANISM *mech, mbedtls_md_type_t *ret_md);
/* Sets CKA_PUBLIC_KEY_INFO (the DER SubjectPublicKeyInfo of pk) in a. */
int pkc_set_spki(struct nattrs *a, mbedtls_pk_context *pk);
/* Combined mechanisms: CKM_SHA256_RSA_PKCS -> (CKM_SHA256, CKM_RSA_PKCS),
 * CKM_SHA256_RSA_PKCS_PSS -> (CKM_SHA256, CKM_RSA_PKCS_PSS),
 * CKM_ECDSA_SHA256 -> (CKM_SHA256, CKM_ECDSA), and the SHA-1/224/384/512
 * variants.  False for anything else. */
bool pkc_combined_mech(CK_MECHANISM_TYPE mech, CK_MECHANISM_TYPE *ret_hash, CK_MECHANISM_TYPE *ret_raw);
/* DER DigestInfo for a hash mechanism and hash value (PKCS#1 v1.5 signing). */
int pkc_digest_info(CK_MECHANISM_TYPE hash_mech, const uint8_t *hash, size_t hash_len, uint8_t *out,
                    size_t *outlen);

/* The longest RSA public exponent accepted, in bits: what OpenSSL allows
 * for verification with a large modulus (OPENSSL_RSA_MAX_PUBEXP_BITS), here
 * for every modulus.  A 4095-bit exponent made one RSA-4096 verification
 * cost 56-96 ms (issue 23); real keys use 65537 (17 bits). */
#define PKC_RSA_MAX_EXPONENT_BITS 64

/* Builds a public key from an object's attributes: a public or private key
 * object (CKA_KEY_TYPE + CKA_MODULUS/CKA_PUBLIC_EXPONENT, or CKA_EC_PARAMS +
 * CKA_EC_POINT as a DER OCTET STRING or raw point), or a certificate
 * (CKA_VALUE).  P-256 and P-384 only for EC.  An RSA exponent longer than
 * PKC_RSA_MAX_EXPONENT_BITS is -EDOM, like any malformed key, so that such
 * a key can be neither created nor used.  *ret must be initialized
 * (mbedtls_pk_init) and empty. */
int pkc_pk_from_attrs(const struct nattrs *a, mbedtls_pk_context *ret);
/* Fills the public attributes of a key from an mbedTLS key: CKA_KEY_TYPE,
 * CKA_MODULUS, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT or CKA_EC_PARAMS
 * (named-curve OID), CKA_EC_POINT (DER OCTET STRING, uncompressed). */
int pkc_pub_attrs_from_pk(const mbedtls_pk_context *pk, struct nattrs *a);
/* Key size in bits and maximum raw signature length in bytes (RSA: modulus
 * bytes; ECDSA: 2 * order bytes). */
int pkc_key_size(const mbedtls_pk_context *pk, size_t *ret_bits, size_t *ret_sig_len);

/* Raw verify: mech is CKM_RSA_PKCS (in: DigestInfo or data), CKM_RSA_X_509,
 * CKM_RSA_PKCS_PSS (in: the hash, params CK_RSA_PKCS_PSS_PARAMS), CKM_ECDSA
 * (in: the hash, sig: r||s).  0 valid, -EBADMSG invalid, -ERANGE sig length. */
int pkc_verify(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
               const uint8_t *sig, size_t sig_len);
/* C_VerifyRecover: the data signed with CKM_RSA_PKCS (the padding
 * removed) or CKM_RSA_X_509 (all k bytes).  out NULL: *out_len = an upper
 * bound; -ENOBUFS with *out_len = the length when out is too small;
 * -EBADMSG invalid, -ERANGE sig length. */
int pkc_verify_recover(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *sig, size_t sig_len,
                       uint8_t *out, size_t *out_len);
/* Public-key encryption: CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP (SHA-1/SHA-256,
 * MGF1 with the same hash), CKM_RSA_X_509. out NULL: *outlen = size. */
int pkc_encrypt(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                uint8_t *out, size_t *outlen);

/* Certificate attributes from DER: sets CKA_CLASS (CKO_CERTIFICATE),
 * CKA_CERTIFICATE_TYPE (CKC_X_509), CKA_VALUE, CKA_SUBJECT, CKA_ISSUER,
 * CKA_SERIAL_NUMBER (DER INTEGER), CKA_START_DATE/CKA_END_DATE (CK_DATE),
 * CKA_PUBLIC_KEY_INFO, CKA_CERTIFICATE_CATEGORY and CKA_TRUSTED defaults;
 * keeps attributes the caller already set.  -EDOM if der is not a certificate. */
int pkc_cert_attrs(const uint8_t *der, size_t len, struct nattrs *a);

/* The process-wide DRBG (CTR_DRBG seeded from the OS), thread-safe.  pkc_rng
 * has the mbedTLS f_rng signature; pass NULL as its context. */
int pkc_random(void *out, size_t n);
int pkc_rng(void *ctx, unsigned char *out, size_t n);
/* Mixes caller seed material into the DRBG (C_SeedRandom). */
int pkc_seed(const void *seed, size_t n);
