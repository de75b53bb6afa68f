/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pincache.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secmem.h"

#define PIN_MAX 256

struct entry {
        char *token;
        enum pincache_scope scope;
        struct pincache_owner owner;  /* process scope: pid + start time; session scope: session */
        char *pin;                    /* secure memory */
        size_t pin_len;
        uint64_t expires;             /* clock seconds */
        uint64_t cap;                 /* entry time + policy max */
        struct entry *next;
};

struct pincache {
        pthread_mutex_t lock;
        pincache_clock_fn clock;
        void *clock_ud;
        struct pincache_policy policy;
        struct entry *entries;
};

void pincache_policy_default(struct pincache_policy *p) {
        p->enabled = true;
        p->ttl = 30 * 60;
        p->max = 8 * 3600;
        p->scope = PINCACHE_SCOPE_PROCESS;
        p->always_authenticate = false;
}

int pincache_parse_duration(const char *s, uint64_t *ret) {
        uint64_t total = 0;
        bool any = false;
        if (!s || !*s)
                return -EINVAL;
        while (*s) {
                char *end;
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                unsigned long long v = strtoull(s, &end, 10);
                uint64_t mult;
                switch (*end) {
                case 's': mult = 1; break;
                case 'm': mult = 60; break;
                case 'h': mult = 3600; break;
                case 'd': mult = 86400; break;
                default: return -EINVAL;
                }
                if (v > UINT32_MAX || total > UINT32_MAX)
                        return -EINVAL;
                total += v * mult;
                any = true;
                s = end + 1;
        }
        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

static uint64_t mono_seconds(void *ud) {
        (void)ud;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec;
}

int pincache_new(pincache_clock_fn clock, void *clock_userdata, struct pincache **ret) {
        struct pincache *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        c->clock = clock ? clock : mono_seconds;
        c->clock_ud = clock_userdata;
        pincache_policy_default(&c->policy);
        *ret = c;
        return 0;
}

static void entry_free(struct entry *e) {
        secure_free(e->pin);
        free(e->token);
        free(e);
}

/* Lock held.  Drops the entries pred selects; returns how many. */
static unsigned drop_locked(struct pincache *c, bool (*pred)(const struct entry *e, const void *arg),
                            const void *arg) {
        unsigned n = 0;
        for (struct entry **pp = &c->entries; *pp;) {
                struct entry *e = *pp;
                if (pred(e, arg)) {
                        *pp = e->next;
                        entry_free(e);
                        n++;
                } else
                        pp = &e->next;
        }
        return n;
}

static bool pred_all(const struct entry *e, const void *arg) {
        (void)e;
        (void)arg;
        return true;
}

struct pincache *pincache_free(struct pincache *c) {
        if (!c)
                return NULL;
        drop_locked(c, pred_all, NULL);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

void pincache_set_policy(struct pincache *c, const struct pincache_policy *p) {
        pthread_mutex_lock(&c->lock);
        c->policy = *p;
        if (c->policy.ttl == 0)
                c->policy.ttl = 1;
        if (c->policy.max < c->policy.ttl)
                c->policy.max = c->policy.ttl;
        drop_locked(c, pred_all, NULL);
        pthread_mutex_unlock(&c->lock);
}

void pincache_get_policy(struct pincache *c, struct pincache_policy *ret) {
        pthread_mutex_lock(&c->lock);
        *ret = c->policy;
        pthread_mutex_unlock(&c->lock);
}

/* The scope an owner's entry gets: session scope needs a session. */
static enum pincache_scope owner_scope(const struct pincache *c, const struct pincache_owner *o) {
        return c->policy.scope == PINCACHE_SCOPE_SESSION && o->session[0] ? PINCACHE_SCOPE_SESSION
                                                                           : PINCACHE_SCOPE_PROCESS;
}

/* Whether entry e serves owner o. */
static bool serves(const struct entry *e, const struct pincache_owner *o) {
        if (e->scope == PINCACHE_SCOPE_SESSION)
                return o->session[0] && strcmp(e->owner.session, o->session) == 0;
        return e->owner.pid == o->pid && e->owner.start_time == o->start_time;
}

static bool pred_expired(const struct entry *e, const void *arg) {
        uint64_t now = *(const uint64_t *)arg;
        return now >= e->expires || now >= e->cap;
}

void pincache_put(struct pincache *c, const char *token, const struct pincache_owner *owner, const char *pin,
                  size_t pin_len) {
        /* An owner we cannot identify (no pid) is never served. */
        if (!token || !owner || owner->pid <= 0 || !pin || pin_len == 0 || pin_len > PIN_MAX)
                return;
        pthread_mutex_lock(&c->lock);
        if (!c->policy.enabled) {
                pthread_mutex_unlock(&c->lock);
                return;
        }
        enum pincache_scope scope = owner_scope(c, owner);
        /* One entry per token and scope owner: the new PIN replaces it. */
        for (struct entry **pp = &c->entries; *pp;) {
                struct entry *e = *pp;
                if (strcmp(e->token, token) == 0 && e->scope == scope && serves(e, owner)) {
                        *pp = e->next;
                        entry_free(e);
                } else
                        pp = &e->next;
        }
        struct entry *e = calloc(1, sizeof *e);
        if (e) {
                e->token = strdup(token);
                e->pin = secure_alloc(pin_len);
        }
        if (!e || !e->token || !e->pin) {
                if (e)
                        entry_free(e);
                pthread_mutex_unlock(&c->lock);
                return;
        }
        memcpy(e->pin, pin, pin_len);
        e->pin_len = pin_len;
        e->scope = scope;
        e->owner = *owner;
        uint64_t now = c->clock(c->clock_ud);
        e->expires = now + c->policy.ttl;
        e->cap = now + c->policy.max;
        e->next = c->entries;
        c->entries = e;
        pthread_mutex_unlock(&c->lock);
}

int pincache_get(struct pincache *c, const char *token, const struct pincache_owner *owner, char *out,
                 size_t cap, size_t *ret_len) {
        int r = -ENOENT;
        if (owner->pid <= 0)
                return -ENOENT;
        pthread_mutex_lock(&c->lock);
        if (!c->policy.enabled) {
                pthread_mutex_unlock(&c->lock);
                return -ENOENT;
        }
        uint64_t now = c->clock(c->clock_ud);
        drop_locked(c, pred_expired, &now);
        for (struct entry *e = c->entries; e; e = e->next) {
                if (strcmp(e->token, token) != 0 || !serves(e, owner))
                        continue;
                if (e->pin_len > cap) {
                        r = -ENOBUFS;
                        break;
                }
                memcpy(out, e->pin, e->pin_len);
                *ret_len = e->pin_len;
                /* Each use slides the expiry, never past the cap. */
                e->expires = now + c->policy.ttl;
                if (e->expires > e->cap)
                        e->expires = e->cap;
                r = 0;
                break;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

static bool pred_token(const struct entry *e, const void *arg) {
        return strcmp(e->token, arg) == 0;
}

unsigned pincache_flush_token(struct pincache *c, const char *token) {
        pthread_mutex_lock(&c->lock);
        unsigned n = drop_locked(c, pred_token, token);
        pthread_mutex_unlock(&c->lock);
        return n;
}

struct token_owner {
        const char *token;
        const struct pincache_owner *owner;
};

static bool pred_entry(const struct entry *e, const void *arg) {
        const struct token_owner *t = arg;
        return strcmp(e->token, t->token) == 0 && serves(e, t->owner);
}

unsigned pincache_flush_entry(struct pincache *c, const char *token, const struct pincache_owner *owner) {
        struct token_owner t = { token, owner };
        pthread_mutex_lock(&c->lock);
        unsigned n = drop_locked(c, pred_entry, &t);
        pthread_mutex_unlock(&c->lock);
        return n;
}

static bool pred_process(const struct entry *e, const void *arg) {
        const struct pincache_owner *o = arg;
        return e->scope == PINCACHE_SCOPE_PROCESS && e->owner.pid == o->pid && e->owner.start_time == o->start_time;
}

unsigned pincache_flush_process(struct pincache *c, pid_t pid, unsigned long long start_time) {
        struct pincache_owner o = { .pid = pid, .start_time = start_time };
        pthread_mutex_lock(&c->lock);
        unsigned n = drop_locked(c, pred_process, &o);
        pthread_mutex_unlock(&c->lock);
        return n;
}

static bool pred_session(const struct entry *e, const void *arg) {
        return e->scope == PINCACHE_SCOPE_SESSION && strcmp(e->owner.session, arg) == 0;
}

unsigned pincache_flush_session(struct pincache *c, const char *session) {
        if (!session || !*session)
                return 0;
        pthread_mutex_lock(&c->lock);
        unsigned n = drop_locked(c, pred_session, session);
        pthread_mutex_unlock(&c->lock);
        return n;
}

unsigned pincache_flush_all(struct pincache *c) {
        pthread_mutex_lock(&c->lock);
        unsigned n = drop_locked(c, pred_all, NULL);
        pthread_mutex_unlock(&c->lock);
        return n;
}

unsigned pincache_sweep(struct pincache *c, bool (*alive)(pid_t pid, unsigned long long start_time)) {
        unsigned n = 0;
        pthread_mutex_lock(&c->lock);
        for (struct entry **pp = &c->entries; *pp;) {
                struct entry *e = *pp;
                if (e->scope == PINCACHE_SCOPE_PROCESS && !alive(e->owner.pid, e->owner.start_time)) {
                        *pp = e->next;
                        entry_free(e);
                        n++;
                } else
                        pp = &e->next;
        }
        pthread_mutex_unlock(&c->lock);
        return n;
}

void pincache_foreach(struct pincache *c, void (*fn)(const struct pincache_entry_info *e, void *ud), void *ud) {
        pthread_mutex_lock(&c->lock);
        uint64_t now = c->clock(c->clock_ud);
        drop_locked(c, pred_expired, &now);
        for (struct entry *e = c->entries; e; e = e->next) {
                struct pincache_entry_info i = {
                        .token = e->token,
                        .scope = e->scope,
                        .pid = e->owner.pid,
                        .session = e->owner.session,
                        .expires_in = e->expires - now,
                        .cap_in = e->cap - now,
                };
                fn(&i, ud);
        }
        pthread_mutex_unlock(&c->lock);
}
