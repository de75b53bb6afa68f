/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "audit.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

/* Writes at most this often when events keep coming, and at once when this
 * many wait. */
#define FLUSH_INTERVAL_MS 200
#define FLUSH_BATCH 256
/* A bound on memory if the disk stalls: older queued events are dropped
 * (and the loss is logged). */
#define QUEUE_MAX 65536

struct qev {
        struct audit_event e;
        struct qev *next;
};

struct audit {
        sqlite3 *db;
        pthread_mutex_t lock;       /* queue, stopping, max, db use */
        pthread_cond_t cond;
        struct qev *head, *tail;
        size_t queued;
        unsigned long dropped;
        bool stopping;
        unsigned max;
        pthread_t writer;
        bool writer_started;
};

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS audit ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " time INTEGER NOT NULL, uid INTEGER, pid INTEGER, exe TEXT, serial TEXT, label TEXT,"
        " op TEXT NOT NULL, object TEXT, ok INTEGER NOT NULL, reason TEXT);"
        "CREATE INDEX IF NOT EXISTS audit_time ON audit(time);";

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Lock held.  Writes the queue in one transaction and trims the table. */
static int write_locked(struct audit *a) {
        if (!a->head)
                return 0;
        struct qev *list = a->head;
        a->head = a->tail = NULL;
        a->queued = 0;
        int r = 0;
        sqlite3_stmt *st = NULL;
        if (sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(a->db,
                               "INSERT INTO audit (time, uid, pid, exe, serial, label, op, object, ok, reason)"
                               " VALUES (?,?,?,?,?,?,?,?,?,?)",
                               -1, &st, NULL) != SQLITE_OK)
                r = -EIO;
        for (struct qev *q = list; q && r == 0; q = q->next) {
                const struct audit_event *e = &q->e;
                sqlite3_bind_int64(st, 1, e->time_ms);
                sqlite3_bind_int64(st, 2, (sqlite3_int64)e->uid);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)e->pid);
                sqlite3_bind_text(st, 4, e->exe, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, e->serial, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, e->label, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, e->op ? e->op : "?", -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 8, e->object, -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 9, e->ok ? 1 : 0);
                sqlite3_bind_text(st, 10, e->reason, -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_DONE)
                        r = -EIO;
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        if (r == 0) {
                char trim[160];
                snprintf(trim, sizeof trim, "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - %u", a->max);
                if (sqlite3_exec(a->db, trim, NULL, NULL, NULL) != SQLITE_OK ||
                    sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                        r = -EIO;
        }
        if (r < 0) {
                log_warning("usage records could not be written: %s", sqlite3_errmsg(a->db));
                sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
        }
        while (list) {
                struct qev *n = list->next;
                free(list);
                list = n;
        }
        return r;
}

static void *writer_main(void *ud) {
        struct audit *a = ud;
        pthread_mutex_lock(&a->lock);
        while (!a->stopping) {
                if (a->queued < FLUSH_BATCH) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_nsec += FLUSH_INTERVAL_MS * 1000000L;
                        ts.tv_sec += ts.tv_nsec / 1000000000L;
                        ts.tv_nsec %= 1000000000L;
                        pthread_cond_timedwait(&a->cond, &a->lock, &ts);
                }
                (void)write_locked(a);
        }
        pthread_mutex_unlock(&a->lock);
        return NULL;
}

int audit_open(const char *data_dir, struct audit **ret) {
        char *path = NULL;
        if (asprintf(&path, "%s/state.db", data_dir) < 0)
                return -ENOMEM;
        struct audit *a = calloc(1, sizeof *a);
        if (!a) {
                free(path);
                return -ENOMEM;
        }
        a->max = AUDIT_DEFAULT_MAX;
        int rc = sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 NULL);
        free(path);
        if (rc != SQLITE_OK) {
                sqlite3_close(a->db);
                free(a);
                return -EIO;
        }
        sqlite3_busy_timeout(a->db, 5000);
        if (sqlite3_exec(a->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) !=
                    SQLITE_OK ||
            sqlite3_exec(a->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
                log_warning("cannot prepare the usage records: %s", sqlite3_errmsg(a->db));
                sqlite3_close(a->db);
                free(a);
                return -EIO;
        }
        pthread_mutex_init(&a->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&a->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&a->writer, NULL, writer_main, a) == 0)
                a->writer_started = true;
        *ret = a;
        return 0;
}

struct audit *audit_close(struct audit *a) {
        if (!a)
                return NULL;
        pthread_mutex_lock(&a->lock);
        a->stopping = true;
        pthread_cond_signal(&a->cond);
        pthread_mutex_unlock(&a->lock);
        if (a->writer_started)
                pthread_join(a->writer, NULL);
        pthread_mutex_lock(&a->lock);
        (void)write_locked(a);
        pthread_mutex_unlock(&a->lock);
        sqlite3_close(a->db);
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->cond);
        free(a);
        return NULL;
}

