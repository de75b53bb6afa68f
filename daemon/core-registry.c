/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers, the slot table: tokens the drivers add
 * and remove, their listing, and the slot, token and mechanism information
 * calls.  See core.h, and core-internal.h for the locks and the state the
 * files share. */
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


/* -------------------------------------------------------------- registry */

void tok_lock_init(struct tok *k) {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
        pthread_mutex_init(&k->lock, &a);
        pthread_mutexattr_destroy(&a);
}

void tok_lock_done(struct tok *k) {
        int r = pthread_mutex_destroy(&k->lock);
        assert(r == 0); /* EBUSY: freed while a driver call holds it */
        (void)r;
}

struct tok *tok_lock(struct tok *k) {
        int r = pthread_mutex_lock(&k->lock);
        if (r != 0) {
                log_error("slot %lu: token lock: %s", (unsigned long)k->slot, strerror(r));
                abort();
        }
        return k;
}

void tok_unlock(struct tok *k) {
        int r = pthread_mutex_unlock(&k->lock);
        if (r != 0) {
                log_error("slot %lu: token unlock: %s", (unsigned long)k->slot, strerror(r));
                abort();
        }
}

int core_add_token(struct core *c, const struct driver_ops *ops, struct token *t, const char *slot_key,
                   CK_SLOT_ID *ret_slot) {
        if (!c || !ops || !t || !slot_key) {
                if (ops && ops->free)
                        ops->free(t);
                return -EINVAL;
        }
        struct tok *k = calloc(1, sizeof *k);
        if (!k) {
                ops->free(t);
                return -ENOMEM;
        }
        k->core = c;
        k->ops = ops;
        k->t = t;
        k->refs = 1;
        snprintf(k->key, sizeof k->key, "%s", slot_key);
        tok_lock_init(k);
        int r = tok_build_mechs(k);
        if (r < 0) {
                tok_unref(k);
                return r;
        }
        struct token_desc desc;
        memset(&desc, 0, sizeof desc);
        if ((r = ops->get_info(t, &desc)) < 0) {
                tok_unref(k);
                return r;
        }

        core_lock(c);
        struct slot *s = NULL;
        for (size_t i = 0; i < c->nslots; i++)
                if (strcmp(c->slots[i].key, slot_key) == 0)
                        s = &c->slots[i];
        if (s && s->tok) {
                core_unlock(c);
                tok_unref(k);
                return -EEXIST;
        }
        if (!s) {
                /* Reuse an empty slot of the same kind? No: slot ids follow
                 * slot keys, so a token that comes back finds its own. */
                struct slot *ns = realloc(c->slots, (c->nslots + 1) * sizeof *ns);
                if (!ns) {
                        core_unlock(c);
                        tok_unref(k);
                        return -ENOMEM;
                }
                c->slots = ns;
                s = &c->slots[c->nslots];
                memset(s, 0, sizeof *s);
                s->id = c->nslots ? c->slots[c->nslots - 1].id + 1 : 1;
                snprintf(s->key, sizeof s->key, "%s", slot_key);
                c->nslots++;
        }
        snprintf(s->kind, sizeof s->kind, "%s", desc.kind ? desc.kind : ops->name);
        s->tok = k;
        k->slot = s->id;
        CK_SLOT_ID id = s->id;
        core_unlock(c);

        log_debug(LOG_SUB_CORE, "token %s added in slot %lu", slot_key, (unsigned long)id);
        emit(c, WIRE_EV_SLOT_ADDED, id);
        if (ret_slot)
                *ret_slot = id;
        return 0;
}

int core_find_slot(struct core *c, const char *slot_key, CK_SLOT_ID *ret_slot) {
        int r = -ENOENT;
        core_lock(c);
        for (size_t i = 0; i < c->nslots; i++)
                if (c->slots[i].tok && strcmp(c->slots[i].key, slot_key) == 0) {
                        *ret_slot = c->slots[i].id;
                        r = 0;
                }
        core_unlock(c);
        return r;
}


void session_free(struct session *s) {
        session_release_ops(s);
        free(s->found);
        pthread_mutex_destroy(&s->mu);
        free(s);
}

/* Drops the login of a client on a token (core lock held); returns true when
 * the token has nobody logged in any more. */
