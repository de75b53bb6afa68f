/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The soft token: files, PINs, login state, the ops table.
 *
 * Storage (one SQLite database per token, WAL, synchronous=FULL):
 *     meta(key TEXT PRIMARY KEY, value)
 *         magic, label, serial, iterations, user_max, user_fails, so_max,
 *         so_fails, user_salt, user_wrap, so_salt, so_wrap
 *     objects(id INTEGER PRIMARY KEY AUTOINCREMENT, attrs BLOB, secret BLOB)
 * user_wrap/so_wrap: AES-256-GCM(PBKDF2-HMAC-SHA256(PIN, salt, iterations),
 * token key), AAD "netca-soft-wrap:user" / ":so".  secret: AES-256-GCM(token
 * key, DER private key), AAD "netca-soft-key" || id.  A retry counter is
 * incremented and committed before the PIN is checked, and reset after a
 * success, so killing the process mid-check cannot give extra tries. */
#include "soft.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "common/text.h"
#include "common/util.h"
#include "soft-internal.h"

#define BUSY_TIMEOUT_MS 10000
#define SOFT_DB_CACHE_PAGES "16" /* pages; see db_open */
#define SOFT_DB_WAL_LIMIT "65536" /* bytes; see db_open */
#define SOFT_DB_WAL_PAGES "16"

static const char aad_user[] = "netca-soft-wrap:user";
static const char aad_so[] = "netca-soft-wrap:so";

/* ---------------------------------------------------------------- SQLite */

int soft_errno_from_sqlite(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_NOMEM: return -ENOMEM;
        case SQLITE_FULL: return -ENOSPC;
        case SQLITE_READONLY: return -EROFS;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT: return -EBADMSG;
        case SQLITE_CANTOPEN: return -ENOENT;
        default: return -EIO;
        }
}

int soft_db_exec(struct token *t, const char *sql) {
        int rc = sqlite3_exec(t->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                log_debug(LOG_SUB_SOFT, "sqlite: %s: %s", sql, sqlite3_errmsg(t->db));
                return soft_errno_from_sqlite(rc);
        }
        return 0;
}

int soft_db_begin(struct token *t) { return soft_db_exec(t, "BEGIN IMMEDIATE"); }
/* Folds the WAL into the database file and truncates it (best effort: on a
 * full disk the file cannot grow and the WAL stays, still valid; a reader in
 * another process can delay it).  After every commit, so that the WAL never
 * holds a second copy of the token that a full disk could strand (issue 23). */
void soft_db_flush_wal(struct token *t) {
        int rc = sqlite3_wal_checkpoint_v2(t->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (rc != SQLITE_OK)
                log_debug(LOG_SUB_SOFT, "sqlite: checkpoint: %s", sqlite3_errmsg(t->db));
}

int soft_db_commit(struct token *t) {
        int r = soft_db_exec(t, "COMMIT");
        if (r < 0)
                soft_db_rollback(t);
        else
                soft_db_flush_wal(t);
        return r;
}
void soft_db_rollback(struct token *t) {
        if (!sqlite3_get_autocommit(t->db))
                (void) sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
}
int soft_db_end(struct token *t, int r) {
        if (r < 0) {
                soft_db_rollback(t);
                return r;
        }
        return soft_db_commit(t);
}

static int meta_set_blob(struct token *t, const char *key, const void *v, size_t n) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(t->db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                if (v)
                        sqlite3_bind_blob(st, 2, v, (int) n, SQLITE_STATIC);
                else
                        sqlite3_bind_null(st, 2);
                rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : soft_errno_from_sqlite(rc);
}

static int meta_set_int(struct token *t, const char *key, int64_t v) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(t->db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, v);
                rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : soft_errno_from_sqlite(rc);
}

/* *ret malloc'd (NULL with n 0 when absent or NULL). */
static int meta_get_blob(struct token *t, const char *key, uint8_t **ret, size_t *ret_n) {
        sqlite3_stmt *st = NULL;
        uint8_t *copy = NULL;
        size_t n = 0;
        int rc = sqlite3_prepare_v2(t->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
                        const void *p = sqlite3_column_blob(st, 0);
                        n = (size_t) sqlite3_column_bytes(st, 0);
                        copy = malloc(n + 1);
                        if (!copy) {
                                sqlite3_finalize(st);
                                return -ENOMEM;
                        }
                        if (n)
                                memcpy(copy, p, n);
                        copy[n] = 0;
                }
                if (rc == SQLITE_ROW)
                        rc = SQLITE_DONE;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
                free(copy);
                return soft_errno_from_sqlite(rc);
        }
        *ret = copy;
        *ret_n = n;
        return 0;
}

static int meta_get_int(struct token *t, const char *key, int64_t *ret) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(t->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL);
        int r = -ENODATA;
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER) {
                        *ret = sqlite3_column_int64(st, 0);
                        r = 0;
                } else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                        r = soft_errno_from_sqlite(rc);
        } else
                r = soft_errno_from_sqlite(rc);
        sqlite3_finalize(st);
        return r;
}

