/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers, the core itself: errors, events, the
 * PIN-entry and audit settings, clients, and request scheduling
 * (core_route).  See core.h, and core-internal.h for the locks and the state
 * the files share. */
#include "core-internal.h"

#include <assert.h>
#include <errno.h>
#include <mbedtls/md.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "audit.h"
#include "common/ckr.h"
#include "pincache.h"
#include "peer.h"
#include "pinentry.h"
#include "common/util.h"


/* ---------------------------------------------------------------- errors */

CK_RV rv_from_errno(int r) {
        switch (r) {
        case 0: return CKR_OK;
        case -ENODEV: return CKR_DEVICE_REMOVED;
        case -EIO: return CKR_DEVICE_ERROR;
        case -ETIMEDOUT: return CKR_DEVICE_ERROR;
        case -ENOMEM: return CKR_HOST_MEMORY;
        case -ENOSPC: return CKR_DEVICE_MEMORY;
        case -EACCES: return CKR_PIN_INCORRECT;
        case -EKEYREVOKED: return CKR_PIN_LOCKED;
        case -EKEYREJECTED: return CKR_PIN_INVALID;
        case -EMSGSIZE: return CKR_PIN_LEN_RANGE;
        case -EPERM: return CKR_USER_NOT_LOGGED_IN;
        case -EROFS: return CKR_TOKEN_WRITE_PROTECTED;
        case -ENOENT: return CKR_OBJECT_HANDLE_INVALID;
        case -ENOTSUP: return CKR_MECHANISM_INVALID;
        case -EBADR: return CKR_MECHANISM_PARAM_INVALID;
        case -ENOKEY: return CKR_KEY_TYPE_INCONSISTENT;
        case -EKEYEXPIRED: return CKR_KEY_FUNCTION_NOT_PERMITTED;
        case -ERANGE: return CKR_DATA_LEN_RANGE;
        case -EBADMSG: return CKR_DATA_INVALID;
        case -ENOBUFS: return CKR_BUFFER_TOO_SMALL;
        case -EINVAL: return CKR_TEMPLATE_INCONSISTENT;
        case -ENODATA: return CKR_TEMPLATE_INCOMPLETE;
        case -EDOM: return CKR_ATTRIBUTE_VALUE_INVALID;
        case -EBADRQC: return CKR_ATTRIBUTE_TYPE_INVALID;
        case -EALREADY: return CKR_ATTRIBUTE_READ_ONLY;
        case -ECANCELED: return CKR_FUNCTION_CANCELED;
        default: return CKR_GENERAL_ERROR;
        }
}

/* ---------------------------------------------------------------- basics */

void core_lock(struct core *c) { pthread_mutex_lock(&c->lock); }
void core_unlock(struct core *c) { pthread_mutex_unlock(&c->lock); }

void emit(struct core *c, enum wire_event ev, CK_SLOT_ID slot) {
        core_event_fn fn;
        void *ud;
        core_lock(c);
        fn = c->event_fn;
        ud = c->event_ud;
        core_unlock(c);
        if (fn)
                fn(ud, ev, slot);
}

/* NETCA_MAX_SESSIONS: the sessions one client may have open at once
 * (1..1000000, default CORE_MAX_SESSIONS); more answer CKR_SESSION_COUNT. */
static unsigned max_sessions_setting(void) {
        const char *e = getenv("NETCA_MAX_SESSIONS");
        char *end = NULL;
        unsigned long v = e && *e ? strtoul(e, &end, 10) : 0;
        if (!e || !*e)
                return CORE_MAX_SESSIONS;
        if (*end || v < 1 || v > 1000000) {
                log_warning("NETCA_MAX_SESSIONS=%s is not a number of sessions in 1..1000000: using %u", e,
                            CORE_MAX_SESSIONS);
                return CORE_MAX_SESSIONS;
        }
        return (unsigned)v;
}

