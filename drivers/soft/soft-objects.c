/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token objects: storage, default attributes, import, key generation.
 * Every function here runs under the token lock, except
 * soft_generate_key_pair() which takes it itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecp.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha1.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "common/util.h"
#include "soft-internal.h"

#define KEY_DER_MAX 8192

/* CKA_EC_PARAMS (DER OID of a named curve) -> mbedTLS group; the curves the
 * token supports. */
static int curve_from_params(const struct nattr *par, mbedtls_ecp_group_id *ret) {
        static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
        if (par->len == sizeof oid_p256 && memcmp(par->value, oid_p256, par->len) == 0)
                *ret = MBEDTLS_ECP_DP_SECP256R1;
        else if (par->len == sizeof oid_p384 && memcmp(par->value, oid_p384, par->len) == 0)
                *ret = MBEDTLS_ECP_DP_SECP384R1;
        else
                return -EDOM;
        return 0;
}

size_t soft_key_aad(uint64_t id, uint8_t out[32]) {
        static const char tag[] = "netca-soft-key";
        size_t n = sizeof tag - 1;
        memcpy(out, tag, n);
        for (int i = 7; i >= 0; i--)
                out[n++] = (uint8_t) (id >> (8 * i));
        return n;
}

static struct soft_mem_obj *mem_find(struct token *t, uint64_t id) {
        for (size_t i = 0; i < t->n_mem; i++)
                if (t->mem[i].id == id)
                        return &t->mem[i];
        return NULL;
}

static void mem_obj_done(struct soft_mem_obj *o) {
        nattrs_done(&o->attrs);
        if (o->secret) {
                mbedtls_platform_zeroize(o->secret, o->secret_len);
                free(o->secret);
        }
        o->secret = NULL;
        o->secret_len = 0;
}

void soft_mem_objects_clear(struct token *t) {
        for (size_t i = 0; i < t->n_mem; i++)
                mem_obj_done(&t->mem[i]);
        free(t->mem);
        t->mem = NULL;
        t->n_mem = 0;
}

static void mem_remove(struct token *t, uint64_t id) {
        struct soft_mem_obj *o = mem_find(t, id);
        if (!o)
                return;
        mem_obj_done(o);
        size_t i = (size_t) (o - t->mem);
        memmove(&t->mem[i], &t->mem[i + 1], (t->n_mem - i - 1) * sizeof *o);
        t->n_mem--;
}

int soft_object_get(struct token *t, uint64_t id, struct nattrs *ret_attrs, uint8_t **ret_secret,
                    size_t *ret_secret_len) {
        struct nattrs a;
        uint8_t *sec = NULL;
        size_t sec_n = 0;
        int r;

        nattrs_init(&a);
        if (id & SOFT_MEM_ID_BIT) {
                struct soft_mem_obj *o = mem_find(t, id);
                if (!o)
                        return -ENOENT;
                r = nattrs_copy(&a, &o->attrs);
                if (r < 0)
                        return r;
                if (o->secret) {
                        sec = malloc(o->secret_len);
                        if (!sec) {
                                nattrs_done(&a);
                                return -ENOMEM;
                        }
                        memcpy(sec, o->secret, o->secret_len);
                        sec_n = o->secret_len;
                }
        } else {
                sqlite3_stmt *st = NULL;
                int rc = sqlite3_prepare_v2(t->db, "SELECT attrs, secret FROM objects WHERE id = ?", -1, &st, NULL);
                if (rc != SQLITE_OK)
                        return soft_errno_from_sqlite(rc);
                sqlite3_bind_int64(st, 1, (sqlite3_int64) id);
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE) {
                        sqlite3_finalize(st);
                        return -ENOENT;
                }
                if (rc != SQLITE_ROW) {
                        sqlite3_finalize(st);
                        return soft_errno_from_sqlite(rc);
                }
                r = nattrs_parse(&a, sqlite3_column_blob(st, 0), (size_t) sqlite3_column_bytes(st, 0));
                if (r >= 0 && sqlite3_column_type(st, 1) == SQLITE_BLOB) {
                        sec_n = (size_t) sqlite3_column_bytes(st, 1);
                        sec = malloc(sec_n ? sec_n : 1);
                        if (!sec)
                                r = -ENOMEM;
                        else
                                memcpy(sec, sqlite3_column_blob(st, 1), sec_n);
                }
                sqlite3_finalize(st);
                if (r < 0) {
                        nattrs_done(&a);
                        free(sec);
                        return r == -EBADMSG ? -EIO : r;
                }
        }
        if (ret_attrs) {
                nattrs_done(ret_attrs);
                *ret_attrs = a;
        } else
                nattrs_done(&a);
        if (ret_secret) {
                *ret_secret = sec;
                *ret_secret_len = sec_n;
        } else
                free(sec);
        return 0;
}

