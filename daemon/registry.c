/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/state.h"

struct reg_host {
        struct driver_host host;
        struct registry *reg;
        bool started;
};

struct reg_token {
        struct reg_host *owner;
        struct token *t;
        CK_SLOT_ID slot;
};

struct registry {
        struct core *core;
        struct state_db *state;
        char *data_dir;
        pthread_mutex_t lock;        /* recursive: a driver's delete calls token_removed */
        struct reg_host **hosts;
        size_t nhosts;
        struct reg_token *toks;
        size_t ntoks, atoks;
        bool stopped;
};

static struct reg_host *host_of(struct driver_host *h) {
        return (struct reg_host *)h;
}

static int host_token_added(struct driver_host *h, const struct driver_ops *ops, struct token *t,
                            const char *slot_key, CK_SLOT_ID *ret_slot) {
        struct registry *r = host_of(h)->reg;
        CK_SLOT_ID slot = 0;
        int e;

        pthread_mutex_lock(&r->lock);
        if (r->ntoks == r->atoks) {
                size_t n = r->atoks ? 2 * r->atoks : 8;
                struct reg_token *v = reallocarray(r->toks, n, sizeof *v);
                if (!v) {
                        pthread_mutex_unlock(&r->lock);
                        ops->free(t);
                        return -ENOMEM;
                }
                r->toks = v;
                r->atoks = n;
        }
        e = core_add_token(r->core, ops, t, slot_key, &slot); /* owns t */
        if (e >= 0)
                r->toks[r->ntoks++] = (struct reg_token){ host_of(h), t, slot };
        pthread_mutex_unlock(&r->lock);
        if (e >= 0 && ret_slot)
                *ret_slot = slot;
        return e;
}

static struct reg_token *find_token_locked(struct registry *r, struct token *t) {
        for (size_t i = 0; i < r->ntoks; i++)
                if (r->toks[i].t == t)
                        return &r->toks[i];
        return NULL;
}

static struct reg_token *find_slot_locked(struct registry *r, CK_SLOT_ID slot) {
        for (size_t i = 0; i < r->ntoks; i++)
                if (r->toks[i].slot == slot)
                        return &r->toks[i];
        return NULL;
}

static void host_token_removed(struct driver_host *h, struct token *t) {
        struct registry *r = host_of(h)->reg;

        pthread_mutex_lock(&r->lock);
        struct reg_token *e = find_token_locked(r, t);
        if (e) {
                CK_SLOT_ID slot = e->slot;
                *e = r->toks[--r->ntoks];
                (void)core_remove_token(r->core, slot);
        }
        pthread_mutex_unlock(&r->lock);
}

static void host_token_changed(struct driver_host *h, struct token *t) {
        struct registry *r = host_of(h)->reg;
        CK_SLOT_ID slot = 0;
        bool found = false;

        pthread_mutex_lock(&r->lock);
        struct reg_token *e = find_token_locked(r, t);
        if (e) {
                slot = e->slot;
                found = true;
        }
        pthread_mutex_unlock(&r->lock);
        if (found)
                core_token_changed(r->core, slot);
}

static char *setting_name(struct driver_host *h, const char *key) {
        char *n = NULL;
        if (asprintf(&n, "%s.%s", h->driver->name, key) < 0)
                return NULL;
        return n;
}

static int host_setting_get(struct driver_host *h, const char *key, char **ret) {
        struct registry *r = host_of(h)->reg;
        if (!r->state)
                return -ENOENT;
        _cleanup_free_ char *n = setting_name(h, key);
        if (!n)
                return -ENOMEM;
        return state_get(r->state, n, ret);
}

static int host_setting_set(struct driver_host *h, const char *key, const char *value) {
        struct registry *r = host_of(h)->reg;
        if (!r->state)
                return -EIO;
        _cleanup_free_ char *n = setting_name(h, key);
        if (!n)
                return -ENOMEM;
        return state_set(r->state, n, value);
}

