/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver registry: starts the drivers of a table (drivers/table.h), gives
 * each its driver_host, remembers which driver added which token, and routes
 * the management requests that belong to a driver (create, delete, describe)
 * to it.  It knows nothing of a driver's slot keys or files.
 *
 * Threads: registry_new/start/stop/free on the main thread; the rest from
 * any thread (one recursive lock, see drivers/driver.h). */
#pragma once

#include "drivers/driver.h"

struct core;
struct state_db;
struct registry;

/* core and state must outlive the registry's use of them (state may be
 * NULL: settings then fail with -ENOENT/-EIO). */
int registry_new(struct core *core, struct state_db *state, const char *data_dir, struct registry **ret);
/* Starts each driver of the NULL-terminated table, in order.  A driver that
 * cannot start is logged and left out; returns the number started. */
unsigned registry_start(struct registry *r, const struct driver *const *table);
/* Stops every driver's discovery (reverse order, once): no token arrives or
 * leaves afterwards. */
void registry_stop(struct registry *r);
/* Frees the drivers (after core_free: tokens first).  NULL ok; returns NULL. */
struct registry *registry_free(struct registry *r);

/* Creates a token with the named driver.  -ENOENT no such driver started,
 * -EPERM the driver cannot create tokens; else the driver's error. */
int registry_create(struct registry *r, const char *driver, const struct driver_create_args *a,
                    CK_SLOT_ID *ret_slot, char **ret_where);
/* Deletes the token in a slot for good.  -ENOENT no token there, -EPERM its
 * driver cannot delete tokens (*ret_kind: the driver's name, static). */
int registry_delete(struct registry *r, CK_SLOT_ID slot, const char **ret_kind, char **ret_where);
/* The driver's extra description of the token in a slot (no-op when there
 * is none). */
void registry_describe(struct registry *r, CK_SLOT_ID slot, driver_put_fn put, void *ctx);