int soft_load_objects(struct token *t, struct dobj **ret, size_t *ret_n) {
        struct dobj *v = NULL;
        size_t n = 0;
        sqlite3_stmt *st = NULL;
        int r = 0, rc;

        rc = sqlite3_prepare_v2(t->db, "SELECT id, attrs FROM objects ORDER BY id", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return soft_errno_from_sqlite(rc);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct dobj o = { .id = (uint64_t) sqlite3_column_int64(st, 0) };
                nattrs_init(&o.attrs);
                r = nattrs_parse(&o.attrs, sqlite3_column_blob(st, 1), (size_t) sqlite3_column_bytes(st, 1));
                if (r == -EBADMSG) {
                        log_warning("soft token %s: object %llu is unreadable, skipped", t->path,
                                    (unsigned long long) o.id);
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                struct dobj *nv = realloc(v, (n + 1) * sizeof *nv);
                if (!nv) {
                        nattrs_done(&o.attrs);
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n++] = o;
        }
        sqlite3_finalize(st);
        if (r >= 0 && rc != SQLITE_DONE)
                r = soft_errno_from_sqlite(rc);
        for (size_t i = 0; r >= 0 && i < t->n_mem; i++) {
                struct dobj *nv = realloc(v, (n + 1) * sizeof *nv);
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n].id = t->mem[i].id;
                nattrs_init(&v[n].attrs);
                r = nattrs_copy(&v[n].attrs, &t->mem[i].attrs);
                if (r < 0)
                        break;
                n++;
        }
        if (r < 0) {
                dobj_free_array(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---------------------------------------------------------------- storing */

/* Seals what object id keeps secret: a private key (serialized) or a
 * secret key's value. */
static int seal_key(struct token *t, const struct soft_sealable *what, uint64_t id, uint8_t **ret, size_t *ret_n) {
        uint8_t aad[32];
        const uint8_t *key = soft_seal_key(t, id);
        if (!key)
                return -EPERM;
        size_t an = soft_key_aad(id, aad);
        if (!what->pk)
                return soft_seal(key, aad, an, what->value, what->value_len, ret, ret_n);
        uint8_t *der = secure_alloc(KEY_DER_MAX);
        if (!der)
                return -ENOMEM;
        int len = mbedtls_pk_write_key_der(what->pk, der, KEY_DER_MAX);
        if (len <= 0) {
                secure_free(der);
                return -EIO;
        }
        int r = soft_seal(key, aad, an, der + KEY_DER_MAX - len, (size_t) len, ret, ret_n);
        secure_free(der);
        return r;
}

int soft_secret_open(struct token *t, uint64_t id, const uint8_t *sec, size_t sec_n, uint8_t **ret, size_t *ret_n) {
        uint8_t aad[32];
        const uint8_t *seal = soft_seal_key(t, id);
        if (!seal)
                return -EPERM;
        size_t an = soft_key_aad(id, aad);
        if (soft_open_sealed(seal, aad, an, sec, sec_n, ret, ret_n) < 0) {
                log_warning("soft token %s: key %llu cannot be decrypted", t->path, (unsigned long long) id);
                return -EIO;
        }
        return 0;
}

int soft_key_open(struct token *t, uint64_t id, const uint8_t *sec, size_t sec_n, mbedtls_pk_context *pk) {
        uint8_t *der = NULL;
        size_t der_n = 0;
        int r = soft_secret_open(t, id, sec, sec_n, &der, &der_n);
        if (r < 0)
                return r;
        r = mbedtls_pk_parse_key(pk, der, der_n, NULL, 0) == 0 ? 0 : -EIO;
        secure_free(der);
        return r;
}

/* Inside a transaction: inserts the row, then seals the key with its id. */
static int db_insert(struct token *t, const struct nattrs *a, const struct soft_sealable *pk, uint64_t *ret_id) {
        struct nbuf b;
        sqlite3_stmt *st = NULL;
        uint8_t *sec = NULL;
        size_t sec_n = 0;
        int r = 0, rc;

        nbuf_init(&b, 16u << 20);
        nattrs_serialize(a, &b);
        if (nbuf_failed(&b)) {
                nbuf_done(&b);
                return -ENOMEM;
        }
        rc = sqlite3_prepare_v2(t->db, "INSERT INTO objects(attrs, secret) VALUES (?, NULL)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_blob(st, 1, b.data, (int) b.len, SQLITE_STATIC);
                rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        nbuf_done(&b);
        if (rc != SQLITE_DONE)
                return soft_errno_from_sqlite(rc);
        uint64_t id = (uint64_t) sqlite3_last_insert_rowid(t->db);
        if (pk) {
                r = seal_key(t, pk, id, &sec, &sec_n);
                if (r < 0)
                        return r;
                st = NULL;
                rc = sqlite3_prepare_v2(t->db, "UPDATE objects SET secret = ? WHERE id = ?", -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        sqlite3_bind_blob(st, 1, sec, (int) sec_n, SQLITE_STATIC);
                        sqlite3_bind_int64(st, 2, (sqlite3_int64) id);
                        rc = sqlite3_step(st);
                }
                sqlite3_finalize(st);
                free(sec);
                if (rc != SQLITE_DONE)
                        return soft_errno_from_sqlite(rc);
        }
        *ret_id = id;
        return 0;
}

static int mem_insert(struct token *t, const struct nattrs *a, const struct soft_sealable *pk, uint64_t *ret_id) {
        struct soft_mem_obj o = { .id = SOFT_MEM_ID_BIT | t->next_mem_id };
        int r;

        nattrs_init(&o.attrs);
        r = nattrs_copy(&o.attrs, a);
        if (r < 0)
                return r;
        if (pk) {
                r = seal_key(t, pk, o.id, &o.secret, &o.secret_len);
                if (r < 0) {
                        nattrs_done(&o.attrs);
                        return r;
                }
        }
        struct soft_mem_obj *nv = realloc(t->mem, (t->n_mem + 1) * sizeof *nv);
        if (!nv) {
                mem_obj_done(&o);
                return -ENOMEM;
        }
        t->mem = nv;
        t->mem[t->n_mem++] = o;
        t->next_mem_id++;
        *ret_id = o.id;
        return 0;
}

static int db_delete(struct token *t, uint64_t id) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(t->db, "DELETE FROM objects WHERE id = ?", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64) id);
                rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
                return soft_errno_from_sqlite(rc);
        return sqlite3_changes(t->db) > 0 ? 0 : -ENOENT;
}

/* Stores up to two objects atomically (persistent ones in one transaction). */
static int store_objects(struct token *t, size_t n, struct nattrs *const *attrs, const struct soft_sealable *const *pks,
                         const bool *persistent, uint64_t *ret_ids) {
        uint64_t ids[2] = { 0, 0 };
        bool any_db = false;
        int r = 0;

        for (size_t i = 0; i < n; i++)
                any_db = any_db || persistent[i];
        if (any_db) {
                r = soft_db_begin(t);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n && r >= 0; i++)
                        if (persistent[i])
                                r = db_insert(t, attrs[i], pks[i], &ids[i]);
                r = soft_db_end(t, r);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < n && r >= 0; i++)
                if (!persistent[i])
                        r = mem_insert(t, attrs[i], pks[i], &ids[i]);
        if (r < 0) {
                for (size_t i = 0; i < n; i++) {
                        if (!ids[i])
                                continue;
                        if (persistent[i] && soft_db_begin(t) >= 0)
                                (void) soft_db_end(t, db_delete(t, ids[i]));
                        else if (!persistent[i])
                                mem_remove(t, ids[i]);
                }
                return r;
        }
        memcpy(ret_ids, ids, n * sizeof *ids);
        return 0;
}

/* Stores one object (its sealable part, if any) and hands it to *ret; the
 * attributes move there from *a on success. */
static int store_one(struct token *t, struct nattrs *a, const struct soft_sealable *sk, bool persistent,
                     struct dobj *ret) {
        uint64_t id = 0;
        int r = store_objects(t, 1, (struct nattrs *const[]){ a }, (const struct soft_sealable *const[]){ sk },
                              (const bool[]){ persistent }, &id);
        if (r < 0)
                return r;
        ret->id = id;
        ret->attrs = *a;
        nattrs_init(a);
        return 0;
}

/* ---------------------------------------------------------------- attributes */

static const CK_ATTRIBUTE_TYPE secret_attrs[] = {
        CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT,
};

static int set_ulong(struct nattrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v) { return nattrs_set_ulong(a, type, v); }
static int default_empty(struct nattrs *a, CK_ATTRIBUTE_TYPE type) { return nattrs_default(a, type, NULL, 0); }

static int fill_common(struct nattrs *a, CK_OBJECT_CLASS cls, bool persistent, bool private_default) {
        int r = set_ulong(a, CKA_CLASS, cls);
        if (r >= 0) r = nattrs_set_bool(a, CKA_TOKEN, persistent);
        if (r >= 0) r = nattrs_default_bool(a, CKA_PRIVATE, private_default);
        if (r >= 0) r = nattrs_default_bool(a, CKA_MODIFIABLE, true);
        if (r >= 0) r = nattrs_default_bool(a, CKA_COPYABLE, true);
        if (r >= 0) r = nattrs_default_bool(a, CKA_DESTROYABLE, true);
        if (r >= 0) r = default_empty(a, CKA_LABEL);
        return r;
}

/* CKA_ID default: SHA-1 of the modulus or of the EC point (as many tokens do). */
static int default_id(struct nattrs *a) {
        if (nattrs_get(a, CKA_ID))
                return 0;
        const struct nattr *src = nattrs_get(a, CKA_MODULUS);
        if (!src)
                src = nattrs_get(a, CKA_EC_POINT);
        if (!src || !src->len)
                return default_empty(a, CKA_ID);
        uint8_t h[20];
        mbedtls_sha1_ret(src->value, src->len, h);
        return nattrs_set(a, CKA_ID, h, sizeof h);
}

static int fill_key_common(struct nattrs *a, mbedtls_pk_context *pk, bool local, CK_MECHANISM_TYPE genmech) {
        int r = pkc_pub_attrs_from_pk(pk, a);
        if (r >= 0) r = default_id(a);
        if (r >= 0) r = default_empty(a, CKA_START_DATE);
        if (r >= 0) r = default_empty(a, CKA_END_DATE);
        if (r >= 0) r = default_empty(a, CKA_SUBJECT);
        if (r >= 0) r = nattrs_default_bool(a, CKA_DERIVE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_LOCAL, local);
        if (r >= 0) r = set_ulong(a, CKA_KEY_GEN_MECHANISM, local ? genmech : CK_UNAVAILABLE_INFORMATION);
        if (r >= 0) r = pkc_set_spki(a, pk);
        return r;
}

static int fill_public_key(struct nattrs *a, mbedtls_pk_context *pk, bool persistent, bool local,
                           CK_MECHANISM_TYPE genmech) {
        bool rsa = mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA;
        int r = fill_common(a, CKO_PUBLIC_KEY, persistent, false);
        if (r >= 0) r = fill_key_common(a, pk, local, genmech);
        if (r >= 0) r = nattrs_default_bool(a, CKA_ENCRYPT, rsa);
        if (r >= 0) r = nattrs_default_bool(a, CKA_VERIFY, true);
        if (r >= 0) r = nattrs_default_bool(a, CKA_VERIFY_RECOVER, rsa);
        if (r >= 0) r = nattrs_default_bool(a, CKA_WRAP, false);
        if (r >= 0) r = nattrs_default_bool(a, CKA_TRUSTED, false);
        return r;
}

static int fill_private_key(struct nattrs *a, mbedtls_pk_context *pk, bool persistent, bool local,
                            CK_MECHANISM_TYPE genmech) {
        bool rsa = mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA;
        int r = fill_common(a, CKO_PRIVATE_KEY, persistent, true);
        for (size_t i = 0; i < ELEMENTSOF(secret_attrs); i++)
                nattrs_remove(a, secret_attrs[i]);
        nattrs_remove(a, CKA_VALUE);
        if (r >= 0) r = fill_key_common(a, pk, local, genmech);
        nattrs_remove(a, CKA_MODULUS_BITS);
        if (r >= 0) r = nattrs_set_bool(a, CKA_SENSITIVE, true);
        if (r >= 0) r = nattrs_set_bool(a, CKA_EXTRACTABLE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_ALWAYS_SENSITIVE, local);
        if (r >= 0) r = nattrs_set_bool(a, CKA_NEVER_EXTRACTABLE, local);
        if (r >= 0) r = nattrs_default_bool(a, CKA_SIGN, true);
        if (r >= 0) r = nattrs_default_bool(a, CKA_SIGN_RECOVER, false);
        if (r >= 0) r = nattrs_default_bool(a, CKA_DECRYPT, rsa);
        if (r >= 0) r = nattrs_default_bool(a, CKA_UNWRAP, rsa);
        if (r >= 0) r = nattrs_default_bool(a, CKA_WRAP_WITH_TRUSTED, false);
        if (r >= 0) r = nattrs_default_bool(a, CKA_ALWAYS_AUTHENTICATE, false);
        return r;
}

static int check_template_class(const struct nattrs *a, CK_OBJECT_CLASS want, CK_KEY_TYPE kt) {
        CK_ULONG v;
        if (nattrs_get(a, CKA_CLASS) && (!nattrs_get_ulong(a, CKA_CLASS, &v) || v != want))
                return -EINVAL;
        if (nattrs_get(a, CKA_KEY_TYPE) && (!nattrs_get_ulong(a, CKA_KEY_TYPE, &v) || v != kt))
                return -EINVAL;
        return 0;
}

/* A secret key's attributes (its value, len bytes, is sealed apart):
 * defaults as SoftHSM2's (CKA_SENSITIVE and CKA_EXTRACTABLE false, every
 * use allowed), CKA_CHECK_VALUE for AES (the first 3 bytes of the
 * encryption of a zero block). */
static int fill_secret_key(struct nattrs *a, CK_KEY_TYPE kt, const uint8_t *value, size_t len, bool persistent,
                           bool local, CK_MECHANISM_TYPE genmech) {
        int r = fill_common(a, CKO_SECRET_KEY, persistent, true);
        nattrs_remove(a, CKA_VALUE);
        if (r >= 0) r = set_ulong(a, CKA_KEY_TYPE, kt);
        if (r >= 0) r = set_ulong(a, CKA_VALUE_LEN, len);
        if (r >= 0) r = default_empty(a, CKA_ID);
        if (r >= 0) r = default_empty(a, CKA_START_DATE);
        if (r >= 0) r = default_empty(a, CKA_END_DATE);
        if (r >= 0) r = nattrs_set_bool(a, CKA_LOCAL, local);
        if (r >= 0) r = set_ulong(a, CKA_KEY_GEN_MECHANISM, local ? genmech : CK_UNAVAILABLE_INFORMATION);
        if (r >= 0) r = nattrs_default_bool(a, CKA_SENSITIVE, false);
        if (r >= 0) r = nattrs_default_bool(a, CKA_EXTRACTABLE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_ALWAYS_SENSITIVE, local && nattrs_get_bool(a, CKA_SENSITIVE, false));
        if (r >= 0)
                r = nattrs_set_bool(a, CKA_NEVER_EXTRACTABLE, local && !nattrs_get_bool(a, CKA_EXTRACTABLE, false));
        static const CK_ATTRIBUTE_TYPE uses[] = { CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_WRAP, CKA_UNWRAP };
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(uses); i++)
                r = nattrs_default_bool(a, uses[i], true);
        if (r >= 0) r = nattrs_default_bool(a, CKA_DERIVE, false);
        if (r >= 0) r = nattrs_default_bool(a, CKA_TRUSTED, false);
        if (r >= 0) r = nattrs_default_bool(a, CKA_WRAP_WITH_TRUSTED, false);
        if (r >= 0 && kt == CKK_AES) {
                uint8_t kcv[3];
                r = soft_aes_check_value(value, len, kcv);
                if (r >= 0)
                        r = nattrs_set(a, CKA_CHECK_VALUE, kcv, sizeof kcv);
        }
        return r;
}