/* Under the token lock: rebuilds the get_info() snapshot. */
static void publish_info(struct token *t) {
        struct token_desc d = { 0 };
        snprintf(d.label, sizeof d.label, "%s", t->label);
        snprintf(d.manufacturer, sizeof d.manufacturer, "NETCA");
        snprintf(d.model, sizeof d.model, "Soft token");
        snprintf(d.serial, sizeof d.serial, "%s", t->serial);
        d.kind = "soft";
        d.flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED;
        if (t->user_pin_init)
                d.flags |= CKF_USER_PIN_INITIALIZED;
        unsigned uleft = t->user_fails >= t->user_max ? 0 : t->user_max - t->user_fails;
        unsigned sleft = t->so_fails >= t->so_max ? 0 : t->so_max - t->so_fails;
        if (uleft == 0)
                d.flags |= CKF_USER_PIN_LOCKED;
        else if (uleft == 1)
                d.flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
        else if (t->user_fails > 0)
                d.flags |= CKF_USER_PIN_COUNT_LOW;
        if (sleft == 0)
                d.flags |= CKF_SO_PIN_LOCKED;
        else if (sleft == 1)
                d.flags |= CKF_SO_PIN_FINAL_TRY | CKF_SO_PIN_COUNT_LOW;
        else if (t->so_fails > 0)
                d.flags |= CKF_SO_PIN_COUNT_LOW;
        d.min_pin = SOFT_MIN_PIN;
        d.max_pin = SOFT_MAX_PIN;
        d.hw = (CK_VERSION){ 1, 0 };
        d.fw = (CK_VERSION){ 1, 0 };
        d.user_tries_left = (int) uleft;
        d.user_tries_max = (int) t->user_max;
        d.so_tries_left = (int) sleft;
        d.so_tries_max = (int) t->so_max;
        token_desc_copy(&t->info_lock, &t->info, &d);
}

/* Refreshes the cached metadata (counters, label, PIN state) from the file:
 * another process may have changed it. */
static int meta_refresh(struct token *t) {
        int64_t v;
        uint8_t *b = NULL;
        size_t n = 0;
        int r;

        r = meta_get_int(t, "user_max", &v);
        if (r < 0)
                return r;
        t->user_max = (unsigned) v;
        if (meta_get_int(t, "user_fails", &v) >= 0)
                t->user_fails = (unsigned) v;
        if (meta_get_int(t, "so_max", &v) >= 0)
                t->so_max = (unsigned) v;
        if (meta_get_int(t, "so_fails", &v) >= 0)
                t->so_fails = (unsigned) v;
        /* A count out of bounds is a crafted file (2^31 made a login run for
         * ever): not a token we open. */
        if (meta_get_int(t, "iterations", &v) >= 0) {
                if (v < 1 || v > SOFT_PBKDF2_ITERATIONS_MAX)
                        return -EBADMSG;
                t->iterations = (unsigned) v;
        }
        r = meta_get_blob(t, "user_wrap", &b, &n);
        if (r < 0)
                return r;
        t->user_pin_init = b != NULL;
        free(b);
        b = NULL;
        if (meta_get_blob(t, "label", &b, &n) >= 0 && b) {
                size_t l = n < 32 ? n : 32;
                memcpy(t->label, b, l);
                t->label[l] = 0;
        }
        free(b);
        publish_info(t);
        return 0;
}

/* ---------------------------------------------------------------- sealing */

int soft_seal(const uint8_t key[SOFT_KEY_LEN], const uint8_t *aad, size_t aad_len, const uint8_t *in,
              size_t in_len, uint8_t **ret, size_t *ret_len) {
        mbedtls_gcm_context gcm;
        size_t n = SOFT_GCM_IV_LEN + in_len + SOFT_GCM_TAG_LEN;
        uint8_t *out = malloc(n);
        int r;

        if (!out)
                return -ENOMEM;
        r = pkc_random(out, SOFT_GCM_IV_LEN);
        if (r < 0) {
                free(out);
                return r;
        }
        mbedtls_gcm_init(&gcm);
        if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, SOFT_KEY_LEN * 8) != 0 ||
            mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, in_len, out, SOFT_GCM_IV_LEN, aad, aad_len, in,
                                      out + SOFT_GCM_IV_LEN, SOFT_GCM_TAG_LEN,
                                      out + SOFT_GCM_IV_LEN + in_len) != 0) {
                mbedtls_gcm_free(&gcm);
                free(out);
                return -EIO;
        }
        mbedtls_gcm_free(&gcm);
        *ret = out;
        *ret_len = n;
        return 0;
}