int core_new(struct core **ret) {
        struct core *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->login_fails.lock, NULL);
        c->next_session = 1;
        c->next_object = 1;
        c->max_sessions = max_sessions_setting();
        core_pin_entry_default(&c->pin_entry);
        int r = pincache_new(NULL, NULL, &c->pins);
        if (r < 0) {
                pthread_mutex_destroy(&c->login_fails.lock);
                pthread_mutex_destroy(&c->lock);
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

struct pincache *core_pin_cache(struct core *c) {
        return c->pins;
}

void core_pin_entry_default(struct core_pin_entry *p) {
        memset(p, 0, sizeof *p);
        /* Debian's alternative, then the common flavours. */
        static const char *const programs[] = { "/usr/bin/pinentry", "/usr/bin/pinentry-gnome3",
                                                "/usr/bin/pinentry-qt", "/usr/bin/pinentry-gtk-2",
                                                "/usr/bin/pinentry-curses" };
        snprintf(p->program, sizeof p->program, "%s", programs[0]);
        for (size_t i = 0; i < ELEMENTSOF(programs); i++)
                if (access(programs[i], X_OK) == 0) {
                        snprintf(p->program, sizeof p->program, "%s", programs[i]);
                        break;
                }
        p->timeout_s = 60;
        /* The phone collects its PIN on the phone; soft and USB tokens get
         * PINs from the application (many mishandle the protected path). */
        snprintf(p->protected_kinds, sizeof p->protected_kinds, "phone");
}

void core_set_pin_entry(struct core *c, const struct core_pin_entry *p) {
        core_lock(c);
        c->pin_entry = *p;
        size_t n = c->nslots;
        CK_SLOT_ID *ids = calloc(n ? n : 1, sizeof *ids);
        for (size_t i = 0; ids && i < n; i++)
                ids[i] = c->slots[i].id;
        core_unlock(c);
        for (size_t i = 0; ids && i < n; i++)
                emit(c, WIRE_EV_TOKEN_CHANGED, ids[i]);
        free(ids);
}

void core_get_pin_entry(struct core *c, struct core_pin_entry *ret) {
        core_lock(c);
        *ret = c->pin_entry;
        core_unlock(c);
}

/* Whether tokens of this kind collect PINs themselves. */
bool kind_protected(struct core *c, const char *kind) {
        if (!kind || !*kind)
                return false;
        size_t n = strlen(kind);
        core_lock(c);
        bool found = false;
        for (const char *p = c->pin_entry.protected_kinds; *p;) {
                size_t len = strcspn(p, ",");
                if (len == n && strncmp(p, kind, n) == 0)
                        found = true;
                p += len;
                if (*p == ',')
                        p++;
        }
        core_unlock(c);
        return found;
}

void core_set_audit_sink(struct core *c, core_audit_fn fn, void *userdata) {
        core_lock(c);
        c->audit_fn = fn;
        c->audit_ud = userdata;
        core_unlock(c);
}

/* One usage record: op on token k by client cl, about the object labelled
 * object (NULL none), with the call's result; reason NULL: from rv. */
void audit(struct core_client *cl, struct tok *k, const char *op, const char *object, CK_RV rv,
                  const char *reason) {
        struct core *c = cl->core;
        core_lock(c);
        core_audit_fn fn = c->audit_fn;
        void *ud = c->audit_ud;
        core_unlock(c);
        if (!fn)
                return;
        struct audit_event e = { .uid = cl->peer.uid, .pid = cl->peer.pid, .op = op, .ok = rv == CKR_OK };
        snprintf(e.exe, sizeof e.exe, "%s", cl->peer.exe);
        struct token_desc d;
        memset(&d, 0, sizeof d);
        if (k && k->ops->get_info(k->t, &d) == 0) {
                snprintf(e.serial, sizeof e.serial, "%s", d.serial);
                snprintf(e.label, sizeof e.label, "%s", d.label);
        }
        if (object)
                snprintf(e.object, sizeof e.object, "%s", object);
        if (reason)
                snprintf(e.reason, sizeof e.reason, "%s", reason);
        else if (rv != CKR_OK)
                snprintf(e.reason, sizeof e.reason, "%s", ckr_describe(rv));
        fn(ud, &e);
}

/* A login's record, with the reason a user understands. */
void audit_login(struct core_client *cl, struct tok *k, CK_USER_TYPE user, CK_RV rv, bool from_cache) {
        char reason[96] = "";
        if (rv == CKR_PIN_INCORRECT) {
                struct token_desc d;
                memset(&d, 0, sizeof d);
                int left = k->ops->get_info(k->t, &d) == 0 ? (user == CKU_SO ? d.so_tries_left : d.user_tries_left)
                                                           : -1;
                if (left >= 0)
                        snprintf(reason, sizeof reason, "wrong PIN, %d tr%s left", left, left == 1 ? "y" : "ies");
                else
                        snprintf(reason, sizeof reason, "wrong PIN");
        } else if (rv == CKR_PIN_LOCKED)
                snprintf(reason, sizeof reason, "PIN locked");
        else if (rv == CKR_FUNCTION_CANCELED)
                snprintf(reason, sizeof reason, "cancelled");
        if (from_cache && !reason[0])
                snprintf(reason, sizeof reason, rv == CKR_OK ? "PIN from the cache" : "cached PIN: %s",
                         ckr_describe(rv));
        const char *op = user == CKU_SO ? "login-so" : user == CKU_CONTEXT_SPECIFIC ? "login-context" : "login";
        audit(cl, k, op, NULL, rv, reason[0] ? reason : NULL);
}

/* The label of an object (core lock held), "" when none. */
void obj_label_locked(struct tok *k, CK_OBJECT_HANDLE h, char *buf, size_t cap) {
        buf[0] = '\0';
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i]->handle == h) {
                        const struct nattr *a = nattrs_get(&k->objs[i]->attrs, CKA_LABEL);
                        if (a && a->len) {
                                size_t n = a->len < cap - 1 ? a->len : cap - 1;
                                memcpy(buf, a->value, n);
                                buf[n] = '\0';
                        }
                        return;
                }
}