/* CKA_KEY_TYPE of a template: RSA or EC for a key pair's key, AES or a
 * generic secret for a secret key. */
static int check_key_type(const struct nattrs *a, bool secret, CK_KEY_TYPE *ret) {
        CK_ULONG kt;
        if (!nattrs_get(a, CKA_KEY_TYPE))
                return -ENODATA;
        if (!nattrs_get_ulong(a, CKA_KEY_TYPE, &kt))
                return -EDOM;
        if (secret ? kt != CKK_AES && kt != CKK_GENERIC_SECRET : kt != CKK_RSA && kt != CKK_EC)
                return -EDOM;
        *ret = kt;
        return 0;
}

/* A secret key's value length is right for its type. */
static bool secret_len_ok(CK_KEY_TYPE kt, size_t len) {
        if (kt == CKK_AES)
                return len == 16 || len == 24 || len == 32;
        return kt == CKK_GENERIC_SECRET && len >= 1 && len <= SOFT_SECRET_MAX;
}

/* Stores secret key a (attributes from a template, moved to *ret) with
 * its value; a template's CKA_VALUE is dropped from the attributes. */
static int secret_store(struct token *t, struct nattrs *a, CK_KEY_TYPE kt, const uint8_t *value, size_t len,
                        bool persistent, bool local, CK_MECHANISM_TYPE genmech, struct dobj *ret) {
        if (persistent && (!t->user_logged || !t->token_key))
                return -EPERM; /* sealed under the token key */
        if (nattrs_get_bool(a, CKA_PRIVATE, true) && !t->user_logged)
                return -EPERM;
        int r = fill_secret_key(a, kt, value, len, persistent, local, genmech);
        if (r < 0)
                return r;
        struct soft_sealable sk = { .value = value, .value_len = len };
        return store_one(t, a, &sk, persistent, ret);
}

