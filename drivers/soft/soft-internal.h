/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Inside the soft token: shared by soft.c (files, PINs, login), soft-objects.c
 * (objects, key generation) and soft-crypto.c (sign/decrypt, key cache).
 *
 * Locking: t->lock protects every field of struct token (but info, under
 * info_lock), the SQLite handle
 * and the key cache.  Every op takes it, except that sign/decrypt release it
 * while they compute: they hold a reference to a cached key and that key's
 * own mutex instead (ops->parallel_crypto is true). */
#pragma once

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>

#include "drivers/driver.h"

#define SOFT_KEY_LEN 32
#define SOFT_GCM_IV_LEN 12
#define SOFT_GCM_TAG_LEN 16
#define SOFT_SALT_LEN 16
#define SOFT_MIN_PIN 4
#define SOFT_MAX_PIN 64
#define SOFT_SO_MAX_TRIES 10
#define SOFT_MAGIC "netca-soft-token-1"
#define SOFT_SECRET_MAX 512   /* bytes of a generic secret key */
/* Session (non-persistent) object ids have this bit set; SQLite rowids never do. */
#define SOFT_MEM_ID_BIT (UINT64_C(1) << 62)

/* An EC private key for soft_ecdsa_sign: the scalar in secure memory. */
struct soft_ec_key {
        mbedtls_ecp_group_id id;
        size_t nbits;            /* of the group order */
        mbedtls_mpi d;           /* read-only view of limbs: never mbedtls_mpi_free it */
        mbedtls_mpi_uint *limbs; /* follows the struct, in the same secure block */
};

/* A parsed private key, shared while logged in. */
struct soft_key {
        unsigned refs;           /* under token lock */
        uint64_t id;
        pthread_mutex_t lock;    /* serializes operations on pk (RSA, and EC curves ec does not cover) */
        mbedtls_pk_context pk;   /* for an EC key with ec set, pk holds no private scalar */
        struct soft_ec_key *ec;  /* P-256/P-384: signs without the lock, in parallel */
        bool can_sign, can_decrypt, can_unwrap;
};

/* A session object: attributes plus the encrypted secret (same format as on disk). */
struct soft_mem_obj {
        uint64_t id;
        struct nattrs attrs;
        uint8_t *secret;
        size_t secret_len;
};

struct token {
        pthread_mutex_t lock;
        /* get_info() answers from this snapshot, under info_lock only (it is
         * called without the token lock and must never wait for a busy
         * token); refreshed by publish_info() whenever the state changes. */
        pthread_mutex_t info_lock;
        struct token_desc info;
        sqlite3 *db;
        char *path;

        char label[33];
        char serial[17];
        unsigned iterations;
        unsigned user_max, user_fails;
        unsigned so_max, so_fails;
        bool user_pin_init;

        uint8_t *token_key;      /* secure memory, SOFT_KEY_LEN; NULL when logged out */
        /* secure memory, SOFT_KEY_LEN, random for each open: seals the keys
         * of session objects, which a public session may make and use
         * without a login (PKCS#11 2.40 section 4.4) and which never reach
         * the disk. */
        uint8_t *mem_key;
        bool user_logged, so_logged;

        struct soft_mem_obj *mem;
        size_t n_mem;
        uint64_t next_mem_id;

        struct soft_key **keys;
        size_t n_keys;
};

/* soft.c: storage helpers */
int soft_db_exec(struct token *t, const char *sql);
int soft_db_begin(struct token *t);            /* BEGIN IMMEDIATE */
int soft_db_commit(struct token *t);
void soft_db_flush_wal(struct token *t);
void soft_db_rollback(struct token *t);
/* Ends the open transaction: commits it if r >= 0 (the commit's result),
 * else rolls it back (r). */
int soft_db_end(struct token *t, int r);
int soft_errno_from_sqlite(int rc);

/* What an object keeps sealed: a private key (pk), or else a secret key's
 * value. */
struct soft_sealable {
        mbedtls_pk_context *pk;
        const uint8_t *value;
        size_t value_len;
};

/* Opens object id's sealed secret (sec, sec_n) into secure memory
 * (*ret, secure_free it): -EPERM when its seal key is not at hand, -EIO
 * when it does not open. */
int soft_secret_open(struct token *t, uint64_t id, const uint8_t *sec, size_t sec_n, uint8_t **ret, size_t *ret_n);

/* Opens object id's sealed private key (sec, sec_n) into pk (set up by the
 * caller with mbedtls_pk_init): -EPERM when its seal key is not at hand
 * (a token object while logged out), -EIO when it does not open. */
int soft_key_open(struct token *t, uint64_t id, const uint8_t *sec, size_t sec_n, mbedtls_pk_context *pk);

/* The key that seals object id's private key: mem_key for a session
 * object, token_key for a token object (NULL when logged out). */
const uint8_t *soft_seal_key(const struct token *t, uint64_t id);

/* AES-256-GCM: out = iv || ciphertext || tag (malloc'd). */
int soft_seal(const uint8_t key[SOFT_KEY_LEN], const uint8_t *aad, size_t aad_len, const uint8_t *in,
              size_t in_len, uint8_t **ret, size_t *ret_len);
/* Plaintext goes to secure memory (secure_free it).  -EBADMSG on a bad tag. */
int soft_open_sealed(const uint8_t key[SOFT_KEY_LEN], const uint8_t *aad, size_t aad_len, const uint8_t *in,
                     size_t in_len, uint8_t **ret, size_t *ret_len);