/* A created object's or generated key's record, labelled from the template. */
void audit_object(struct core_client *cl, struct tok *k, const CK_ATTRIBUTE *t, CK_ULONG n, bool keygen,
                         CK_RV rv) {
        char label[65] = "";
        CK_ULONG cls = CKO_DATA;
        for (CK_ULONG i = 0; i < n; i++) {
                if (t[i].type == CKA_LABEL && t[i].pValue) {
                        size_t m = t[i].ulValueLen < sizeof label - 1 ? t[i].ulValueLen : sizeof label - 1;
                        memcpy(label, t[i].pValue, m);
                        label[m] = '\0';
                } else if (t[i].type == CKA_CLASS && t[i].pValue && t[i].ulValueLen == sizeof cls)
                        memcpy(&cls, t[i].pValue, sizeof cls);
        }
        const char *op = keygen ? "keygen" : cls == CKO_CERTIFICATE ? "cert-import"
                                                : cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY ? "key-import"
                                                                                            : "object-create";
        audit(cl, k, op, label, rv, NULL);
}

void core_sweep(struct core *c) {
        unsigned n = pincache_sweep(c->pins, peer_alive);
        if (n)
                log_debug(LOG_SUB_CORE, "dropped %u cached PIN(s) of processes that are gone", n);
}

void core_set_event_sink(struct core *c, core_event_fn fn, void *userdata) {
        core_lock(c);
        c->event_fn = fn;
        c->event_ud = userdata;
        core_unlock(c);
}

void cobj_free(struct cobj *o) {
        if (!o)
                return;
        nattrs_done(&o->attrs);
        free(o);
}

void tok_free_objs(struct tok *k) {
        for (size_t i = 0; i < k->nobjs; i++)
                cobj_free(k->objs[i]);
        free(k->objs);
        k->objs = NULL;
        k->nobjs = 0;
        k->loaded = false;
}

/* Called with core lock held; frees when the last reference goes. */
void tok_unref_locked(struct tok *k) {
        assert(k->refs > 0);
        if (--k->refs > 0)
                return;
        tok_free_objs(k);
        if (k->ops && k->ops->free)
                k->ops->free(k->t);
        free(k->mech_info);
        free(k->mech_types);
        tok_lock_done(k);
        free(k);
}

void tok_unref(struct tok *k) {
        struct core *c = k->core;
        core_lock(c);
        tok_unref_locked(k);
        core_unlock(c);
}

struct slot *slot_find_locked(struct core *c, CK_SLOT_ID id) {
        for (size_t i = 0; i < c->nslots; i++)
                if (c->slots[i].id == id)
                        return &c->slots[i];
        return NULL;
}

/* A referenced token for a slot id: CKR_SLOT_ID_INVALID or CKR_TOKEN_NOT_PRESENT. */
CK_RV tok_get(struct core *c, CK_SLOT_ID id, struct tok **ret) {
        CK_RV rv = CKR_OK;
        core_lock(c);
        struct slot *s = slot_find_locked(c, id);
        if (!s)
                rv = CKR_SLOT_ID_INVALID;
        else if (!s->tok)
                rv = CKR_TOKEN_NOT_PRESENT;
        else {
                s->tok->refs++;
                *ret = s->tok;
        }
        core_unlock(c);
        return rv;
}