int soft_secret_object(struct token *t, struct nattrs *a, const uint8_t *value, size_t len, bool persistent,
                       struct dobj *ret) {
        CK_KEY_TYPE kt;
        int r = check_key_type(a, true, &kt);
        if (r < 0)
                return r;
        if (!secret_len_ok(kt, len))
                return -EDOM;
        return secret_store(t, a, kt, value, len, persistent, false, 0, ret);
}

/* C_CreateObject of a secret key: CKA_VALUE is the key, CKA_VALUE_LEN
 * may not be given (PKCS#11 2.40, secret key objects). */
static int secret_create(struct token *t, struct nattrs *a, bool persistent, struct dobj *ret) {
        if (nattrs_get(a, CKA_VALUE_LEN))
                return -EALREADY;
        const struct nattr *v = nattrs_get(a, CKA_VALUE);
        if (!v)
                return -ENODATA;
        size_t len = v->len;
        uint8_t *value = secure_alloc(len ? len : 1);
        if (!value)
                return -ENOMEM;
        memcpy(value, v->value, len);
        int r = soft_secret_object(t, a, value, len, persistent, ret);
        secure_free(value);
        return r;
}

/* C_GenerateKey: a random value of CKA_VALUE_LEN bytes. */
int soft_generate_key(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                      bool persistent, struct dobj *ret) {
        struct nattrs a;
        CK_ULONG len = 0;
        CK_KEY_TYPE kt = mech->mechanism == CKM_AES_KEY_GEN ? CKK_AES : CKK_GENERIC_SECRET;
        if (mech->mechanism != CKM_AES_KEY_GEN && mech->mechanism != CKM_GENERIC_SECRET_KEY_GEN)
                return -ENOTSUP;
        nattrs_init(&a);
        int r = nattrs_from_template(&a, tmpl, n);
        if (r >= 0)
                r = check_template_class(&a, CKO_SECRET_KEY, kt);
        if (r >= 0 && nattrs_get(&a, CKA_VALUE))
                r = -EINVAL;
        if (r >= 0 && !nattrs_get(&a, CKA_VALUE_LEN))
                r = -ENODATA;
        if (r >= 0 && (!nattrs_get_ulong(&a, CKA_VALUE_LEN, &len) || !secret_len_ok(kt, len)))
                r = -EDOM;
        uint8_t *value = r >= 0 ? secure_alloc(len) : NULL;
        if (r >= 0 && !value)
                r = -ENOMEM;
        if (r >= 0)
                r = pkc_random(value, len);
        if (r >= 0)
                r = secret_store(t, &a, kt, value, len, persistent, true, mech->mechanism, ret);
        secure_free(value);
        nattrs_done(&a);
        return r;
}