int soft_open_sealed(const uint8_t key[SOFT_KEY_LEN], const uint8_t *aad, size_t aad_len, const uint8_t *in,
                     size_t in_len, uint8_t **ret, size_t *ret_len) {
        mbedtls_gcm_context gcm;
        if (in_len < SOFT_GCM_IV_LEN + SOFT_GCM_TAG_LEN)
                return -EBADMSG;
        size_t n = in_len - SOFT_GCM_IV_LEN - SOFT_GCM_TAG_LEN;
        uint8_t *out = secure_alloc(n ? n : 1);
        if (!out)
                return -ENOMEM;
        mbedtls_gcm_init(&gcm);
        int r = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, SOFT_KEY_LEN * 8);
        if (r == 0)
                r = mbedtls_gcm_auth_decrypt(&gcm, n, in, SOFT_GCM_IV_LEN, aad, aad_len,
                                             in + SOFT_GCM_IV_LEN + n, SOFT_GCM_TAG_LEN, in + SOFT_GCM_IV_LEN,
                                             out);
        mbedtls_gcm_free(&gcm);
        if (r != 0) {
                secure_free(out);
                return r == MBEDTLS_ERR_GCM_AUTH_FAILED ? -EBADMSG : -EIO;
        }
        *ret = out;
        *ret_len = n;
        return 0;
}

/* PBKDF2-HMAC-SHA256 into secure memory. */
static int derive_kek(const char *pin, size_t pin_len, const uint8_t *salt, size_t salt_len, unsigned iterations,
                      uint8_t **ret) {
        mbedtls_md_context_t md;
        uint8_t *k = secure_alloc(SOFT_KEY_LEN);
        if (!k)
                return -ENOMEM;
        mbedtls_md_init(&md);
        int r = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1);
        if (r == 0)
                r = mbedtls_pkcs5_pbkdf2_hmac(&md, (const unsigned char *) pin, pin_len, salt, salt_len, iterations,
                                              SOFT_KEY_LEN, k);
        mbedtls_md_free(&md);
        if (r != 0) {
                secure_free(k);
                return -EIO;
        }
        *ret = k;
        return 0;
}

/* Wraps the token key under a PIN: writes <who>_salt and <who>_wrap (inside
 * the caller's transaction). */
static int wrap_store(struct token *t, bool so, const char *pin, size_t pin_len, const uint8_t *token_key) {
        uint8_t salt[SOFT_SALT_LEN];
        uint8_t *kek = NULL, *wrapped = NULL;
        size_t wlen = 0;
        int r;

        r = pkc_random(salt, sizeof salt);
        if (r < 0)
                return r;
        r = derive_kek(pin, pin_len, salt, sizeof salt, t->iterations, &kek);
        if (r < 0)
                return r;
        const char *aad = so ? aad_so : aad_user;
        r = soft_seal(kek, (const uint8_t *) aad, strlen(aad), token_key, SOFT_KEY_LEN, &wrapped, &wlen);
        secure_free(kek);
        if (r < 0)
                return r;
        r = meta_set_blob(t, so ? "so_salt" : "user_salt", salt, sizeof salt);
        if (r >= 0)
                r = meta_set_blob(t, so ? "so_wrap" : "user_wrap", wrapped, wlen);
        free(wrapped);
        return r;
}

/* Ends the transaction that stored a PIN's wrap (soft_db_end; its commit
 * flushes the WAL, so no old copy of a wrap survives there); after a
 * commit, rereads the meta data if refresh. */
static int wrap_tx_end(struct token *t, int r, bool refresh) {
        r = soft_db_end(t, r);
        if (r >= 0 && refresh)
                (void) meta_refresh(t);
        return r;
}

static bool pin_len_ok(size_t n) { return n >= SOFT_MIN_PIN && n <= SOFT_MAX_PIN; }

/* Verifies a PIN, counting the attempt first.  On success the counter is
 * reset and *ret is the token key in secure memory. */
static int pin_check(struct token *t, bool so, const char *pin, size_t pin_len, uint8_t **ret) {
        const char *fails_key = so ? "so_fails" : "user_fails";
        uint8_t *salt = NULL, *wrapped = NULL, *kek = NULL, *key = NULL;
        size_t salt_n = 0, wrapped_n = 0, key_n = 0;
        int64_t fails = 0, max = 0;
        int r;

        if (!pin && pin_len)
                return -EINVAL;
        r = meta_refresh(t);
        if (r < 0)
                return r;
        if (!pin_len_ok(pin_len))
                return -EMSGSIZE;

        r = soft_db_begin(t);
        if (r < 0)
                return r;
        r = meta_get_int(t, so ? "so_max" : "user_max", &max);
        if (r >= 0)
                r = meta_get_int(t, fails_key, &fails);
        if (r >= 0)
                r = meta_get_blob(t, so ? "so_salt" : "user_salt", &salt, &salt_n);
        if (r >= 0)
                r = meta_get_blob(t, so ? "so_wrap" : "user_wrap", &wrapped, &wrapped_n);
        if (r >= 0 && (!salt || !wrapped))
                r = -EACCES; /* user PIN not initialized */
        if (r >= 0 && fails >= max)
                r = -EKEYREVOKED;
        if (r >= 0)
                r = meta_set_int(t, fails_key, fails + 1);
        r = soft_db_end(t, r);
        if (r < 0)
                goto out;
        if (so)
                t->so_fails = (unsigned) fails + 1;
        else
                t->user_fails = (unsigned) fails + 1;
        publish_info(t);

        r = derive_kek(pin, pin_len, salt, salt_n, t->iterations, &kek);
        if (r < 0)
                goto out;
        const char *aad = so ? aad_so : aad_user;
        r = soft_open_sealed(kek, (const uint8_t *) aad, strlen(aad), wrapped, wrapped_n, &key, &key_n);
        if (r == -EBADMSG || (r >= 0 && key_n != SOFT_KEY_LEN)) {
                log_debug(LOG_SUB_SOFT, "%s: wrong %s PIN", t->path, so ? "SO" : "user");
                r = -EACCES;
                goto out;
        }
        if (r < 0)
                goto out;

        /* Success: reset the counter (its own transaction). */
        r = soft_db_begin(t);
        if (r >= 0) {
                r = meta_set_int(t, fails_key, 0);
                r = soft_db_end(t, r);
        }
        if (r < 0)
                goto out;
        if (so)
                t->so_fails = 0;
        else
                t->user_fails = 0;
        publish_info(t);
        *ret = TAKE_PTR(key);
out:
        if (key)
                secure_free(key);
        secure_free(kek);
        free(salt);
        free(wrapped);
        return r;
}

