/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's state database: <data_dir>/state.db (SQLite, WAL).
 * Settings now; known devices, pairings and the audit log in later issues.
 * Never holds a PIN or key. */
#pragma once

struct state_db;

/* Opens or creates the database (schema versioned, migrated forward).
 * Returns 0, -EIO. */
int state_open(const char *data_dir, struct state_db **ret);
struct state_db *state_close(struct state_db *s);

/* Settings: string key/value.  state_get returns a malloc'd value or
 * -ENOENT. */
int state_get(struct state_db *s, const char *key, char **ret);
int state_set(struct state_db *s, const char *key, const char *value);