bool login_drop_locked(struct core_client *cl, struct tok *k) {
        for (struct login **pp = &cl->logins; *pp; pp = &(*pp)->next) {
                if ((*pp)->tok != k)
                        continue;
                struct login *l = *pp;
                *pp = l->next;
                if (l->user == CKU_SO)
                        k->so_logins--;
                else
                        k->user_logins--;
                free(l);
                tok_unref_locked(k);  /* k has another reference held by the caller */
                return k->user_logins == 0 && k->so_logins == 0;
        }
        return false;
}

struct login *login_find_locked(struct core_client *cl, struct tok *k) {
        for (struct login *l = cl->logins; l; l = l->next)
                if (l->tok == k)
                        return l;
        return NULL;
}

int core_remove_token(struct core *c, CK_SLOT_ID id) {
        core_lock(c);
        struct slot *s = slot_find_locked(c, id);
        if (!s || !s->tok) {
                core_unlock(c);
                return -ENOENT;
        }
        struct tok *k = s->tok;
        s->tok = NULL;
        k->removed = true;
        pincache_flush_token(c->pins, k->key);
        /* Close every session on it (remembering them, see session_gone_locked)
         * and drop every login. */
        struct session *to_free = NULL;
        uint64_t now = core_arrival_now();
        for (struct core_client *cl = c->clients; cl; cl = cl->next) {
                struct session *sn, *next;
                for (sn = cl->sessions; sn; sn = next) {
                        next = sn->next;
                        if (sn->tok != k)
                                continue;
                        session_gone_locked(cl, sn->h, now);
                        if (session_unlink_locked(sn)) {
                                sn->next = to_free;
                                to_free = sn;
                        }
                }
                while (login_find_locked(cl, k))
                        login_drop_locked(cl, k);
        }
        core_unlock(c);
        while (to_free) {
                struct session *n = to_free->next;
                struct tok *sk = to_free->tok;
                session_free(to_free);
                tok_unref(sk);
                to_free = n;
        }
        log_debug(LOG_SUB_CORE, "token removed from slot %lu", (unsigned long)id);
        tok_unref(k);
        emit(c, WIRE_EV_SLOT_REMOVED, id);
        return 0;
}

void core_token_changed(struct core *c, CK_SLOT_ID slot) {
        emit(c, WIRE_EV_TOKEN_CHANGED, slot);
}

int core_list_tokens(struct core *c, struct core_token_summary **ret, size_t *ret_n) {
        core_lock(c);
        size_t n = c->nslots;
        struct core_token_summary *v = calloc(n ? n : 1, sizeof *v);
        struct tok **toks = calloc(n ? n : 1, sizeof *toks);
        if (!v || !toks) {
                core_unlock(c);
                free(v);
                free(toks);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct slot *s = &c->slots[i];
                v[i].slot = s->id;
                snprintf(v[i].slot_key, sizeof v[i].slot_key, "%s", s->key);
                v[i].present = s->tok != NULL;
                if (!s->tok)
                        continue;
                toks[i] = s->tok;
                s->tok->refs++;
                v[i].logged_in = s->tok->user_logins + s->tok->so_logins;
                v[i].object_loads = s->tok->object_loads;
                for (struct core_client *cl = c->clients; cl; cl = cl->next)
                        for (struct session *sn = cl->sessions; sn; sn = sn->next)
                                if (sn->tok == s->tok)
                                        v[i].sessions++;
        }
        core_unlock(c);
        for (size_t i = 0; i < n; i++) {
                if (!toks[i])
                        continue;
                toks[i]->ops->get_info(toks[i]->t, &v[i].desc);
                tok_unref(toks[i]);
        }
        free(toks);
        *ret = v;
        *ret_n = n;
        return 0;
}

void core_stats(struct core *c, unsigned *ret_clients, unsigned *ret_sessions) {
        unsigned nc = 0, ns = 0;
        core_lock(c);
        for (struct core_client *cl = c->clients; cl; cl = cl->next) {
                nc++;
                for (struct session *s = cl->sessions; s; s = s->next)
                        ns++;
        }
        core_unlock(c);
        if (ret_clients)
                *ret_clients = nc;
        if (ret_sessions)
                *ret_sessions = ns;
}

/* ------------------------------------------------------- slots and tokens */

CK_RV core_get_slot_list(struct core_client *cl, CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
        if (!count)
                return CKR_ARGUMENTS_BAD;
        struct core *c = cl->core;
        CK_RV rv = CKR_OK;
        core_lock(c);
        CK_ULONG n = 0;
        for (size_t i = 0; i < c->nslots; i++)
                if (!token_present || c->slots[i].tok)
                        n++;
        if (list) {
                if (*count < n)
                        rv = CKR_BUFFER_TOO_SMALL;
                else {
                        CK_ULONG j = 0;
                        for (size_t i = 0; i < c->nslots; i++)
                                if (!token_present || c->slots[i].tok)
                                        list[j++] = c->slots[i].id;
                }
        }
        *count = n;
        core_unlock(c);
        return rv;
}

