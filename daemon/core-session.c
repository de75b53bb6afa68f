/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers, sessions: open, close, look up,
 * reference counting, and the release of their operations.  See core.h, and
 * core-internal.h for the locks and the state the files share. */
#include "core-internal.h"

#include <assert.h>
#include <errno.h>
#include <mbedtls/md.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "audit.h"
#include "common/ckr.h"
#include "pincache.h"
#include "peer.h"
#include "pinentry.h"
#include "common/util.h"


/* -------------------------------------------------------------- sessions */

static __thread uint64_t tl_arrival;

uint64_t core_arrival_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void core_set_arrival(uint64_t t) {
        tl_arrival = t;
}

void core_clear_arrival(void) {
        tl_arrival = 0;
}

void session_gone_locked(struct core_client *cl, CK_SESSION_HANDLE h, uint64_t when) {
        if (!cl->gone) {
                cl->gone = calloc(GONE_SESSIONS_MAX, sizeof *cl->gone);
                if (!cl->gone)
                        return; /* the request then answers CKR_SESSION_HANDLE_INVALID */
        }
        cl->gone[cl->gone_next] = (struct gone_session){ .h = h, .removed = when };
        cl->gone_next = (cl->gone_next + 1) % GONE_SESSIONS_MAX;
}

/* Why h names no session of the client: CKR_DEVICE_REMOVED when its token
 * was removed after the request this thread runs arrived (it was queued
 * meanwhile), CKR_SESSION_HANDLE_INVALID otherwise. */
static CK_RV session_missing_rv(struct core_client *cl, CK_SESSION_HANDLE h) {
        uint64_t arrival = tl_arrival;
        CK_RV rv = CKR_SESSION_HANDLE_INVALID;
        core_lock(cl->core);
        for (size_t i = 0; cl->gone && i < GONE_SESSIONS_MAX; i++)
                if (cl->gone[i].h == h && cl->gone[i].removed) {
                        if (arrival && arrival < cl->gone[i].removed)
                                rv = CKR_DEVICE_REMOVED;
                        break;
                }
        core_unlock(cl->core);
        return rv;
}

/* ---- The sessions by handle: a hash table of every open session (handles
 * are unique in the daemon), so that finding one costs the same with 10 or
 * 100,000 open; it was a scan of the client's list under the core lock,
 * which held every other client meanwhile (issue 23).  Handles are given
 * in sequence, so their low bits spread them evenly. */
#define STAB_MIN 64

static size_t stab_index(const struct core *c, CK_SESSION_HANDLE h) {
        return (size_t)h & (c->stab_cap - 1);
}

/* Doubles the table (or makes it); false on -ENOMEM (the old one stays). */
static bool stab_grow_locked(struct core *c) {
        size_t cap = c->stab_cap ? c->stab_cap * 2 : STAB_MIN;
        struct session **v = calloc(cap, sizeof *v);
        if (!v)
                return false;
        size_t old_cap = c->stab_cap;
        struct session **old = c->stab;
        c->stab = v;
        c->stab_cap = cap;
        for (size_t i = 0; i < old_cap; i++)
                for (struct session *s = old[i], *n; s; s = n) {
                        n = s->hnext;
                        s->hnext = v[stab_index(c, s->h)];
                        v[stab_index(c, s->h)] = s;
                }
        free(old);
        return true;
}

struct session *session_find_locked(struct core_client *cl, CK_SESSION_HANDLE h) {
        struct core *c = cl->core;
        if (!c->stab_cap)
                return NULL;
        for (struct session *s = c->stab[stab_index(c, h)]; s; s = s->hnext)
                if (s->h == h)
                        return s->cl == cl ? s : NULL;
        return NULL;
}

/* Gives s a handle and links it into its client's list and the table
 * (core lock held).  CKR_OK, CKR_SESSION_COUNT (the client has
 * max_sessions open) or CKR_HOST_MEMORY. */
static CK_RV session_link_locked(struct core *c, struct session *s) {
        struct core_client *cl = s->cl;
        if (cl->nsessions >= c->max_sessions)
                return CKR_SESSION_COUNT;
        if (c->stab_n >= c->stab_cap && !stab_grow_locked(c) && !c->stab_cap)
                return CKR_HOST_MEMORY; /* a full table that cannot grow only gets longer chains */
        s->h = c->next_session++;
        s->hnext = c->stab[stab_index(c, s->h)];
        c->stab[stab_index(c, s->h)] = s;
        c->stab_n++;
        s->next = cl->sessions;
        if (cl->sessions)
                cl->sessions->prev = s;
        cl->sessions = s;
        cl->nsessions++;
        return CKR_OK;
}

/* Unlinks a session from its client and the table (core lock held) and
 * marks it closed; returns true if the caller must finish it (no call
 * holds it). */
bool session_unlink_locked(struct session *s) {
        struct core *c = s->core;
        struct core_client *cl = s->cl;
        if (!s->closed) {
                struct session **pp = &c->stab[stab_index(c, s->h)];
                while (*pp != s)
                        pp = &(*pp)->hnext;
                *pp = s->hnext;
                c->stab_n--;
                if (s->prev)
                        s->prev->next = s->next;
                else
                        cl->sessions = s->next;
                if (s->next)
                        s->next->prev = s->prev;
                cl->nsessions--;
        }
        s->next = s->prev = s->hnext = NULL;
        s->closed = true;
        return s->refs == 0;
}
/* ---- end of the sessions by handle ---- */