void audit_log(struct audit *a, const struct audit_event *e) {
        if (!a || !e)
                return;
        struct qev *q = malloc(sizeof *q);
        if (!q)
                return;
        q->e = *e;
        q->e.exe[sizeof q->e.exe - 1] = q->e.serial[sizeof q->e.serial - 1] = '\0';
        q->e.label[sizeof q->e.label - 1] = q->e.object[sizeof q->e.object - 1] = '\0';
        q->e.reason[sizeof q->e.reason - 1] = '\0';
        if (!q->e.time_ms)
                q->e.time_ms = now_ms();
        q->next = NULL;
        pthread_mutex_lock(&a->lock);
        if (a->queued >= QUEUE_MAX) {
                struct qev *old = a->head;
                a->head = old->next;
                free(old);
                a->queued--;
                if (a->dropped++ % 1000 == 0)
                        log_warning("usage records are not being written fast enough: %lu dropped", a->dropped);
        }
        if (a->tail)
                a->tail->next = q;
        else
                a->head = q;
        a->tail = q;
        a->queued++;
        if (a->queued >= FLUSH_BATCH || !a->writer_started)
                pthread_cond_signal(&a->cond);
        if (!a->writer_started)
                (void)write_locked(a);
        pthread_mutex_unlock(&a->lock);
}

int audit_flush(struct audit *a) {
        pthread_mutex_lock(&a->lock);
        int r = write_locked(a);
        pthread_mutex_unlock(&a->lock);
        return r;
}

static void add_text(cJSON *o, const char *name, const unsigned char *v) {
        cJSON_AddStringToObject(o, name, v ? (const char *)v : "");
}

int audit_query(struct audit *a, const struct audit_filter *f, cJSON **ret) {
        cJSON *arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        pthread_mutex_lock(&a->lock);
        (void)write_locked(a);
        /* The newest `limit` matching, returned oldest first. */
        sqlite3_stmt *st = NULL;
        int r = 0;
        if (sqlite3_prepare_v2(a->db,
                               "SELECT * FROM (SELECT time, uid, pid, exe, serial, label, op, object, ok, reason, id"
                               " FROM audit WHERE (?1 = 0 OR time >= ?1) AND (?2 = 0 OR time <= ?2)"
                               " AND (?3 IS NULL OR label = ?3 OR serial = ?3) AND (?4 = 0 OR ok = 0)"
                               " ORDER BY id DESC LIMIT ?5) ORDER BY id ASC",
                               -1, &st, NULL) != SQLITE_OK)
                r = -EIO;
        else {
                sqlite3_bind_int64(st, 1, f ? f->since_ms : 0);
                sqlite3_bind_int64(st, 2, f ? f->until_ms : 0);
                if (f && f->token)
                        sqlite3_bind_text(st, 3, f->token, -1, SQLITE_STATIC);
                else
                        sqlite3_bind_null(st, 3);
                sqlite3_bind_int(st, 4, f && f->failed_only);
                sqlite3_bind_int64(st, 5, f && f->limit ? (sqlite3_int64)f->limit : -1);
                int rc;
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        cJSON *o = cJSON_CreateObject();
                        if (!o) {
                                r = -ENOMEM;
                                break;
                        }
                        cJSON_AddNumberToObject(o, "time", (double)sqlite3_column_int64(st, 0));
                        cJSON_AddNumberToObject(o, "uid", (double)sqlite3_column_int64(st, 1));
                        cJSON_AddNumberToObject(o, "pid", (double)sqlite3_column_int64(st, 2));
                        add_text(o, "exe", sqlite3_column_text(st, 3));
                        add_text(o, "serial", sqlite3_column_text(st, 4));
                        add_text(o, "label", sqlite3_column_text(st, 5));
                        add_text(o, "op", sqlite3_column_text(st, 6));
                        add_text(o, "object", sqlite3_column_text(st, 7));
                        cJSON_AddStringToObject(o, "result", sqlite3_column_int(st, 8) ? "ok" : "failed");
                        add_text(o, "reason", sqlite3_column_text(st, 9));
                        cJSON_AddItemToArray(arr, o);
                }
                if (rc != SQLITE_DONE && r == 0)
                        r = -EIO;
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                cJSON_Delete(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

int audit_clear(struct audit *a, unsigned *ret_n) {
        pthread_mutex_lock(&a->lock);
        (void)write_locked(a);
        int r = sqlite3_exec(a->db, "DELETE FROM audit", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
        if (ret_n)
                *ret_n = r == 0 ? (unsigned)sqlite3_changes(a->db) : 0;
        pthread_mutex_unlock(&a->lock);
        return r;
}

void audit_set_max(struct audit *a, unsigned max_records) {
        pthread_mutex_lock(&a->lock);
        a->max = max_records ? max_records : AUDIT_DEFAULT_MAX;
        pthread_mutex_unlock(&a->lock);
}

unsigned audit_get_max(struct audit *a) {
        pthread_mutex_lock(&a->lock);
        unsigned m = a->max;
        pthread_mutex_unlock(&a->lock);
        return m;
}