CK_RV core_get_slot_info(struct core_client *cl, CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
        if (!info)
                return CKR_ARGUMENTS_BAD;
        struct core *c = cl->core;
        core_lock(c);
        struct slot *s = slot_find_locked(c, slot);
        if (!s) {
                core_unlock(c);
                return CKR_SLOT_ID_INVALID;
        }
        char desc[65];
        snprintf(desc, sizeof desc, "NETCA %s slot %lu", s->kind, (unsigned long)s->id);
        pad_field(info->slotDescription, sizeof info->slotDescription, desc);
        pad_field(info->manufacturerID, sizeof info->manufacturerID, "NETCA");
        info->flags = CKF_REMOVABLE_DEVICE | (s->tok ? CKF_TOKEN_PRESENT : 0);
        if (strcmp(s->kind, "soft") != 0)
                info->flags |= CKF_HW_SLOT;
        info->hardwareVersion = (CK_VERSION){ 0, 1 };
        info->firmwareVersion = (CK_VERSION){ 0, 1 };
        core_unlock(c);
        return CKR_OK;
}

CK_RV core_get_token_info(struct core_client *cl, CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
        if (!info)
                return CKR_ARGUMENTS_BAD;
        struct core *c = cl->core;
        struct tok *k;
        CK_RV rv = tok_get(c, slot, &k);
        if (rv != CKR_OK)
                return rv;
        struct token_desc d;
        memset(&d, 0, sizeof d);
        int r = k->ops->get_info(k->t, &d);
        if (r < 0) {
                tok_unref(k);
                return rv_from_errno(r);
        }
        pad_field(info->label, sizeof info->label, d.label);
        pad_field(info->manufacturerID, sizeof info->manufacturerID, d.manufacturer);
        pad_field(info->model, sizeof info->model, d.model);
        pad_field(info->serialNumber, sizeof info->serialNumber, d.serial);
        info->flags = d.flags;
        if (kind_protected(c, d.kind))
                info->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
        /* PKCS#11: "the number of sessions that this application currently
         * has open with the token" -- this client's, not everybody's (which
         * also keeps the answer free of other processes' activity, so that
         * the module may keep it). */
        CK_ULONG ns = 0, nrw = 0;
        core_lock(c);
        for (struct session *s = cl->sessions; s; s = s->next)
                if (s->tok == k) {
                        ns++;
                        if (s->flags & CKF_RW_SESSION)
                                nrw++;
                }
        core_unlock(c);
        info->ulMaxSessionCount = c->max_sessions; /* per application: this client */
        info->ulSessionCount = ns;
        info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
        info->ulRwSessionCount = nrw;
        info->ulMaxPinLen = d.max_pin;
        info->ulMinPinLen = d.min_pin;
        info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->hardwareVersion = d.hw;
        info->firmwareVersion = d.fw;
        memset(info->utcTime, ' ', sizeof info->utcTime);
        tok_unref(k);
        return CKR_OK;
}

CK_RV core_get_mechanism_list(struct core_client *cl, CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                              CK_ULONG_PTR count) {
        if (!count)
                return CKR_ARGUMENTS_BAD;
        struct tok *k;
        CK_RV rv = tok_get(cl->core, slot, &k);
        if (rv != CKR_OK)
                return rv;
        if (list) {
                if (*count < k->nmechs)
                        rv = CKR_BUFFER_TOO_SMALL;
                else
                        memcpy(list, k->mech_types, k->nmechs * sizeof *list);
        }
        *count = k->nmechs;
        tok_unref(k);
        return rv;
}

CK_RV core_get_mechanism_info(struct core_client *cl, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                              CK_MECHANISM_INFO_PTR info) {
        if (!info)
                return CKR_ARGUMENTS_BAD;
        struct tok *k;
        CK_RV rv = tok_get(cl->core, slot, &k);
        if (rv != CKR_OK)
                return rv;
        const CK_MECHANISM_INFO *mi = mech_lookup(k, type);
        if (mi)
                *info = *mi;
        else
                rv = CKR_MECHANISM_INVALID;
        tok_unref(k);
        return rv;
}