/* soft-objects.c */
int soft_load_objects(struct token *t, struct dobj **ret, size_t *ret_n);
int soft_create_object(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret);
int soft_destroy_object(struct token *t, uint64_t id);
int soft_copy_object(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                     struct dobj *ret);
int soft_set_attributes(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        struct nattrs *ret_attrs);
/* Takes the token lock itself (generates without it). */
int soft_generate_key_pair(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_tmpl,
                           CK_ULONG pub_n, const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n, struct dobj *ret_pub,
                           struct dobj *ret_priv);
/* C_GenerateKey: a secret key (CKM_AES_KEY_GEN, CKM_GENERIC_SECRET_KEY_GEN). */
int soft_generate_key(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                      bool persistent, struct dobj *ret);
/* Stores a secret key (CKO_SECRET_KEY attributes a, moved to *ret, with
 * value): C_CreateObject and C_UnwrapKey. */
int soft_secret_object(struct token *t, struct nattrs *a, const uint8_t *value, size_t len, bool persistent,
                       struct dobj *ret);
/* Reads one object's attributes and secret (either may be NULL). */
int soft_object_get(struct token *t, uint64_t id, struct nattrs *ret_attrs, uint8_t **ret_secret,
                    size_t *ret_secret_len);
void soft_mem_objects_clear(struct token *t);

/* soft-crypto.c */
int soft_sign(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
              uint8_t *out, size_t *outlen);
int soft_encrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                 uint8_t *out, size_t *outlen);
int soft_decrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                 uint8_t *out, size_t *outlen);
/* RSA decryption of a wrapped key with private key `key` (CKA_UNWRAP):
 * out holds in_len bytes. */
int soft_rsa_unwrap(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                    uint8_t *out, size_t *outlen);
/* Drops cached keys (all, or one id); under the token lock. */
void soft_keys_drop(struct token *t);
void soft_keys_drop_id(struct token *t, uint64_t id);
/* AAD for a key's secret: "netca-soft-key" || u64 id. */
size_t soft_key_aad(uint64_t id, uint8_t out[32]);

/* soft-secret.c: secret keys in use (under the token lock) */
/* CKA_CHECK_VALUE of an AES key: the first 3 bytes of E(key, 0^128). */
int soft_aes_check_value(const uint8_t *key, size_t len, uint8_t out[3]);
/* Secret key id's attributes (may be NULL) and value (secure memory:
 * secure_free it); -ENOKEY when id is not a secret key. */
int soft_secret_get(struct token *t, uint64_t id, struct nattrs *ret_attrs, uint8_t **ret_value,
                    size_t *ret_len);
int soft_digest_key(struct token *t, uint64_t key, int (*feed)(void *ctx, const uint8_t *p, size_t n), void *ctx);
/* Without the token lock (takes it to open the key), as soft_sign. */
bool soft_is_hmac(CK_MECHANISM_TYPE m);
int soft_hmac(struct token *t, uint64_t id, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
              uint8_t *out, size_t *outlen);
/* AES ECB, CBC, CBC-PAD, CTR, GCM (parameters checked by the core):
 * the driver's encrypt, and decrypt of AES mechanisms. */
bool soft_is_aes(CK_MECHANISM_TYPE m);
int soft_aes(struct token *t, uint64_t id, const CK_MECHANISM *mech, bool enc, const uint8_t *in, size_t in_len,
             uint8_t *out, size_t *outlen);
/* C_WrapKey / C_UnwrapKey of secret keys: AES key wrap (RFC 3394, RFC
 * 5649) or RSA (PKCS #1 v1.5, OAEP). */
int soft_wrap_key(struct token *t, uint64_t wkey, const CK_MECHANISM *mech, uint64_t key, uint8_t *out,
                  size_t *outlen);
int soft_unwrap_key(struct token *t, uint64_t ukey, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                    const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret);

/* soft-ecdsa.c: ECDSA with kept groups and a pool of precomputed nonces
 * (see the file's comment).  Thread-safe; no lock of the caller is needed.
 * soft_ec_key_new copies ec's private scalar into secure memory (the caller
 * then wipes its own copy); -EINVAL for a curve other than P-256/P-384. */
bool soft_ecdsa_supported(mbedtls_ecp_group_id id);
int soft_ec_key_new(const mbedtls_ecp_keypair *ec, struct soft_ec_key **ret);
struct soft_ec_key *soft_ec_key_free(struct soft_ec_key *k); /* wipes; accepts NULL; returns NULL */
/* Raw ECDSA of hash (any length > 0, truncated to the order's bit length):
 * r || s, each of the order's byte length, in out (out_len must be exactly
 * 2 * that).  -ERANGE bad lengths, -ENOMEM, -EIO. */
int soft_ecdsa_sign(const struct soft_ec_key *key, const uint8_t *hash, size_t hash_len, uint8_t *out,
                    size_t out_len);
/* Tests and measurements: off empties the pool and makes every signature
 * presign inline; stats count signatures served from the pool and inline,
 * and the presignatures available now (any argument may be NULL). */
void soft_ecdsa_pool_enable(bool on);
void soft_ecdsa_stats(uint64_t *ret_pooled, uint64_t *ret_inline, size_t *ret_available);