/* ---------------------------------------------------------------- open/create */

static void token_free(struct token *t) {
        if (!t)
                return;
        soft_keys_drop(t);
        free(t->keys);
        soft_mem_objects_clear(t);
        secure_free(t->token_key);
        secure_free(t->mem_key);
        if (t->db)
                sqlite3_close(t->db);
        free(t->path);
        pthread_mutex_destroy(&t->lock);
        pthread_mutex_destroy(&t->info_lock);
        free(t);
}

static int db_open(const char *path, bool create, sqlite3 **ret) {
        sqlite3 *db = NULL;
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
        int rc = sqlite3_open_v2(path, &db, flags, NULL);
        if (rc != SQLITE_OK) {
                int r = soft_errno_from_sqlite(rc);
                sqlite3_close(db);
                return r;
        }
        sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
        /* Make sure the file is a database before changing anything. */
        rc = sqlite3_exec(db, "PRAGMA schema_version", NULL, NULL, NULL);
        /* A small page cache: the daemon reads a token's objects once and
         * caches them (and its keys), so SQLite's default (up to 2 MB per
         * connection, kept for the daemon's life) would only grow its RSS
         * (issue 3); the OS page cache serves the rare re-reads. */
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA cache_size=" SOFT_DB_CACHE_PAGES, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
        /* The WAL is checkpointed after every commit (soft_db_flush_wal);
         * should that fail (a full disk), it is cut back to this size at the
         * next checkpoint that succeeds, and SQLite's own checkpoints come
         * after SOFT_DB_WAL_PAGES pages, not 1000. */
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA journal_size_limit=" SOFT_DB_WAL_LIMIT, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA wal_autocheckpoint=" SOFT_DB_WAL_PAGES, NULL, NULL, NULL);
        /* Deleted and replaced content (old PIN wraps, destroyed keys) is
         * zeroed, not left in free pages. */
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA secure_delete=ON", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                int r = soft_errno_from_sqlite(rc);
                sqlite3_close(db);
                return r == -EIO ? -EBADMSG : r;
        }
        *ret = db;
        return 0;
}

static struct token *token_alloc(void) {
        struct token *t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        pthread_mutex_init(&t->lock, NULL);
        pthread_mutex_init(&t->info_lock, NULL);
        t->iterations = SOFT_PBKDF2_ITERATIONS;
        t->next_mem_id = 1;
        t->mem_key = secure_alloc(SOFT_KEY_LEN);
        if (!t->mem_key || pkc_random(t->mem_key, SOFT_KEY_LEN) < 0) {
                token_free(t);
                return NULL;
        }
        return t;
}

const uint8_t *soft_seal_key(const struct token *t, uint64_t id) {
        if (id & SOFT_MEM_ID_BIT)
                return t->mem_key;
        return t->user_logged ? t->token_key : NULL;
}

int soft_token_open(const char *path, struct token **ret) {
        struct token *t;
        uint8_t *magic = NULL, *serial = NULL;
        size_t n = 0, sn = 0;
        int r;

        if (!path || !ret)
                return -EINVAL;
        if (access(path, F_OK) < 0)
                return -errno;
        t = token_alloc();
        if (!t)
                return -ENOMEM;
        t->path = strdup(path);
        if (!t->path) {
                token_free(t);
                return -ENOMEM;
        }
        r = db_open(path, false, &t->db);
        if (r < 0)
                goto fail;
        r = meta_get_blob(t, "magic", &magic, &n);
        if (r < 0 || !magic || n != strlen(SOFT_MAGIC) || memcmp(magic, SOFT_MAGIC, n) != 0) {
                r = -EBADMSG;
                goto fail;
        }
        r = meta_get_blob(t, "serial", &serial, &sn);
        if (r < 0)
                goto fail;
        if (serial) {
                size_t l = sn < 16 ? sn : 16;
                memcpy(t->serial, serial, l);
                t->serial[l] = 0;
        }
        r = meta_refresh(t);
        if (r < 0)
                goto fail;
        free(magic);
        free(serial);
        log_debug(LOG_SUB_SOFT, "opened %s", path);
        *ret = t;
        return 0;
fail:
        free(magic);
        free(serial);
        token_free(t);
        return r == -ENODATA ? -EBADMSG : r;
}