/* Finds the client's session, takes a reference and its call lock. */
CK_RV session_get(struct core_client *cl, CK_SESSION_HANDLE h, struct session **ret) {
        struct core *c = cl->core;
        core_lock(c);
        struct session *s = session_find_locked(cl, h);
        if (!s) {
                core_unlock(c);
                return session_missing_rv(cl, h);
        }
        s->refs++;
        core_unlock(c);
        pthread_mutex_lock(&s->mu);
        core_lock(c);
        bool closed = s->closed;
        core_unlock(c);
        if (closed) {
                pthread_mutex_unlock(&s->mu);
                core_lock(c);
                bool last = --s->refs == 0;
                core_unlock(c);
                if (last) {
                        struct tok *k = s->tok;
                        session_free(s);
                        tok_unref(k);
                }
                return session_missing_rv(cl, h);
        }
        *ret = s;
        return CKR_OK;
}

void session_put(struct session *s) {
        struct core *c = s->core;
        struct tok *k = s->tok;
        pthread_mutex_unlock(&s->mu);
        core_lock(c);
        bool last = --s->refs == 0 && s->closed;
        core_unlock(c);
        if (last) {
                session_free(s);
                tok_unref(k);
        }
}

CK_USER_TYPE login_state(struct core_client *cl, struct tok *k) {
        core_lock(cl->core);
        struct login *l = login_find_locked(cl, k);
        CK_USER_TYPE u = l ? l->user : (CK_USER_TYPE)-1;
        core_unlock(cl->core);
        return u;
}

bool is_user(struct core_client *cl, struct tok *k) {
        return login_state(cl, k) == CKU_USER;
}

void op_reset(struct op *o) {
        if (o->md_started)
                mbedtls_md_free(&o->mdctx);
        if (o->has_pk)
                mbedtls_pk_free(&o->pk);
        if (o->param) {
                explicit_bzero(o->param, o->param_len);
                free(o->param);
        }
        nbuf_done(&o->data);
        memset(o, 0, sizeof *o);
}

void session_release_ops(struct session *s) {
        for (int i = 0; i < _OP_MAX; i++)
                op_reset(&s->ops[i]);
        s->finding = false;
}

CK_RV core_open_session(struct core_client *cl, CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR ret) {
        if (!ret)
                return CKR_ARGUMENTS_BAD;
        if (!(flags & CKF_SERIAL_SESSION))
                return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
        struct core *c = cl->core;
        struct tok *k;
        CK_RV rv = tok_get(c, slot, &k);
        if (rv != CKR_OK)
                return rv;
        core_lock(c);
        if (!(flags & CKF_RW_SESSION) && login_find_locked(cl, k) && login_find_locked(cl, k)->user == CKU_SO) {
                core_unlock(c);
                tok_unref(k);
                return CKR_SESSION_READ_WRITE_SO_EXISTS;
        }
        core_unlock(c);
        struct session *s = calloc(1, sizeof *s);
        if (!s) {
                tok_unref(k);
                return CKR_HOST_MEMORY;
        }
        pthread_mutex_init(&s->mu, NULL);
        s->core = c;
        s->cl = cl;
        s->tok = k; /* keeps the reference */
        s->slot = slot;
        s->flags = flags & (CKF_RW_SESSION | CKF_SERIAL_SESSION);
        core_lock(c);
        rv = session_link_locked(c, s);
        core_unlock(c);
        if (rv != CKR_OK) {
                session_free(s);
                tok_unref(k);
                return rv;
        }
        *ret = s->h;
        return CKR_OK;
}

CK_RV core_close_session(struct core_client *cl, CK_SESSION_HANDLE h) {
        struct core *c = cl->core;
        core_lock(c);
        struct session *s = session_find_locked(cl, h);
        if (!s) {
                core_unlock(c);
                return CKR_SESSION_HANDLE_INVALID;
        }
        bool do_free = session_unlink_locked(s);
        struct tok *k = s->tok;
        k->refs++;
        /* Closing the last session of the client on this token logs it out. */
        bool others = false;
        for (struct session *o = cl->sessions; o; o = o->next)
                if (o->tok == k)
                        others = true;
        bool idle = false, dropped = false;
        if (!others && login_find_locked(cl, k)) {
                idle = login_drop_locked(cl, k);
                dropped = true;
        }
        core_unlock(c);
        session_finish_close(c, s, do_free);
        if (idle)
                tok_logout_if_idle(k);
        if (dropped)
                emit(c, WIRE_EV_TOKEN_CHANGED, k->slot);
        tok_unref(k);
        return CKR_OK;
}

CK_RV core_close_all_sessions(struct core_client *cl, CK_SLOT_ID slot) {
        struct core *c = cl->core;
        core_lock(c);
        bool valid = slot_find_locked(c, slot) != NULL;
        core_unlock(c);
        if (!valid)
                return CKR_SLOT_ID_INVALID;
        for (;;) {
                CK_SESSION_HANDLE h = 0;
                core_lock(c);
                for (struct session *s = cl->sessions; s; s = s->next)
                        if (s->slot == slot) {
                                h = s->h;
                                break;
                        }
                core_unlock(c);
                if (!h)
                        break;
                core_close_session(cl, h);
        }
        return CKR_OK;
}

CK_RV core_get_session_info(struct core_client *cl, CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info) {
        if (!info)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        CK_USER_TYPE u = login_state(cl, s->tok);
        bool rw = s->flags & CKF_RW_SESSION;
        info->slotID = s->slot;
        info->flags = s->flags;
        info->ulDeviceError = 0;
        if (u == CKU_SO)
                info->state = CKS_RW_SO_FUNCTIONS;
        else if (u == CKU_USER)
                info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
        else
                info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
        session_put(s);
        return CKR_OK;
}