/* ---------------------------------------------------------------- import */

static int rsa_from_template(const struct nattrs *a, mbedtls_pk_context *pk) {
        const struct nattr *n = nattrs_get(a, CKA_MODULUS), *e = nattrs_get(a, CKA_PUBLIC_EXPONENT),
                           *d = nattrs_get(a, CKA_PRIVATE_EXPONENT), *p = nattrs_get(a, CKA_PRIME_1),
                           *q = nattrs_get(a, CKA_PRIME_2);
        if (!n || !e || !d || !n->len || !e->len || !d->len)
                return -ENODATA;
        if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0)
                return -ENOMEM;
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
        bool primes = p && q && p->len && q->len;
        if (mbedtls_rsa_import_raw(rsa, n->value, n->len, primes ? p->value : NULL, primes ? p->len : 0,
                                   primes ? q->value : NULL, primes ? q->len : 0, d->value, d->len, e->value,
                                   e->len) != 0 ||
            mbedtls_rsa_complete(rsa) != 0 || mbedtls_rsa_check_privkey(rsa) != 0)
                return -EDOM;
        size_t bits = mbedtls_pk_get_bitlen(pk);
        if (bits < 1024 || bits > 4096)
                return -EDOM;
        return 0;
}

static int ec_from_template(const struct nattrs *a, mbedtls_pk_context *pk) {
        const struct nattr *par = nattrs_get(a, CKA_EC_PARAMS), *v = nattrs_get(a, CKA_VALUE);
        struct nattrs tmp;
        mbedtls_pk_context pub;
        int r;

        if (!par || !v || !par->len || !v->len)
                return -ENODATA;
        mbedtls_ecp_group_id gid;
        r = curve_from_params(par, &gid);
        if (r < 0)
                return r;
        if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0)
                return -ENOMEM;
        mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
        if (mbedtls_ecp_read_key(gid, ec, v->value, v->len) != 0)
                return -EDOM;
        if (mbedtls_ecp_mul(&ec->grp, &ec->Q, &ec->d, &ec->grp.G, pkc_rng, NULL) != 0)
                return -EIO;
        /* A CKA_EC_POINT given with the key must match it. */
        if (nattrs_get(a, CKA_EC_POINT)) {
                nattrs_init(&tmp);
                mbedtls_pk_init(&pub);
                r = nattrs_set_ulong(&tmp, CKA_KEY_TYPE, CKK_EC);
                if (r >= 0)
                        r = nattrs_set(&tmp, CKA_EC_PARAMS, par->value, par->len);
                if (r >= 0)
                        r = nattrs_set(&tmp, CKA_EC_POINT, nattrs_get(a, CKA_EC_POINT)->value,
                                       nattrs_get(a, CKA_EC_POINT)->len);
                if (r >= 0)
                        r = pkc_pk_from_attrs(&tmp, &pub);
                if (r >= 0 && mbedtls_ecp_point_cmp(&mbedtls_pk_ec(pub)->Q, &ec->Q) != 0)
                        r = -EINVAL;
                mbedtls_pk_free(&pub);
                nattrs_done(&tmp);
                if (r < 0)
                        return r == -ENODATA ? -EDOM : r;
        }
        return 0;
}