int registry_new(struct core *core, struct state_db *state, const char *data_dir, struct registry **ret) {
        struct registry *r = calloc(1, sizeof *r);
        pthread_mutexattr_t a;

        if (!r)
                return -ENOMEM;
        r->core = core;
        r->state = state;
        if (data_dir && !(r->data_dir = strdup(data_dir))) {
                free(r);
                return -ENOMEM;
        }
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&r->lock, &a);
        pthread_mutexattr_destroy(&a);
        *ret = r;
        return 0;
}

unsigned registry_start(struct registry *r, const struct driver *const *table) {
        unsigned started = 0;

        for (size_t i = 0; table && table[i]; i++) {
                const struct driver *drv = table[i];
                struct reg_host **v = reallocarray(r->hosts, r->nhosts + 1, sizeof *v);
                struct reg_host *rh = calloc(1, sizeof *rh);
                if (!v || !rh) {
                        if (v)
                                r->hosts = v;
                        free(rh);
                        log_error("driver %s not started: out of memory", drv->name);
                        continue;
                }
                r->hosts = v;
                rh->reg = r;
                rh->host = (struct driver_host){
                        .userdata = r,
                        .driver = drv,
                        .data_dir = r->data_dir,
                        .token_added = host_token_added,
                        .token_removed = host_token_removed,
                        .token_changed = host_token_changed,
                        .setting_get = host_setting_get,
                        .setting_set = host_setting_set,
                };
                r->hosts[r->nhosts++] = rh;
                int e = drv->start(&rh->host);
                if (e == -ECANCELED)
                        log_notice("driver %s: turned off", drv->name);
                else if (e < 0)
                        log_notice("driver %s not started: %s", drv->name, strerror(-e));
                else {
                        rh->started = true;
                        started++;
                        log_debug(LOG_SUB_CORE, "driver %s started", drv->name);
                }
        }
        return started;
}

void registry_stop(struct registry *r) {
        if (!r || r->stopped)
                return;
        r->stopped = true;
        for (size_t i = r->nhosts; i-- > 0;) {
                struct reg_host *rh = r->hosts[i];
                if (rh->started && rh->host.driver->stop)
                        rh->host.driver->stop(&rh->host);
        }
}

struct registry *registry_free(struct registry *r) {
        if (!r)
                return NULL;
        registry_stop(r);
        for (size_t i = r->nhosts; i-- > 0;) {
                struct reg_host *rh = r->hosts[i];
                if (rh->started && rh->host.driver->free)
                        rh->host.driver->free(&rh->host);
                free(rh);
        }
        free(r->hosts);
        free(r->toks);
        free(r->data_dir);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
}

int registry_create(struct registry *r, const char *driver, const struct driver_create_args *a,
                    CK_SLOT_ID *ret_slot, char **ret_where) {
        for (size_t i = 0; i < r->nhosts; i++) {
                struct reg_host *rh = r->hosts[i];
                if (!rh->started || strcmp(rh->host.driver->name, driver) != 0)
                        continue;
                if (!rh->host.driver->create)
                        return -EPERM;
                pthread_mutex_lock(&r->lock);
                int e = rh->host.driver->create(&rh->host, a, ret_slot, ret_where);
                pthread_mutex_unlock(&r->lock);
                return e;
        }
        return -ENOENT;
}

int registry_delete(struct registry *r, CK_SLOT_ID slot, const char **ret_kind, char **ret_where) {
        int e;

        pthread_mutex_lock(&r->lock);
        struct reg_token *t = find_slot_locked(r, slot);
        if (!t)
                e = -ENOENT;
        else {
                struct reg_host *rh = t->owner;
                if (ret_kind)
                        *ret_kind = rh->host.driver->name;
                e = rh->host.driver->delete ? rh->host.driver->delete(&rh->host, t->t, ret_where) : -EPERM;
        }
        pthread_mutex_unlock(&r->lock);
        return e;
}

void registry_describe(struct registry *r, CK_SLOT_ID slot, driver_put_fn put, void *ctx) {
        pthread_mutex_lock(&r->lock);
        struct reg_token *t = find_slot_locked(r, slot);
        if (t && t->owner->host.driver->describe)
                t->owner->host.driver->describe(&t->owner->host, t->t, put, ctx);
        pthread_mutex_unlock(&r->lock);
}