static int fsync_dir(const char *dir) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = fsync(fd) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static int tokens_dir(const char *data_dir, bool create, char **ret) {
        char *d = NULL;
        if (asprintf(&d, "%s/%s", data_dir, SOFT_TOKENS_SUBDIR) < 0)
                return -ENOMEM;
        if (create) {
                if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
                        free(d);
                        return -EIO;
                }
                if (mkdir(d, 0700) < 0 && errno != EEXIST) {
                        free(d);
                        return -EIO;
                }
        }
        *ret = d;
        return 0;
}

void soft_unlink_db_files(const char *path) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s%s", path, suffixes[i]) < 0) {
                        p = NULL;
                        continue;
                }
                (void) unlink(p);
        }
}

static bool label_ok(const char *label) {
        return label && strlen(label) <= 32 && text_is_clean(label, strlen(label));
}

int soft_token_create(const char *data_dir, const char *label, const char *pin, size_t pin_len,
                      const char *so_pin, size_t so_pin_len, unsigned max_tries, char **ret_path) {
        char *dir = NULL, *tmp = NULL, *final = NULL;
        struct token *t = NULL;
        uint8_t key[SOFT_KEY_LEN], rnd[16];
        char uuid[37], serial[17];
        int lock_fd = -1;
        int r;

        if (!data_dir || !ret_path)
                return -EINVAL;
        if (!label_ok(label))
                return -EINVAL;
        if ((!pin && pin_len) || (!so_pin && so_pin_len))
                return -EINVAL;
        if (!pin_len_ok(pin_len) || !pin_len_ok(so_pin_len))
                return -EMSGSIZE;
        if (max_tries == 0)
                max_tries = SOFT_DEFAULT_MAX_TRIES;
        if (max_tries > 100)
                return -EINVAL;

        r = pkc_random(rnd, sizeof rnd);
        if (r < 0)
                return r;
        rnd[6] = (rnd[6] & 0x0f) | 0x40;
        rnd[8] = (rnd[8] & 0x3f) | 0x80;
        snprintf(uuid, sizeof uuid,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
                 rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11], rnd[12],
                 rnd[13], rnd[14], rnd[15]);
        r = pkc_random(rnd, 8);
        if (r < 0)
                return r;
        for (int i = 0; i < 8; i++)
                snprintf(serial + 2 * i, 3, "%02X", rnd[i]);

        r = tokens_dir(data_dir, true, &dir);
        if (r < 0)
                return r;
        if (asprintf(&tmp, "%s/.%s.tmp", dir, uuid) < 0 || asprintf(&final, "%s/%s.token", dir, uuid) < 0) {
                r = -ENOMEM;
                goto out;
        }

        /* Locked while it is being made: soft_token_clean_stale() spares it. */
        lock_fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lock_fd < 0 || flock(lock_fd, LOCK_EX) < 0) {
                r = -EIO;
                goto out;
        }
        t = token_alloc();
        if (!t) {
                r = -ENOMEM;
                goto out;
        }
        r = db_open(tmp, true, &t->db);
        if (r < 0) {
                r = -EIO;
                goto out;
        }
        t->path = strdup(tmp);
        (void) chmod(tmp, 0600);
        r = pkc_random(key, sizeof key);
        if (r < 0)
                goto out;
        r = soft_db_exec(t, "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
                            "CREATE TABLE objects(id INTEGER PRIMARY KEY AUTOINCREMENT, attrs BLOB NOT NULL,"
                            " secret BLOB)");
        if (r >= 0)
                r = soft_db_begin(t);
        if (r < 0)
                goto out;
        r = meta_set_blob(t, "magic", SOFT_MAGIC, strlen(SOFT_MAGIC));
        if (r >= 0)
                r = meta_set_blob(t, "label", label, strlen(label));
        if (r >= 0)
                r = meta_set_blob(t, "serial", serial, 16);
        if (r >= 0)
                r = meta_set_int(t, "iterations", SOFT_PBKDF2_ITERATIONS);
        if (r >= 0)
                r = meta_set_int(t, "user_max", max_tries);
        if (r >= 0)
                r = meta_set_int(t, "user_fails", 0);
        if (r >= 0)
                r = meta_set_int(t, "so_max", SOFT_SO_MAX_TRIES);
        if (r >= 0)
                r = meta_set_int(t, "so_fails", 0);
        if (r >= 0)
                r = wrap_store(t, false, pin, pin_len, key);
        if (r >= 0)
                r = wrap_store(t, true, so_pin, so_pin_len, key);
        r = soft_db_end(t, r);
        if (r < 0)
                goto out;
        /* Close (checkpoints the WAL away), then publish under the final name. */
        sqlite3_close(t->db);
        t->db = NULL;
        if (rename(tmp, final) < 0) {
                r = -EIO;
                goto out;
        }
        (void) fsync_dir(dir);
        log_debug(LOG_SUB_SOFT, "created %s", final);
        *ret_path = TAKE_PTR(final);
        r = 0;