int soft_create_object(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret) {
        struct nattrs a;
        mbedtls_pk_context pk;
        mbedtls_pk_context *keep = NULL;
        CK_ULONG cls;
        CK_KEY_TYPE kt;
        int r;

        nattrs_init(&a);
        mbedtls_pk_init(&pk);
        r = nattrs_from_template(&a, tmpl, n);
        if (r < 0)
                goto out;
        if (!nattrs_get(&a, CKA_CLASS)) {
                r = -ENODATA;
                goto out;
        }
        if (!nattrs_get_ulong(&a, CKA_CLASS, &cls)) {
                r = -EDOM;
                goto out;
        }
        bool priv_default = cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
        if (nattrs_get_bool(&a, CKA_PRIVATE, priv_default) && !t->user_logged) {
                r = -EPERM;
                goto out;
        }

        switch (cls) {
        case CKO_CERTIFICATE: {
                CK_ULONG ct = CKC_X_509;
                if (nattrs_get(&a, CKA_CERTIFICATE_TYPE) && (!nattrs_get_ulong(&a, CKA_CERTIFICATE_TYPE, &ct) ||
                                                             ct != CKC_X_509)) {
                        r = -EDOM;
                        goto out;
                }
                const struct nattr *v = nattrs_get(&a, CKA_VALUE);
                if (!v || !v->len) {
                        r = -ENODATA;
                        goto out;
                }
                uint8_t *der = malloc(v->len);
                size_t der_n = v->len;
                if (!der) {
                        r = -ENOMEM;
                        goto out;
                }
                memcpy(der, v->value, der_n);
                r = pkc_cert_attrs(der, der_n, &a);
                free(der);
                if (r >= 0) r = fill_common(&a, CKO_CERTIFICATE, persistent, false);
                if (r >= 0) r = default_empty(&a, CKA_ID);
                if (r >= 0) r = default_empty(&a, CKA_URL);
                if (r >= 0) r = default_empty(&a, CKA_HASH_OF_SUBJECT_PUBLIC_KEY);
                if (r >= 0) r = default_empty(&a, CKA_HASH_OF_ISSUER_PUBLIC_KEY);
                if (r >= 0) {
                        CK_ULONG dom = 0; /* CK_SECURITY_DOMAIN_UNSPECIFIED */
                        r = nattrs_default(&a, CKA_JAVA_MIDP_SECURITY_DOMAIN, &dom, sizeof dom);
                }
                break;
        }
        case CKO_PUBLIC_KEY:
                r = check_key_type(&a, false, &kt);
                if (r >= 0)
                        r = pkc_pk_from_attrs(&a, &pk);
                if (r == -ENOKEY)
                        r = -EDOM;
                if (r >= 0)
                        r = fill_public_key(&a, &pk, persistent, false, 0);
                break;
        case CKO_PRIVATE_KEY:
                if (persistent && (!t->user_logged || !t->token_key)) {
                        r = -EPERM;
                        goto out;
                }
                r = check_key_type(&a, false, &kt);
                if (r >= 0)
                        r = kt == CKK_RSA ? rsa_from_template(&a, &pk) : ec_from_template(&a, &pk);
                if (r >= 0)
                        r = fill_private_key(&a, &pk, persistent, false, 0);
                keep = &pk;
                break;
        case CKO_SECRET_KEY:
                r = secret_create(t, &a, persistent, ret);
                goto out;
        case CKO_DATA:
                r = fill_common(&a, CKO_DATA, persistent, false);
                if (r >= 0) r = default_empty(&a, CKA_APPLICATION);
                if (r >= 0) r = default_empty(&a, CKA_OBJECT_ID);
                if (r >= 0) r = default_empty(&a, CKA_VALUE);
                break;
        default:
                r = -EDOM;
        }
        if (r < 0)
                goto out;

        struct soft_sealable sk = { .pk = keep };
        r = store_one(t, &a, keep ? &sk : NULL, persistent, ret);
out:
        mbedtls_pk_free(&pk);
        nattrs_done(&a);
        return r;
}

/* Object id's attributes (its sealed secret too when sec is given, and its
 * class when cls is) for a destroy, a change or a copy: -EPERM for a private
 * object while the user is logged out.  What it filled is the caller's to
 * free, on an error too. */
static int object_get_for_change(struct token *t, uint64_t id, struct nattrs *a, uint8_t **sec, size_t *sec_n,
                                 CK_ULONG *cls) {
        int r = soft_object_get(t, id, a, sec, sec_n);
        if (r < 0)
                return r;
        if (cls)
                (void) nattrs_get_ulong(a, CKA_CLASS, cls);
        return nattrs_get_bool(a, CKA_PRIVATE, false) && !t->user_logged ? -EPERM : 0;
}

int soft_destroy_object(struct token *t, uint64_t id) {
        struct nattrs a;
        int r;

        nattrs_init(&a);
        r = object_get_for_change(t, id, &a, NULL, NULL, NULL);
        nattrs_done(&a);
        if (r < 0)
                return r;
        soft_keys_drop_id(t, id);
        if (id & SOFT_MEM_ID_BIT) {
                mem_remove(t, id);
                return 0;
        }
        r = soft_db_begin(t);
        if (r < 0)
                return r;
        r = db_delete(t, id);
        return soft_db_end(t, r);
}

static bool attr_read_only(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type) {
        switch (type) {
        case CKA_CLASS:
        case CKA_TOKEN:
        case CKA_PRIVATE:
        case CKA_MODIFIABLE:
        case CKA_COPYABLE:
        case CKA_DESTROYABLE:
        case CKA_KEY_TYPE:
        case CKA_CERTIFICATE_TYPE:
        case CKA_LOCAL:
        case CKA_KEY_GEN_MECHANISM:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_MODULUS:
        case CKA_MODULUS_BITS:
        case CKA_PUBLIC_EXPONENT:
        case CKA_PRIVATE_EXPONENT:
        case CKA_PRIME_1:
        case CKA_PRIME_2:
        case CKA_EXPONENT_1:
        case CKA_EXPONENT_2:
        case CKA_COEFFICIENT:
        case CKA_EC_PARAMS:
        case CKA_EC_POINT:
        case CKA_PUBLIC_KEY_INFO:
        case CKA_CHECK_VALUE:
        case CKA_ALWAYS_AUTHENTICATE:
                return true;
        case CKA_VALUE:
                return cls != CKO_DATA;
        default:
                return false;
        }
}

/* Applies a client's template to the attributes a of an object of class
 * cls, with C_SetAttributeValue's rules or, copying, C_CopyObject's:
 * CKA_SENSITIVE of a key only to true, CKA_EXTRACTABLE only to false;
 * read-only attributes unchanged (naming one with its current value is
 * harmless); copying, CKA_TOKEN and CKA_PRIVATE may change (the core has
 * checked the session and the login for them) and CKA_COPYABLE,
 * CKA_MODIFIABLE and CKA_DESTROYABLE only to false.  -EALREADY for a
 * change not allowed, -EINVAL for a value without room. */
