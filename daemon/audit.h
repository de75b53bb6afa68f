/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Usage records (使用记录): every security-relevant event, kept in the state
 * database (table `audit` of <data_dir>/state.db).
 *
 * Fields: time, uid, pid, executable, token serial and label, operation,
 * object label, result (ok or failed), reason.  Never a PIN, a key, or data
 * signed: the event struct has no room for them.
 *
 * Recording is cheap for the caller (signing is a hot path): events are
 * queued in memory and written by a writer thread in batches, in one
 * transaction each; the table is trimmed to the newest max_records
 * (default 100,000).  Queries and clear write the queue first, so a record
 * is never missing from a query made after the event. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#define AUDIT_DEFAULT_MAX 100000

struct audit_event {
        int64_t time_ms;            /* wall clock; 0: now */
        uid_t uid;
        pid_t pid;
        char exe[256];
        char serial[17];
        char label[33];             /* token label */
        const char *op;             /* static string: "login", "sign", ... */
        char object[65];            /* object label, "" none */
        bool ok;
        char reason[128];           /* "wrong PIN, 2 tries left", "PIN locked", "cancelled", a CK_RV name */
};

struct audit;

/* Opens (creating the table) <data_dir>/state.db.  0 or -errno. */
int audit_open(const char *data_dir, struct audit **ret);
/* Writes what is queued, stops the writer, closes.  NULL ok; returns NULL. */
struct audit *audit_close(struct audit *a);

/* Queues one event (copied). */
void audit_log(struct audit *a, const struct audit_event *e);
/* Writes the queue now.  0 or -EIO. */
int audit_flush(struct audit *a);

struct audit_filter {
        int64_t since_ms, until_ms; /* 0: open */
        const char *token;          /* label or serial, NULL any */
        bool failed_only;
        unsigned limit;             /* 0: all; else the newest `limit` */
};
/* The matching records, oldest first, as a JSON array of objects
 * {time, uid, pid, exe, serial, label, op, object, result, reason}. */
int audit_query(struct audit *a, const struct audit_filter *f, cJSON **ret);
/* Deletes every record; the number deleted in *ret_n. */
int audit_clear(struct audit *a, unsigned *ret_n);
void audit_set_max(struct audit *a, unsigned max_records);
unsigned audit_get_max(struct audit *a);