/* --------------------------------------------------------------- clients */

int core_client_new(struct core *c, const struct core_peer *peer, struct core_client **ret) {
        struct core_client *cl = calloc(1, sizeof *cl);
        if (!cl)
                return -ENOMEM;
        cl->core = c;
        if (peer)
                cl->peer = *peer;
        core_lock(c);
        cl->next = c->clients;
        c->clients = cl;
        core_unlock(c);
        *ret = cl;
        return 0;
}

const struct core_peer *core_client_peer(const struct core_client *cl) {
        return &cl->peer;
}


/* Logs the token out at the driver when nobody is logged in any more. */
void tok_logout_if_idle(struct tok *k) {
        tok_lock(k);
        core_lock(k->core);
        bool idle = k->user_logins == 0 && k->so_logins == 0 && !k->removed;
        core_unlock(k->core);
        if (idle)
                (void)k->ops->logout(k->t);
        tok_unlock(k);
}

/* Closes one session that has just been unlinked (finishing it if nobody
 * holds it), destroying its session objects. */
void session_finish_close(struct core *c, struct session *s, bool do_free) {
        struct tok *k = s->tok;
        destroy_session_objects(c, k, s->cl, s->h);
        if (do_free) {
                session_free(s);
                tok_unref(k);
        }
}

struct core_client *core_client_free(struct core_client *cl) {
        if (!cl)
                return NULL;
        struct core *c = cl->core;
        for (;;) {
                core_lock(c);
                struct session *s = cl->sessions;
                if (!s) {
                        core_unlock(c);
                        break;
                }
                bool do_free = session_unlink_locked(s);
                core_unlock(c);
                session_finish_close(c, s, do_free);
        }
        for (;;) {
                core_lock(c);
                struct login *l = cl->logins;
                if (!l) {
                        core_unlock(c);
                        break;
                }
                struct tok *k = l->tok;
                k->refs++;
                bool idle = login_drop_locked(cl, k);
                core_unlock(c);
                if (idle)
                        tok_logout_if_idle(k);
                emit(c, WIRE_EV_TOKEN_CHANGED, k->slot);
                tok_unref(k);
        }
        core_lock(c);
        for (struct core_client **pp = &c->clients; *pp; pp = &(*pp)->next)
                if (*pp == cl) {
                        *pp = cl->next;
                        break;
                }
        core_unlock(c);
        free(cl->gone);
        free(cl);
        core_sweep(c);
        return NULL;
}

struct core *core_free(struct core *c) {
        if (!c)
                return NULL;
        while (c->clients)
                core_client_free(c->clients);
        for (size_t i = 0; i < c->nslots; i++)
                if (c->slots[i].tok)
                        core_remove_token(c, c->slots[i].id);
        free(c->slots);
        free(c->stab);
        /* Daemon stop: every cached PIN is wiped. */
        c->pins = pincache_free(c->pins);
        secure_wipe(&c->login_fails.v, sizeof c->login_fails.v);
        secure_wipe(c->login_fails.key, sizeof c->login_fails.key);
        pthread_mutex_destroy(&c->login_fails.lock);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* ------------------------------------------------------------- scheduling */

int core_route(struct core_client *cl, bool by_session, CK_ULONG h, struct core_route *ret) {
        if (!cl || !ret)
                return -EINVAL;
        struct core *c = cl->core;
        struct tok *k = NULL;
        CK_SLOT_ID slot = 0;
        core_lock(c);
        if (by_session) {
                struct session *s = session_find_locked(cl, h);
                if (s) {
                        k = s->tok;
                        slot = s->slot;
                }
        } else {
                struct slot *sl = slot_find_locked(c, h);
                if (sl && sl->tok) {
                        k = sl->tok;
                        slot = sl->id;
                }
        }
        if (k && !k->removed) {
                ret->slot = slot;
                ret->parallel = k->ops->parallel_crypto;
                ret->loaded = k->loaded;
        }
        bool found = k && !k->removed;
        core_unlock(c);
        return found ? 0 : -ENOENT;
}