out:
        mbedtls_platform_zeroize(key, sizeof key);
        token_free(t);
        if (r < 0 && tmp)
                soft_unlink_db_files(tmp);
        if (lock_fd >= 0)
                close(lock_fd);
        free(tmp);
        free(final);
        free(dir);
        return r;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int soft_token_scan(const char *data_dir, char ***ret_paths, size_t *ret_n) {
        char *dir = NULL, **v = NULL;
        size_t n = 0;
        DIR *d;
        int r;

        if (!data_dir || !ret_paths || !ret_n)
                return -EINVAL;
        r = tokens_dir(data_dir, false, &dir);
        if (r < 0)
                return r;
        d = opendir(dir);
        if (!d) {
                r = errno == ENOENT ? 0 : -EIO;
                free(dir);
                if (r == 0) {
                        *ret_paths = NULL;
                        *ret_n = 0;
                }
                return r;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (de->d_name[0] == '.' || l <= 6 || strcmp(de->d_name + l - 6, ".token") != 0)
                        continue;
                char **nv = realloc(v, (n + 1) * sizeof *nv);
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                if (asprintf(&v[n], "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        free(dir);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                free(v);
                return r;
        }
        if (n)
                qsort(v, n, sizeof *v, cmp_str);
        *ret_paths = v;
        *ret_n = n;
        return 0;
}

/* Is name ".<uuid>.tmp" followed by suffix (a temporary token file of
 * soft_token_create, or one of its SQLite side files)? */
static bool is_tmp_name(const char *name, const char *suffix) {
        if (name[0] != '.' || strspn(name + 1, "0123456789abcdef-") != 36)
                return false;
        return strncmp(name + 37, ".tmp", 4) == 0 && strcmp(name + 41, suffix) == 0;
}

/* Removes a stale temporary token (and its side files) unless its maker
 * still holds it locked.  True when it was removed. */
static bool clean_tmp(int dfd, const char *dir, const char *name) {
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return false;
        bool stale = flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (stale) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, name) >= 0)
                        soft_unlink_db_files(p);
                else
                        stale = false;
        }
        close(fd);
        return stale;
}

