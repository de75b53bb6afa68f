/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's state database (see state.h).
 *
 * Schema versioning: a one-row table schema_version holds the version the
 * file was last migrated to; state_open() applies every migration step above
 * it, each in one transaction, and refuses a file from a newer daemon. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"

#define STATE_DB_NAME "state.db"

struct state_db {
        sqlite3 *db;
        pthread_mutex_t lock;
};

/* Migration steps: index i brings the schema from version i to i + 1.
 * Only ever append. */
static const char *const migrations[] = {
        /* 0 -> 1: settings */
        "CREATE TABLE settings ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL"
        ");",
};

#define STATE_SCHEMA_VERSION ((int)ELEMENTSOF(migrations))

static int exec_sql(sqlite3 *db, const char *sql) {
        char *err = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
                log_error("state: %s", err ? err : "sqlite error");
                sqlite3_free(err);
                return -EIO;
        }
        return 0;
}

static int read_version(sqlite3 *db, int *ret) {
        sqlite3_stmt *st = NULL;
        int v = 0, r;

        if (sqlite3_prepare_v2(db, "SELECT version FROM schema_version LIMIT 1", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        else if (r != SQLITE_DONE) {
                sqlite3_finalize(st);
                return -EIO;
        }
        sqlite3_finalize(st);
        *ret = v;
        return 0;
}

static int migrate(sqlite3 *db) {
        int version, r;

        r = exec_sql(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);");
        if (r < 0)
                return r;
        r = read_version(db, &version);
        if (r < 0)
                return r;
        if (version > STATE_SCHEMA_VERSION) {
                log_error("state: database schema %d is newer than this netcad (%d)", version,
                          STATE_SCHEMA_VERSION);
                return -EIO;
        }
        while (version < STATE_SCHEMA_VERSION) {
                char setv[96];

                r = exec_sql(db, "BEGIN IMMEDIATE;");
                if (r < 0)
                        return r;
                snprintf(setv, sizeof setv, "DELETE FROM schema_version; INSERT INTO schema_version VALUES (%d);",
                         version + 1);
                if (exec_sql(db, migrations[version]) < 0 || exec_sql(db, setv) < 0) {
                        (void)exec_sql(db, "ROLLBACK;");
                        return -EIO;
                }
                r = exec_sql(db, "COMMIT;");
                if (r < 0)
                        return r;
                log_debug(LOG_SUB_STORE, "state: migrated schema to version %d", version + 1);
                version++;
        }
        return 0;
}

int state_open(const char *data_dir, struct state_db **ret) {
        _cleanup_free_ char *path = NULL;
        struct state_db *s;
        int r;

        if (!data_dir || !ret)
                return -EINVAL;
        if (asprintf(&path, "%s/%s", data_dir, STATE_DB_NAME) < 0) {
                path = NULL;
                return -ENOMEM;
        }
        (void)mkdir(data_dir, 0700);

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);

        r = sqlite3_open_v2(path, &s->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (r != SQLITE_OK) {
                log_error("state: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
                state_close(s);
                return -EIO;
        }
        (void)chmod(path, 0600);
        sqlite3_busy_timeout(s->db, 5000);
        if (exec_sql(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;") < 0 ||
            migrate(s->db) < 0) {
                state_close(s);
                return -EIO;
        }
        *ret = s;
        return 0;
}

struct state_db *state_close(struct state_db *s) {
        if (!s)
                return NULL;
        if (s->db)
                sqlite3_close_v2(s->db);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

int state_get(struct state_db *s, const char *key, char **ret) {
        sqlite3_stmt *st = NULL;
        int r;

        if (!s || !key || !ret)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        if (sqlite3_prepare_v2(s->db, "SELECT value FROM settings WHERE key = ?1", -1, &st, NULL) != SQLITE_OK) {
                r = -EIO;
                goto out_unlock;
        }
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                const unsigned char *v = sqlite3_column_text(st, 0);
                char *copy = strdup(v ? (const char *)v : "");
                if (!copy) {
                        r = -ENOMEM;
                } else {
                        *ret = copy;
                        r = 0;
                }
        } else if (r == SQLITE_DONE) {
                r = -ENOENT;
        } else {
                r = -EIO;
        }
        sqlite3_finalize(st);
out_unlock:
        pthread_mutex_unlock(&s->lock);
        return r;
}

int state_set(struct state_db *s, const char *key, const char *value) {
        sqlite3_stmt *st = NULL;
        int r;

        if (!s || !key || !value)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO settings(key, value) VALUES (?1, ?2) "
                               "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               -1, &st, NULL) != SQLITE_OK) {
                r = -EIO;
                goto out_unlock;
        }
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
        r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
        sqlite3_finalize(st);
out_unlock:
        pthread_mutex_unlock(&s->lock);
        return r;
}