static int apply_changes(struct nattrs *a, CK_ULONG cls, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool copying) {
        bool key = cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
        for (CK_ULONG i = 0; i < n; i++) {
                const CK_ATTRIBUTE *x = &tmpl[i];
                if (!x->pValue && x->ulValueLen)
                        return -EINVAL;
                bool is_bool = x->ulValueLen == sizeof(CK_BBOOL) && x->pValue;
                bool bval = is_bool && *(const CK_BBOOL *) x->pValue;
                bool latch_true = key && x->type == CKA_SENSITIVE;
                bool latch_false = (key && x->type == CKA_EXTRACTABLE) ||
                                   (copying && (x->type == CKA_COPYABLE || x->type == CKA_MODIFIABLE ||
                                                x->type == CKA_DESTROYABLE));
                bool free_copy = copying && (x->type == CKA_TOKEN || x->type == CKA_PRIVATE);
                if (latch_true || latch_false) {
                        bool cur = nattrs_get_bool(a, x->type, !latch_true);
                        if (!is_bool)
                                return -EDOM;
                        if (bval != cur && bval != latch_true)
                                return -EALREADY;
                } else if (!free_copy && attr_read_only(cls, x->type)) {
                        const struct nattr *cur = nattrs_get(a, x->type);
                        if (cur && cur->len == x->ulValueLen &&
                            (cur->len == 0 || memcmp(cur->value, x->pValue, cur->len) == 0))
                                continue;
                        return -EALREADY;
                }
                int r = nattrs_set(a, x->type, x->pValue, x->ulValueLen);
                if (r < 0)
                        return r;
        }
        return 0;
}

int soft_set_attributes(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        struct nattrs *ret_attrs) {
        struct nattrs a, out;
        CK_ULONG cls = 0;
        bool in_tx = false;
        int r;

        nattrs_init(&a);
        nattrs_init(&out);
        if (!(id & SOFT_MEM_ID_BIT)) {
                r = soft_db_begin(t);
                if (r < 0)
                        return r;
                in_tx = true;
        }
        r = object_get_for_change(t, id, &a, NULL, NULL, &cls);
        if (r < 0)
                goto out;
        if (n && !nattrs_get_bool(&a, CKA_MODIFIABLE, true)) {
                r = -EALREADY;
                goto out;
        }
        r = apply_changes(&a, cls, tmpl, n, false);
        if (r < 0)
                goto out;
        r = nattrs_copy(&out, &a);
        if (r < 0)
                goto out;

        if (id & SOFT_MEM_ID_BIT) {
                struct soft_mem_obj *o = mem_find(t, id);
                nattrs_done(&o->attrs);
                o->attrs = a;
                nattrs_init(&a);
        } else {
                struct nbuf b;
                sqlite3_stmt *st = NULL;
                nbuf_init(&b, 16u << 20);
                nattrs_serialize(&a, &b);
                int rc = nbuf_failed(&b) ? SQLITE_NOMEM
                                         : sqlite3_prepare_v2(t->db, "UPDATE objects SET attrs = ? WHERE id = ?",
                                                              -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        sqlite3_bind_blob(st, 1, b.data, (int) b.len, SQLITE_STATIC);
                        sqlite3_bind_int64(st, 2, (sqlite3_int64) id);
                        rc = sqlite3_step(st);
                }
                sqlite3_finalize(st);
                nbuf_done(&b);
                r = rc == SQLITE_DONE ? 0 : soft_errno_from_sqlite(rc);
                if (r >= 0) {
                        in_tx = false;
                        r = soft_db_commit(t);
                }
                if (r < 0)
                        goto out;
        }
        soft_keys_drop_id(t, id);
        nattrs_done(ret_attrs);
        *ret_attrs = out;
        nattrs_init(&out);
out:
        if (in_tx)
                soft_db_rollback(t);
        nattrs_done(&a);
        nattrs_done(&out);
        return r;
}

int soft_copy_object(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                     struct dobj *ret) {
        struct nattrs a;
        mbedtls_pk_context pk;
        uint8_t *sec = NULL;
        size_t sec_n = 0;
        CK_ULONG cls = 0;
        uint8_t *value = NULL;
        size_t value_n = 0;
        int r;

        nattrs_init(&a);
        mbedtls_pk_init(&pk);
        r = object_get_for_change(t, id, &a, &sec, &sec_n, &cls);
        if (r < 0)
                goto out;
        r = apply_changes(&a, cls, tmpl, n, true);
        if (r >= 0)
                r = nattrs_set_bool(&a, CKA_TOKEN, persistent);
        if (r >= 0 && nattrs_get_bool(&a, CKA_PRIVATE, false) && !t->user_logged)
                r = -EPERM;
        /* The key is sealed for its object: opened, then sealed again for
         * the copy (a token copy needs the login that opens the token key). */
        bool secret_key = cls == CKO_SECRET_KEY;
        if (r >= 0 && sec)
                r = secret_key ? soft_secret_open(t, id, sec, sec_n, &value, &value_n)
                               : soft_key_open(t, id, sec, sec_n, &pk);
        if (r < 0)
                goto out;
        struct soft_sealable sk = { .pk = secret_key ? NULL : &pk, .value = value, .value_len = value_n };
        r = store_one(t, &a, sec ? &sk : NULL, persistent, ret);
out:
        if (sec) {
                mbedtls_platform_zeroize(sec, sec_n);
                free(sec);
        }
        secure_free(value);
        mbedtls_pk_free(&pk);
        nattrs_done(&a);
        return r;
}

/* ---------------------------------------------------------------- key generation */

static int template_curve(const struct nattrs *pub, const struct nattrs *priv, mbedtls_ecp_group_id *ret) {
        const struct nattr *par = nattrs_get(pub, CKA_EC_PARAMS);
        if (!par)
                par = nattrs_get(priv, CKA_EC_PARAMS);
        if (!par || !par->len)
                return -ENODATA;
        return curve_from_params(par, ret);
}