/* Removes side files whose temporary database is gone. */
static unsigned clean_orphans(int dfd, DIR *d) {
        static const char *const sides[] = { "-wal", "-shm", "-journal" };
        unsigned n = 0;
        struct dirent *de;

        rewinddir(d);
        while ((de = readdir(d)))
                for (size_t i = 0; i < ELEMENTSOF(sides); i++) {
                        if (!is_tmp_name(de->d_name, sides[i]))
                                continue;
                        char main_name[64];
                        snprintf(main_name, sizeof main_name, "%.41s", de->d_name);
                        if (faccessat(dfd, main_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
                            unlinkat(dfd, de->d_name, 0) == 0)
                                n++;
                }
        return n;
}

int soft_token_clean_stale(const char *data_dir) {
        _cleanup_free_ char *dir = NULL;
        unsigned n = 0;
        int r;

        if (!data_dir)
                return -EINVAL;
        r = tokens_dir(data_dir, false, &dir);
        if (r < 0)
                return r;
        DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -EIO;
        struct dirent *de;
        while ((de = readdir(d)))
                if (is_tmp_name(de->d_name, "") && clean_tmp(dirfd(d), dir, de->d_name))
                        n++;
        n += clean_orphans(dirfd(d), d);
        closedir(d);
        if (n)
                log_notice("removed %u stale temporary token file(s) from %s", n, dir);
        return (int) n;
}

const char *soft_token_path(struct token *t) { return t ? t->path : NULL; }

/* ---------------------------------------------------------------- ops */

static int op_get_info(struct token *t, struct token_desc *ret) {
        if (!t || !ret)
                return -EINVAL;
        token_desc_copy(&t->info_lock, ret, &t->info);
        return 0;
}

static const struct driver_mech soft_mechs[] = {
        { CKM_RSA_PKCS_KEY_PAIR_GEN, 1024, 4096, CKF_GENERATE_KEY_PAIR },
        { CKM_EC_KEY_PAIR_GEN, 256, 384, CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS },
        { CKM_RSA_PKCS, 1024, 4096, CKF_SIGN | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP },
        { CKM_RSA_X_509, 1024, 4096, CKF_SIGN | CKF_DECRYPT },
        { CKM_RSA_PKCS_PSS, 1024, 4096, CKF_SIGN },
        { CKM_RSA_PKCS_OAEP, 1024, 4096, CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP },
        { CKM_ECDSA, 256, 384, CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS },
        { CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE },
        { CKM_AES_ECB, 16, 32, CKF_ENCRYPT | CKF_DECRYPT },
        { CKM_AES_CBC, 16, 32, CKF_ENCRYPT | CKF_DECRYPT },
        { CKM_AES_CBC_PAD, 16, 32, CKF_ENCRYPT | CKF_DECRYPT },
        { CKM_AES_CTR, 16, 32, CKF_ENCRYPT | CKF_DECRYPT },
        { CKM_AES_GCM, 16, 32, CKF_ENCRYPT | CKF_DECRYPT },
        { CKM_AES_KEY_WRAP, 16, 32, CKF_WRAP | CKF_UNWRAP },
        { CKM_AES_KEY_WRAP_PAD, 16, 32, CKF_WRAP | CKF_UNWRAP },
        { CKM_SHA_1_HMAC, 1, SOFT_SECRET_MAX, CKF_SIGN | CKF_VERIFY },
        { CKM_SHA256_HMAC, 1, SOFT_SECRET_MAX, CKF_SIGN | CKF_VERIFY },
        { CKM_SHA384_HMAC, 1, SOFT_SECRET_MAX, CKF_SIGN | CKF_VERIFY },
        { CKM_SHA512_HMAC, 1, SOFT_SECRET_MAX, CKF_SIGN | CKF_VERIFY },
        { CKM_GENERIC_SECRET_KEY_GEN, 8, SOFT_SECRET_MAX * 8, CKF_GENERATE },
};

static int op_get_mechanisms(struct token *t, const struct driver_mech **ret, size_t *ret_n) {
        if (!ret || !ret_n)
                return -EINVAL;
        *ret = soft_mechs;
        *ret_n = ELEMENTSOF(soft_mechs);
        return 0;
}

static int op_load_objects(struct token *t, struct dobj **ret, size_t *ret_n) {
        if (!t || !ret || !ret_n)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_load_objects(t, ret, ret_n);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static void set_token_key(struct token *t, uint8_t *key) {
        if (t->token_key && key && memcmp(t->token_key, key, SOFT_KEY_LEN) == 0) {
                secure_free(key);
                return;
        }
        /* A different key (re-initialized elsewhere): cached keys are stale. */
        soft_keys_drop(t);
        secure_free(t->token_key);
        t->token_key = key;
}

static int op_login(struct token *t, CK_USER_TYPE user, const char *pin, size_t pin_len) {
        uint8_t *key = NULL;
        int r;

        if (!t)
                return -EINVAL;
        if (user != CKU_USER && user != CKU_SO && user != CKU_CONTEXT_SPECIFIC)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        r = pin_check(t, user == CKU_SO, pin, pin_len, &key);
        if (r >= 0) {
                set_token_key(t, key);
                if (user == CKU_SO)
                        t->so_logged = true;
                else
                        t->user_logged = true;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

static void logout_locked(struct token *t) {
        soft_keys_drop(t);
        t->token_key = secure_free(t->token_key);
        t->user_logged = t->so_logged = false;
}

static int op_logout(struct token *t) {
        if (!t)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        logout_locked(t);
        pthread_mutex_unlock(&t->lock);
        return 0;
}

static int count_persistent_objects(struct token *t, int64_t *ret) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(t->db, "SELECT count(*) FROM objects", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        return rc == SQLITE_OK ? 0 : soft_errno_from_sqlite(rc);
}

static int op_init_token(struct token *t, const char *so_pin, size_t so_pin_len, const char *label) {
        uint8_t *key = NULL;
        char lab[33];
        int64_t nobj = 0;
        int r;

        if (!t)
                return -EINVAL;
        if (!label)
                label = "";
        size_t l = strnlen(label, 33);
        if (l > 32)
                return -EINVAL;
        memcpy(lab, label, l);
        while (l > 0 && lab[l - 1] == ' ')
                l--;
        lab[l] = 0;
        if (!text_is_clean(lab, l))
                return -EINVAL;
        if (!pin_len_ok(so_pin_len))
                return -EMSGSIZE;

        pthread_mutex_lock(&t->lock);
        r = pin_check(t, true, so_pin, so_pin_len, &key);
        if (r == -EACCES && count_persistent_objects(t, &nobj) >= 0 && nobj == 0) {
                /* An empty token may be taken over: the given SO PIN becomes its SO PIN. */
                log_debug(LOG_SUB_SOFT, "%s: initializing an empty token with a new SO PIN", t->path);
                r = 0;
        }
        if (r < 0)
                goto out;
        key = secure_free(key);
        key = secure_alloc(SOFT_KEY_LEN);
        if (!key) {
                r = -ENOMEM;
                goto out;
        }
        r = pkc_random(key, SOFT_KEY_LEN);
        if (r < 0)
                goto out;
        logout_locked(t);
        soft_mem_objects_clear(t);
        r = soft_db_begin(t);
        if (r < 0)
                goto out;
        r = soft_db_exec(t, "DELETE FROM objects");
        if (r >= 0)
                r = soft_db_exec(t, "DELETE FROM meta WHERE key IN ('user_salt', 'user_wrap')");
        if (r >= 0)
                r = meta_set_blob(t, "label", lab, strlen(lab));
        if (r >= 0)
                r = meta_set_int(t, "user_fails", 0);
        if (r >= 0)
                r = meta_set_int(t, "so_fails", 0);
        if (r >= 0)
                r = wrap_store(t, true, so_pin, so_pin_len, key);
        r = wrap_tx_end(t, r, true);
out:
        secure_free(key);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_init_pin(struct token *t, const char *pin, size_t pin_len) {
        int r;
        if (!t || (!pin && pin_len))
                return -EINVAL;
        if (!pin_len_ok(pin_len))
                return -EMSGSIZE;
        pthread_mutex_lock(&t->lock);
        if (!t->so_logged || !t->token_key) {
                r = -EPERM;
                goto out;
        }
        r = soft_db_begin(t);
        if (r < 0)
                goto out;
        r = wrap_store(t, false, pin, pin_len, t->token_key);
        if (r >= 0)
                r = meta_set_int(t, "user_fails", 0);
        r = wrap_tx_end(t, r, true);
out:
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_set_pin(struct token *t, CK_USER_TYPE user, const char *old_pin, size_t old_len,
                      const char *new_pin, size_t new_len) {
        uint8_t *key = NULL;
        int r;

        if (!t || (!new_pin && new_len))
                return -EINVAL;
        if (user != CKU_USER && user != CKU_SO)
                return -EINVAL;
        if (!pin_len_ok(new_len))
                return -EMSGSIZE;
        bool so = user == CKU_SO;
        pthread_mutex_lock(&t->lock);
        r = pin_check(t, so, old_pin, old_len, &key);
        if (r < 0)
                goto out;
        r = soft_db_begin(t);
        if (r < 0)
                goto out;
        r = wrap_store(t, so, new_pin, new_len, key);
        r = wrap_tx_end(t, r, false);
out:
        secure_free(key);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_create_object(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                            struct dobj *ret) {
        if (!t || (!tmpl && n) || !ret)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_create_object(t, tmpl, n, persistent, ret);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_copy_object(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                          struct dobj *ret) {
        if (!t || (!tmpl && n) || !ret)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_copy_object(t, id, tmpl, n, persistent, ret);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_destroy_object(struct token *t, uint64_t id) {
        if (!t)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_destroy_object(t, id);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_set_attributes(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                             struct nattrs *ret_attrs) {
        if (!t || (!tmpl && n) || !ret_attrs)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_set_attributes(t, id, tmpl, n, ret_attrs);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_generate_key_pair(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_tmpl,
                                CK_ULONG pub_n, const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n,
                                struct dobj *ret_pub, struct dobj *ret_priv) {
        if (!t || !mech || (!pub_tmpl && pub_n) || (!priv_tmpl && priv_n) || !ret_pub || !ret_priv)
                return -EINVAL;
        return soft_generate_key_pair(t, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, ret_pub, ret_priv);
}

static int op_generate_key(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                           bool persistent, struct dobj *ret) {
        if (!t || !mech || (!tmpl && n) || !ret)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_generate_key(t, mech, tmpl, n, persistent, ret);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_digest_key(struct token *t, uint64_t key, int (*feed)(void *ctx, const uint8_t *p, size_t n),
                         void *ctx) {
        if (!t || !feed)
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        int r = soft_digest_key(t, key, feed, ctx);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int op_wrap_key(struct token *t, uint64_t wkey, const CK_MECHANISM *mech, uint64_t key, uint8_t *out,
                       size_t *outlen) {
        if (!t || !mech || !outlen)
                return -EINVAL;
        return soft_wrap_key(t, wkey, mech, key, out, outlen);
}

static int op_unwrap_key(struct token *t, uint64_t ukey, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                         const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret) {
        if (!t || !mech || (!in && in_len) || (!tmpl && n) || !ret)
                return -EINVAL;
        return soft_unwrap_key(t, ukey, mech, in, in_len, tmpl, n, persistent, ret);
}

static int op_random(struct token *t, uint8_t *out, size_t n) {
        return pkc_random(out, n);
}

static void op_free(struct token *t) {
        if (!t)
                return;
        log_debug(LOG_SUB_SOFT, "closing %s", t->path);
        /* Fold the WAL into the main file so the token is one file at rest. */
        if (t->db)
                soft_db_flush_wal(t);
        token_free(t);
}

const struct driver_ops soft_ops = {
        .name = "soft",
        .parallel_crypto = true,
        .get_info = op_get_info,
        .get_mechanisms = op_get_mechanisms,
        .load_objects = op_load_objects,
        .login = op_login,
        .logout = op_logout,
        .init_token = op_init_token,
        .init_pin = op_init_pin,
        .set_pin = op_set_pin,
        .create_object = op_create_object,
        .destroy_object = op_destroy_object,
        .copy_object = op_copy_object,
        .set_attributes = op_set_attributes,
        .generate_key_pair = op_generate_key_pair,
        .generate_key = op_generate_key,
        .digest_key = op_digest_key,
        .wrap_key = op_wrap_key,
        .unwrap_key = op_unwrap_key,
        .sign = soft_sign,
        .encrypt = soft_encrypt,
        .decrypt = soft_decrypt,
        .random = op_random,
        .free = op_free,
};