static int template_rsa(const struct nattrs *pub, unsigned *ret_bits, int *ret_e) {
        CK_ULONG bits;
        if (!nattrs_get(pub, CKA_MODULUS_BITS))
                return -ENODATA;
        if (!nattrs_get_ulong(pub, CKA_MODULUS_BITS, &bits))
                return -EDOM;
        if (bits != 1024 && bits != 2048 && bits != 3072 && bits != 4096)
                return -EDOM;
        int e = 65537;
        const struct nattr *pe = nattrs_get(pub, CKA_PUBLIC_EXPONENT);
        if (pe && pe->len) {
                uint64_t v = 0;
                size_t i = 0;
                while (i < pe->len && pe->value[i] == 0)
                        i++;
                if (pe->len - i > 4)
                        return -EDOM;
                for (; i < pe->len; i++)
                        v = (v << 8) | pe->value[i];
                if (v < 3 || !(v & 1) || v > INT32_MAX)
                        return -EDOM;
                e = (int) v;
        }
        *ret_bits = (unsigned) bits;
        *ret_e = e;
        return 0;
}


/* Takes the token lock itself: the key is generated without it, so that
 * sign/decrypt and other ops are not held up by a slow RSA generation. */
int soft_generate_key_pair(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_tmpl,
                           CK_ULONG pub_n, const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n, struct dobj *ret_pub,
                           struct dobj *ret_priv) {
        struct nattrs pub, priv;
        mbedtls_pk_context pk;
        uint64_t ids[2];
        CK_KEY_TYPE kt;
        int r;

        if (mech->mechanism != CKM_RSA_PKCS_KEY_PAIR_GEN && mech->mechanism != CKM_EC_KEY_PAIR_GEN)
                return -ENOTSUP;
        nattrs_init(&pub);
        nattrs_init(&priv);
        mbedtls_pk_init(&pk);
        r = nattrs_from_template(&pub, pub_tmpl, pub_n);
        if (r >= 0)
                r = nattrs_from_template(&priv, priv_tmpl, priv_n);
        if (r < 0)
                goto out;
        /* A login is needed for a private object, and to seal a private key
         * stored on the token; a public session-object pair needs none. */
        bool need_login = nattrs_get_bool(&priv, CKA_TOKEN, false) || nattrs_get_bool(&priv, CKA_PRIVATE, true) ||
                          nattrs_get_bool(&pub, CKA_PRIVATE, false);
        pthread_mutex_lock(&t->lock);
        bool logged = t->user_logged && t->token_key;
        pthread_mutex_unlock(&t->lock);
        if (need_login && !logged) {
                r = -EPERM;
                goto out;
        }
        kt = mech->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN ? CKK_RSA : CKK_EC;
        r = check_template_class(&pub, CKO_PUBLIC_KEY, kt);
        if (r >= 0)
                r = check_template_class(&priv, CKO_PRIVATE_KEY, kt);
        if (r < 0)
                goto out;
        /* Secret parts can never come from a template. */
        for (size_t i = 0; i < ELEMENTSOF(secret_attrs); i++)
                if (nattrs_get(&priv, secret_attrs[i])) {
                        r = -EINVAL;
                        goto out;
                }
        if (nattrs_get(&priv, CKA_VALUE)) {
                r = -EINVAL;
                goto out;
        }

        if (kt == CKK_RSA) {
                unsigned bits;
                int e;
                r = template_rsa(&pub, &bits, &e);
                if (r < 0)
                        goto out;
                if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0 ||
                    mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), pkc_rng, NULL, bits, e) != 0) {
                        r = -EIO;
                        goto out;
                }
        } else {
                mbedtls_ecp_group_id gid;
                r = template_curve(&pub, &priv, &gid);
                if (r < 0)
                        goto out;
                if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
                    mbedtls_ecp_gen_key(gid, mbedtls_pk_ec(pk), pkc_rng, NULL) != 0) {
                        r = -EIO;
                        goto out;
                }
        }

        /* Same CKA_ID on both halves: from either template, else derived. */
        if (!nattrs_get(&pub, CKA_ID) && nattrs_get(&priv, CKA_ID)) {
                const struct nattr *x = nattrs_get(&priv, CKA_ID);
                r = nattrs_set(&pub, CKA_ID, x->value, x->len);
        } else if (nattrs_get(&pub, CKA_ID) && !nattrs_get(&priv, CKA_ID)) {
                const struct nattr *x = nattrs_get(&pub, CKA_ID);
                r = nattrs_set(&priv, CKA_ID, x->value, x->len);
        }
        if (r < 0)
                goto out;
        bool pub_pers = nattrs_get_bool(&pub, CKA_TOKEN, false);
        bool priv_pers = nattrs_get_bool(&priv, CKA_TOKEN, false);
        r = fill_public_key(&pub, &pk, pub_pers, true, mech->mechanism);
        if (r >= 0)
                r = fill_private_key(&priv, &pk, priv_pers, true, mech->mechanism);
        if (r < 0)
                goto out;

        struct nattrs *av[2] = { &pub, &priv };
        struct soft_sealable sk = { .pk = &pk };
        const struct soft_sealable *pv[2] = { NULL, &sk };
        bool pers[2] = { pub_pers, priv_pers };
        pthread_mutex_lock(&t->lock);
        if (need_login && (!t->user_logged || !t->token_key))
                r = -EPERM; /* logged out while generating */
        else
                r = store_objects(t, 2, av, pv, pers, ids);
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                goto out;
        ret_pub->id = ids[0];
        ret_pub->attrs = pub;
        ret_priv->id = ids[1];
        ret_priv->attrs = priv;
        nattrs_init(&pub);
        nattrs_init(&priv);
out:
        mbedtls_pk_free(&pk);
        nattrs_done(&pub);
        nattrs_done(&priv);
        return r;
}
