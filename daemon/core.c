/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers.  See core.h.
 *
 * Locks, in the only order they are ever taken:
 *   session->mu  (one call at a time per session)
 *   tok->lock    (one driver call at a time per token; see driver.h)
 *   core->lock   (the tables: slots, clients, sessions, object caches,
 *                 login counts; held only briefly, never across a driver call)
 * Tokens and sessions are reference counted so that a removal or a close
 * racing with a call in flight frees them only after the call. */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <mbedtls/md.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-login.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "audit.h"
#include "common/ckr.h"
#include "pincache.h"
#include "pinentry.h"
#include "common/secmem.h"
#include "common/util.h"

#define MAX_ACCUMULATE (WIRE_FRAME_MAX * 4)  /* multi-part data kept for raw mechanisms */

struct cobj {
        CK_OBJECT_HANDLE handle;
        uint64_t id;
        struct nattrs attrs;
        struct core_client *owner;  /* session objects: the client; NULL for token objects */
        CK_SESSION_HANDLE owner_session;
};

struct tok {
        struct core *core;
        CK_SLOT_ID slot;
        const struct driver_ops *ops;
        struct token *t;
        pthread_mutex_t lock;
        unsigned refs;
        bool removed;
        bool loaded;
        struct cobj **objs;
        size_t nobjs;
        unsigned user_logins;
        unsigned so_logins;
        char key[128];            /* the slot key: the PIN cache's name for it */
        unsigned object_loads;    /* times the driver was asked for the object list */
        CK_MECHANISM_INFO *mech_info;
        CK_MECHANISM_TYPE *mech_types;
        size_t nmechs;
};

struct slot {
        CK_SLOT_ID id;
        char key[128];
        char kind[16];
        struct tok *tok;
};

enum op_kind { OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT, OP_DIGEST, _OP_MAX };

struct op {
        bool active;
        CK_MECHANISM_TYPE mech;   /* what the client asked for */
        CK_MECHANISM_TYPE raw;    /* what the driver / pkcrypto runs */
        uint8_t *param;
        size_t param_len;
        CK_OBJECT_HANDLE key;
        uint64_t key_id;
        CK_KEY_TYPE key_type;
        bool always_auth;
        bool context_ok;
        const mbedtls_md_info_t *md;
        mbedtls_md_context_t mdctx;
        bool md_started;
        struct nbuf data;          /* accumulated input for raw multi-part */
        bool multipart;
        mbedtls_pk_context pk;     /* verify / encrypt */
        bool has_pk;
};

struct session {
        CK_SESSION_HANDLE h;
        struct core *core;
        struct core_client *cl;
        struct tok *tok;
        CK_SLOT_ID slot;
        CK_FLAGS flags;
        pthread_mutex_t mu;
        unsigned refs;
        bool closed;
        struct session *next;      /* in the client's list */
        bool finding;
        CK_OBJECT_HANDLE *found;
        size_t nfound, found_pos;
        struct op ops[_OP_MAX];
};

struct login {
        struct tok *tok;
        CK_USER_TYPE user;
        struct login *next;
};

struct core_client {
        struct core *core;
        struct core_peer peer;
        struct session *sessions;
        struct login *logins;
        struct core_client *next;
};

/* The failed-login rate limit's memory (see login_fail_check). */
#define LOGIN_FAIL_SLOTS 64
struct login_fail {
        pid_t pid;
        unsigned long long start_time;
        char tok[128];
        CK_USER_TYPE user;
        uint8_t mac[32];
        uint64_t last;          /* CLOCK_MONOTONIC seconds; 0: free slot */
};
struct login_fails {
        pthread_mutex_t lock;
        struct login_fail v[LOGIN_FAIL_SLOTS];
        uint8_t key[32];        /* HMAC key, random, made on first use */
        bool keyed;
};

struct core {
        pthread_mutex_t lock;
        struct slot *slots;
        size_t nslots;
        struct core_client *clients;
        CK_SESSION_HANDLE next_session;
        CK_OBJECT_HANDLE next_object;
        core_event_fn event_fn;
        void *event_ud;
        struct pincache *pins;    /* daemon/pincache.h; never NULL after core_new */
        core_audit_fn audit_fn;
        void *audit_ud;
        struct core_pin_entry pin_entry;  /* under the core lock */
        struct login_fails login_fails;   /* its own lock */
};


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

static void core_lock(struct core *c) { pthread_mutex_lock(&c->lock); }
static void core_unlock(struct core *c) { pthread_mutex_unlock(&c->lock); }

static void emit(struct core *c, enum wire_event ev, CK_SLOT_ID slot) {
        core_event_fn fn;
        void *ud;
        core_lock(c);
        fn = c->event_fn;
        ud = c->event_ud;
        core_unlock(c);
        if (fn)
                fn(ud, ev, slot);
}

int core_new(struct core **ret) {
        struct core *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->login_fails.lock, NULL);
        c->next_session = 1;
        c->next_object = 1;
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
static bool kind_protected(struct core *c, const char *kind) {
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
static void audit(struct core_client *cl, struct tok *k, const char *op, const char *object, CK_RV rv,
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
static void audit_login(struct core_client *cl, struct tok *k, CK_USER_TYPE user, CK_RV rv, bool from_cache) {
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
static void obj_label_locked(struct tok *k, CK_OBJECT_HANDLE h, char *buf, size_t cap) {
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
static void audit_object(struct core_client *cl, struct tok *k, const CK_ATTRIBUTE *t, CK_ULONG n, bool keygen,
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
                                                : cls == CKO_PRIVATE_KEY ? "key-import" : "object-create";
        audit(cl, k, op, label, rv, NULL);
}

void core_sweep(struct core *c) {
        unsigned n = pincache_sweep(c->pins, pincache_process_alive);
        if (n)
                log_debug(LOG_SUB_CORE, "dropped %u cached PIN(s) of processes that are gone", n);
}

void core_set_event_sink(struct core *c, core_event_fn fn, void *userdata) {
        core_lock(c);
        c->event_fn = fn;
        c->event_ud = userdata;
        core_unlock(c);
}

static void cobj_free(struct cobj *o) {
        if (!o)
                return;
        nattrs_done(&o->attrs);
        free(o);
}

static void tok_free_objs(struct tok *k) {
        for (size_t i = 0; i < k->nobjs; i++)
                cobj_free(k->objs[i]);
        free(k->objs);
        k->objs = NULL;
        k->nobjs = 0;
        k->loaded = false;
}

/* Called with core lock held; frees when the last reference goes. */
static void tok_unref_locked(struct tok *k) {
        assert(k->refs > 0);
        if (--k->refs > 0)
                return;
        tok_free_objs(k);
        if (k->ops && k->ops->free)
                k->ops->free(k->t);
        free(k->mech_info);
        free(k->mech_types);
        pthread_mutex_destroy(&k->lock);
        free(k);
}

static void tok_unref(struct tok *k) {
        struct core *c = k->core;
        core_lock(c);
        tok_unref_locked(k);
        core_unlock(c);
}

static struct slot *slot_find_locked(struct core *c, CK_SLOT_ID id) {
        for (size_t i = 0; i < c->nslots; i++)
                if (c->slots[i].id == id)
                        return &c->slots[i];
        return NULL;
}

/* A referenced token for a slot id: CKR_SLOT_ID_INVALID or CKR_TOKEN_NOT_PRESENT. */
static CK_RV tok_get(struct core *c, CK_SLOT_ID id, struct tok **ret) {
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

/* ------------------------------------------------------------ mechanisms */

struct combined {
        CK_MECHANISM_TYPE mech, raw;
};

static const struct combined combined_mechs[] = {
        { CKM_SHA1_RSA_PKCS, CKM_RSA_PKCS },         { CKM_SHA224_RSA_PKCS, CKM_RSA_PKCS },
        { CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS },       { CKM_SHA384_RSA_PKCS, CKM_RSA_PKCS },
        { CKM_SHA512_RSA_PKCS, CKM_RSA_PKCS },       { CKM_SHA1_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS },
        { CKM_SHA224_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS }, { CKM_SHA256_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS },
        { CKM_SHA384_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS }, { CKM_SHA512_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS },
        { CKM_ECDSA_SHA1, CKM_ECDSA },               { CKM_ECDSA_SHA224, CKM_ECDSA },
        { CKM_ECDSA_SHA256, CKM_ECDSA },             { CKM_ECDSA_SHA384, CKM_ECDSA },
        { CKM_ECDSA_SHA512, CKM_ECDSA },
};

static const CK_MECHANISM_TYPE digest_mechs[] = {
        CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512,
};

static int mech_add(struct tok *k, CK_MECHANISM_TYPE type, CK_ULONG min, CK_ULONG max, CK_FLAGS flags) {
        for (size_t i = 0; i < k->nmechs; i++)
                if (k->mech_types[i] == type) {
                        k->mech_info[i].flags |= flags;
                        return 0;
                }
        CK_MECHANISM_TYPE *nt = realloc(k->mech_types, (k->nmechs + 1) * sizeof *nt);
        if (!nt)
                return -ENOMEM;
        k->mech_types = nt;
        CK_MECHANISM_INFO *ni = realloc(k->mech_info, (k->nmechs + 1) * sizeof *ni);
        if (!ni)
                return -ENOMEM;
        k->mech_info = ni;
        k->mech_types[k->nmechs] = type;
        k->mech_info[k->nmechs] = (CK_MECHANISM_INFO){ min, max, flags };
        k->nmechs++;
        return 0;
}

static const CK_MECHANISM_INFO *mech_lookup(const struct tok *k, CK_MECHANISM_TYPE type) {
        for (size_t i = 0; i < k->nmechs; i++)
                if (k->mech_types[i] == type)
                        return &k->mech_info[i];
        return NULL;
}

/* The token's full mechanism list: its raw ones (plus verify/encrypt done
 * here), the combined ones built on them, and digests. */
static int tok_build_mechs(struct tok *k) {
        const struct driver_mech *dm = NULL;
        size_t n = 0;
        int r = k->ops->get_mechanisms(k->t, &dm, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                CK_FLAGS f = dm[i].flags;
                switch (dm[i].type) {
                case CKM_RSA_PKCS:
                case CKM_RSA_X_509:
                        if (f & CKF_SIGN)
                                f |= CKF_VERIFY;
                        if (f & CKF_DECRYPT)
                                f |= CKF_ENCRYPT;
                        break;
                case CKM_RSA_PKCS_OAEP:
                        if (f & CKF_DECRYPT)
                                f |= CKF_ENCRYPT;
                        break;
                case CKM_RSA_PKCS_PSS:
                case CKM_ECDSA:
                        if (f & CKF_SIGN)
                                f |= CKF_VERIFY;
                        break;
                default:
                        break;
                }
                if ((r = mech_add(k, dm[i].type, dm[i].min_key, dm[i].max_key, f)) < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(combined_mechs); i++) {
                const CK_MECHANISM_INFO *raw = mech_lookup(k, combined_mechs[i].raw);
                if (!raw || !(raw->flags & CKF_SIGN))
                        continue;
                CK_FLAGS f = (raw->flags & (CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)) |
                             CKF_SIGN | CKF_VERIFY;
                if ((r = mech_add(k, combined_mechs[i].mech, raw->ulMinKeySize, raw->ulMaxKeySize, f)) < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(digest_mechs); i++)
                if ((r = mech_add(k, digest_mechs[i], 0, 0, CKF_DIGEST)) < 0)
                        return r;
        return 0;
}

/* -------------------------------------------------------------- registry */

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
        pthread_mutex_init(&k->lock, NULL);
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

static void session_release_ops(struct session *s);

/* Unlinks a session from its client (core lock held) and marks it closed;
 * returns true if the caller must finish it (no call holds it). */
static bool session_unlink_locked(struct session *s) {
        struct session **pp = &s->cl->sessions;
        while (*pp && *pp != s)
                pp = &(*pp)->next;
        if (*pp)
                *pp = s->next;
        s->next = NULL;
        s->closed = true;
        return s->refs == 0;
}

static void session_free(struct session *s) {
        session_release_ops(s);
        free(s->found);
        pthread_mutex_destroy(&s->mu);
        free(s);
}

/* Drops the login of a client on a token (core lock held); returns true when
 * the token has nobody logged in any more. */
static bool login_drop_locked(struct core_client *cl, struct tok *k) {
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

static struct login *login_find_locked(struct core_client *cl, struct tok *k) {
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
        /* Close every session on it and drop every login. */
        struct session *to_free = NULL;
        for (struct core_client *cl = c->clients; cl; cl = cl->next) {
                struct session *sn, *next;
                for (sn = cl->sessions; sn; sn = next) {
                        next = sn->next;
                        if (sn->tok != k)
                                continue;
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

/* --------------------------------------------------------------- clients */

/* The login session of process pid: logind's, else the XDG_SESSION_ID of its
 * environment (which logind sets in a session; readable for our own uid). */
static bool peer_env(pid_t pid, const char *name, char *buf, size_t cap);

static void peer_session(pid_t pid, char *buf, size_t cap) {
        char *sess = NULL;
        buf[0] = '\0';
        if (pid <= 0)
                return;
        if (sd_pid_get_session(pid, &sess) >= 0 && sess) {
                snprintf(buf, cap, "%s", sess);
                free(sess);
                return;
        }
        (void)peer_env(pid, "XDG_SESSION_ID", buf, cap);
}

/* A variable of the environment process pid was started with (readable for
 * our own uid): true and its value in buf when set and fitting. */
static bool peer_env(pid_t pid, const char *name, char *buf, size_t cap) {
        char path[64];
        size_t nl = strlen(name);
        bool found = false;
        buf[0] = '\0';
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        char var[4096];
        size_t n = 0;
        int ch;
        /* NUL-separated NAME=value strings. */
        while ((ch = getc(f)) != EOF) {
                if (ch != '\0') {
                        if (n < sizeof var - 1)
                                var[n++] = (char)ch;
                        continue;
                }
                var[n] = '\0';
                if (strncmp(var, name, nl) == 0 && var[nl] == '=' && var[nl + 1] && strlen(var + nl + 1) < cap) {
                        memcpy(buf, var + nl + 1, strlen(var + nl + 1) + 1);
                        found = true;
                        break;
                }
                n = 0;
        }
        fclose(f);
        return found;
}

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

static void destroy_session_objects(struct core *c, struct tok *k, struct core_client *cl,
                                    CK_SESSION_HANDLE only);

/* Logs the token out at the driver when nobody is logged in any more. */
static void tok_logout_if_idle(struct tok *k) {
        pthread_mutex_lock(&k->lock);
        core_lock(k->core);
        bool idle = k->user_logins == 0 && k->so_logins == 0 && !k->removed;
        core_unlock(k->core);
        if (idle)
                (void)k->ops->logout(k->t);
        pthread_mutex_unlock(&k->lock);
}

/* Closes one session that has just been unlinked (finishing it if nobody
 * holds it), destroying its session objects. */
static void session_finish_close(struct core *c, struct session *s, bool do_free) {
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
        /* Daemon stop: every cached PIN is wiped. */
        c->pins = pincache_free(c->pins);
        secure_wipe(&c->login_fails.v, sizeof c->login_fails.v);
        secure_wipe(c->login_fails.key, sizeof c->login_fails.key);
        pthread_mutex_destroy(&c->login_fails.lock);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* -------------------------------------------------------------- sessions */

/* Finds the client's session, takes a reference and its call lock. */
static CK_RV session_get(struct core_client *cl, CK_SESSION_HANDLE h, struct session **ret) {
        struct core *c = cl->core;
        struct session *s;
        core_lock(c);
        for (s = cl->sessions; s; s = s->next)
                if (s->h == h)
                        break;
        if (!s) {
                core_unlock(c);
                return CKR_SESSION_HANDLE_INVALID;
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
                return CKR_SESSION_HANDLE_INVALID;
        }
        *ret = s;
        return CKR_OK;
}

static void session_put(struct session *s) {
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

static CK_USER_TYPE login_state(struct core_client *cl, struct tok *k) {
        core_lock(cl->core);
        struct login *l = login_find_locked(cl, k);
        CK_USER_TYPE u = l ? l->user : (CK_USER_TYPE)-1;
        core_unlock(cl->core);
        return u;
}

static bool is_user(struct core_client *cl, struct tok *k) {
        return login_state(cl, k) == CKU_USER;
}

static void op_reset(struct op *o) {
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

static void session_release_ops(struct session *s) {
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
        s->h = c->next_session++;
        s->next = cl->sessions;
        cl->sessions = s;
        core_unlock(c);
        *ret = s->h;
        return CKR_OK;
}

CK_RV core_close_session(struct core_client *cl, CK_SESSION_HANDLE h) {
        struct core *c = cl->core;
        core_lock(c);
        struct session *s;
        for (s = cl->sessions; s; s = s->next)
                if (s->h == h)
                        break;
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
        info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
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

/* ------------------------------------------------------------------ PINs */

static CK_RV check_pin_arg(CK_UTF8CHAR_PTR pin, CK_ULONG len) {
        if (!pin && len)
                return CKR_ARGUMENTS_BAD;
        if (len > 256)
                return CKR_PIN_LEN_RANGE;
        return CKR_OK;
}

CK_RV core_init_token(struct core_client *cl, CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                      CK_UTF8CHAR_PTR label) {
        if (!label)
                return CKR_ARGUMENTS_BAD;
        CK_RV rv = check_pin_arg(pin, pin_len);
        if (rv != CKR_OK)
                return rv;
        if (!pin)
                return CKR_ARGUMENTS_BAD; /* no protected authentication path for InitToken */
        struct core *c = cl->core;
        struct tok *k;
        if ((rv = tok_get(c, slot, &k)) != CKR_OK)
                return rv;
        if (!k->ops->init_token) {
                tok_unref(k);
                return CKR_FUNCTION_NOT_SUPPORTED;
        }
        core_lock(c);
        bool busy = false;
        for (struct core_client *o = c->clients; o; o = o->next)
                for (struct session *s = o->sessions; s; s = s->next)
                        if (s->tok == k)
                                busy = true;
        core_unlock(c);
        if (busy) {
                tok_unref(k);
                return CKR_SESSION_EXISTS;
        }
        char lbl[33];
        unpad_field(lbl, label, 32);
        pthread_mutex_lock(&k->lock);
        int r = k->ops->init_token(k->t, (const char *)pin, pin_len, lbl);
        if (r == 0) {
                core_lock(c);
                tok_free_objs(k);
                core_unlock(c);
        }
        pthread_mutex_unlock(&k->lock);
        if (r == 0) {
                emit(c, WIRE_EV_TOKEN_CHANGED, slot);
                emit(c, WIRE_EV_OBJECTS_CHANGED, slot);
        }
        tok_unref(k);
        return rv_from_errno(r);
}

CK_RV core_init_pin(struct core_client *cl, CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len) {
        CK_RV rv = check_pin_arg(pin, pin_len);
        if (rv != CKR_OK)
                return rv;
        if (!pin)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        if (login_state(cl, k) != CKU_SO)
                rv = CKR_USER_NOT_LOGGED_IN;
        else if (!(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!k->ops->init_pin)
                rv = CKR_FUNCTION_NOT_SUPPORTED;
        else {
                pthread_mutex_lock(&k->lock);
                rv = rv_from_errno(k->ops->init_pin(k->t, (const char *)pin, pin_len));
                pthread_mutex_unlock(&k->lock);
                if (rv == CKR_OK) {
                        /* Unblocked or reset: no cached PIN outlives it. */
                        pincache_flush_token(cl->core->pins, k->key);
                        emit(cl->core, WIRE_EV_TOKEN_CHANGED, s->slot);
                }
                audit(cl, k, "pin-unblock", NULL, rv, NULL);
        }
        session_put(s);
        return rv;
}

CK_RV core_set_pin(struct core_client *cl, CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                   CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len) {
        CK_RV rv = check_pin_arg(old_pin, old_len);
        if (rv == CKR_OK)
                rv = check_pin_arg(new_pin, new_len);
        if (rv != CKR_OK)
                return rv;
        if (!old_pin || !new_pin)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        if (!(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!k->ops->set_pin)
                rv = CKR_FUNCTION_NOT_SUPPORTED;
        else {
                CK_USER_TYPE u = login_state(cl, k) == CKU_SO ? CKU_SO : CKU_USER;
                pthread_mutex_lock(&k->lock);
                rv = rv_from_errno(k->ops->set_pin(k->t, u, (const char *)old_pin, old_len,
                                                   (const char *)new_pin, new_len));
                pthread_mutex_unlock(&k->lock);
                if (rv == CKR_OK && u == CKU_USER)
                        pincache_flush_token(cl->core->pins, k->key);
                audit(cl, k, u == CKU_SO ? "so-pin-change" : "pin-change", NULL, rv, NULL);
                emit(cl->core, WIRE_EV_TOKEN_CHANGED, s->slot);
        }
        session_put(s);
        return rv;
}

/* The client's login session is looked up here, when a PIN is cached or
 * looked for, not when it connects: a connection's start is on the clock of
 * every fresh process (issue 3), and asking logind (or reading the
 * environment) costs more than the rest of the handshake.  The answer does
 * not change during a process's life, so looking it up again is harmless. */
static void pin_owner(const struct core_client *cl, struct pincache_owner *o) {
        memset(o, 0, sizeof *o);
        o->pid = cl->peer.pid;
        o->start_time = cl->peer.start_time;
        if (cl->peer.session[0])
                snprintf(o->session, sizeof o->session, "%s", cl->peer.session);
        else
                peer_session(cl->peer.pid, o->session, sizeof o->session);
}

#define CACHED_PIN_MAX 256

/* A NULL PIN: the cached one for this client on k, into secure memory
 * (*ret, free with secure_free).  CKR_OK or the answer to give. */
static CK_RV cached_pin(struct core_client *cl, struct tok *k, char **ret, size_t *ret_len) {
        struct pincache_owner o;
        pin_owner(cl, &o);
        char *buf = secure_alloc(CACHED_PIN_MAX);
        if (!buf)
                return CKR_HOST_MEMORY;
        if (pincache_get(cl->core->pins, k->key, &o, buf, CACHED_PIN_MAX, ret_len) < 0) {
                secure_free(buf);
                /* No PIN from the caller and none cached for it (the
                 * protected authentication path is a later step). */
                return CKR_ARGUMENTS_BAD;
        }
        *ret = buf;
        return CKR_OK;
}

/* The terminal of process pid (its stdin), NULL when it has none. */
static bool peer_tty(pid_t pid, char *buf, size_t cap) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/0", (int)pid);
        ssize_t n = readlink(path, buf, cap - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        return strncmp(buf, "/dev/pts/", 9) == 0 || strncmp(buf, "/dev/tty", 8) == 0;
}

enum pin_source { PIN_FROM_CLIENT, PIN_FROM_CACHE, PIN_FROM_USER };

/* C_Login(CKU_USER) with a NULL PIN: the cached PIN, else, for tokens that
 * collect PINs themselves, one the user types into pinentry.  Secure
 * memory in *ret (secure_free).  CKR_OK or the answer to give. */
static CK_RV null_pin(struct core_client *cl, struct tok *k, char **ret, size_t *ret_len, enum pin_source *src) {
        CK_RV rv = cached_pin(cl, k, ret, ret_len);
        if (rv == CKR_OK) {
                *src = PIN_FROM_CACHE;
                return rv;
        }
        struct token_desc d;
        memset(&d, 0, sizeof d);
        if (rv != CKR_ARGUMENTS_BAD || k->ops->get_info(k->t, &d) < 0 || !kind_protected(cl->core, d.kind))
                return rv;
        struct core_pin_entry pe;
        core_get_pin_entry(cl->core, &pe);
        char desc[160], display[128], tty[128], term[64];
        if (d.user_tries_left >= 0)
                snprintf(desc, sizeof desc, "Enter the PIN of token \"%s\" (%d tr%s left).", d.label,
                         d.user_tries_left, d.user_tries_left == 1 ? "y" : "ies");
        else
                snprintf(desc, sizeof desc, "Enter the PIN of token \"%s\".", d.label);
        struct pinentry_request req = {
                .program = pe.program,
                .title = "NETCA token PIN",
                .description = desc,
                .prompt = "PIN:",
                .display = peer_env(cl->peer.pid, "DISPLAY", display, sizeof display) ? display : getenv("DISPLAY"),
                .ttyname = peer_tty(cl->peer.pid, tty, sizeof tty) ? tty : NULL,
                .ttytype = peer_env(cl->peer.pid, "TERM", term, sizeof term) ? term : NULL,
                .timeout_s = pe.timeout_s,
        };
        char *buf = secure_alloc(CACHED_PIN_MAX);
        if (!buf)
                return CKR_HOST_MEMORY;
        int r = pinentry_ask(&req, buf, CACHED_PIN_MAX, ret_len);
        if (r < 0) {
                secure_free(buf);
                if (r == -ENOENT)
                        log_warning("no pinentry program at %s: cannot ask for the PIN of \"%s\"", pe.program,
                                    d.label);
                else if (r != -ECANCELED && r != -ETIMEDOUT)
                        log_warning("pinentry %s failed: %s", pe.program, strerror(-r));
                return r == -ECANCELED || r == -ETIMEDOUT ? CKR_FUNCTION_CANCELED : CKR_FUNCTION_FAILED;
        }
        *ret = buf;
        *src = PIN_FROM_USER;
        return CKR_OK;
}

/* After the token judged a PIN: keep a good one the client gave, drop a
 * cached one the token refused. */
static void pin_judged(struct core_client *cl, struct tok *k, int r, bool from_cache, const char *pin,
                       size_t pin_len) {
        struct pincache_owner o;
        pin_owner(cl, &o);
        if (r == 0 && !from_cache)
                pincache_put(cl->core->pins, k->key, &o, pin, pin_len);
        else if (from_cache && r < 0 && r != -ENOMEM && r != -EIO && r != -ETIMEDOUT)
                pincache_flush_entry(cl->core->pins, k->key, &o);
        if (from_cache)
                log_debug(LOG_SUB_CORE, "slot %lu: cached PIN for pid %d %s", (unsigned long)k->slot,
                          (int)cl->peer.pid, r == 0 ? "accepted" : "refused: dropped");
}

/* ---- Rate limit of failed logins (issue 6; "browser" helper) ----
 * Browsers have been seen retrying a refused PIN in a tight loop (10,000
 * times in 20 s), which would lock a real key at once.  Rule: when the token
 * refused PIN P for user type U from process X (pid + start time) on token K,
 * a new C_Login from X on K/U with the same P within LOGIN_RETRY_WINDOW
 * seconds of X's last attempt with P gets CKR_PIN_INCORRECT without reaching
 * the token (the window slides with each refused retry, so an endless loop
 * costs one try).  A different PIN is tried (and becomes the one remembered);
 * a success forgets the entry.  PINs are remembered only as HMAC-SHA256 under
 * a random key made once per daemon, in memory.  Logins with a NULL PIN
 * (cache, pinentry) are not limited: each is a new entry by the user. */
#define LOGIN_RETRY_WINDOW 60

/* check: returns true when this PIN is the one the token last refused for
 * this process within the window.  !check: records the token's verdict
 * (failed: it said CKR_PIN_INCORRECT, remember the PIN's HMAC; else forget). */
static bool login_fail_check(const struct core_client *cl, const struct tok *k, CK_USER_TYPE user, const void *pin,
                             size_t pin_len, bool check, bool failed) {
        uint8_t mac[32];
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t now = (uint64_t)ts.tv_sec + 1; /* never 0 */
        bool refuse = false;
        struct login_fails *lf = &cl->core->login_fails;
        pthread_mutex_lock(&lf->lock);
        if (!lf->keyed && pkc_random(lf->key, sizeof lf->key) == 0)
                lf->keyed = true;
        if (!lf->keyed || mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), lf->key, sizeof lf->key, pin,
                                          pin_len, mac) != 0) {
                pthread_mutex_unlock(&lf->lock);
                return false;   /* cannot compare safely: let the token judge */
        }
        struct login_fail *e = NULL, *victim = &lf->v[0];
        for (size_t i = 0; i < LOGIN_FAIL_SLOTS; i++) {
                struct login_fail *f = &lf->v[i];
                if (f->last && f->pid == cl->peer.pid && f->start_time == cl->peer.start_time && f->user == user &&
                    strcmp(f->tok, k->key) == 0)
                        e = f;
                if (f->last < victim->last)
                        victim = f;
        }
        if (check) {
                if (e && now - e->last < LOGIN_RETRY_WINDOW && memcmp(e->mac, mac, sizeof mac) == 0) {
                        e->last = now;
                        refuse = true;
                }
        } else if (!failed) {
                if (e)
                        memset(e, 0, sizeof *e);
        } else {
                if (!e)
                        e = victim; /* a free slot, else the oldest */
                e->pid = cl->peer.pid;
                e->start_time = cl->peer.start_time;
                snprintf(e->tok, sizeof e->tok, "%s", k->key);
                e->user = user;
                memcpy(e->mac, mac, sizeof mac);
                e->last = now;
        }
        pthread_mutex_unlock(&lf->lock);
        secure_wipe(mac, sizeof mac);
        return refuse;
}
/* ---- end of the rate limit of failed logins ---- */

CK_RV core_login(struct core_client *cl, CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                 CK_ULONG pin_len) {
        CK_RV rv = check_pin_arg(pin, pin_len);
        if (rv != CKR_OK)
                return rv;
        if (user != CKU_SO && user != CKU_USER && user != CKU_CONTEXT_SPECIFIC)
                return CKR_USER_TYPE_INVALID;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct core *c = cl->core;
        struct tok *k = s->tok;
        CK_USER_TYPE cur = login_state(cl, k);

        if (user == CKU_CONTEXT_SPECIFIC) {
                struct op *o = NULL;
                if (s->ops[OP_SIGN].active)
                        o = &s->ops[OP_SIGN];
                else if (s->ops[OP_DECRYPT].active)
                        o = &s->ops[OP_DECRYPT];
                if (!o)
                        rv = CKR_OPERATION_NOT_INITIALIZED;
                else if (cur != CKU_USER)
                        rv = CKR_USER_NOT_LOGGED_IN;
                else {
                        /* Keys that want the PIN for each use are served from
                         * the cache only when the policy says so. */
                        struct pincache_policy pol;
                        pincache_get_policy(c->pins, &pol);
                        char *cpin = NULL;
                        size_t clen = 0;
                        if (!pin)
                                rv = pol.always_authenticate ? cached_pin(cl, k, &cpin, &clen) : CKR_ARGUMENTS_BAD;
                        if (rv == CKR_OK) {
                                const char *p = cpin ? cpin : (const char *)pin;
                                size_t n = cpin ? clen : pin_len;
                                pthread_mutex_lock(&k->lock);
                                int r = k->ops->login(k->t, CKU_CONTEXT_SPECIFIC, p, n);
                                pthread_mutex_unlock(&k->lock);
                                if (cpin)
                                        pin_judged(cl, k, r, true, NULL, 0);
                                rv = rv_from_errno(r);
                                audit_login(cl, k, CKU_CONTEXT_SPECIFIC, rv, cpin != NULL);
                                if (rv == CKR_OK)
                                        o->context_ok = true;
                        }
                        secure_free(cpin);
                }
                session_put(s);
                return rv;
        }
        if (cur == user) {
                session_put(s);
                return CKR_USER_ALREADY_LOGGED_IN;
        }
        if (cur != (CK_USER_TYPE)-1) {
                session_put(s);
                return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        }
        if (user == CKU_SO) {
                bool ro = false;
                core_lock(c);
                for (struct session *o = cl->sessions; o; o = o->next)
                        if (o->tok == k && !(o->flags & CKF_RW_SESSION))
                                ro = true;
                core_unlock(c);
                if (ro) {
                        session_put(s);
                        return CKR_SESSION_READ_ONLY_EXISTS;
                }
        }
        /* A NULL PIN: the cached one (user logins only; the SO PIN is
         * never cached). */
        char *cpin = NULL;
        size_t clen = 0;
        enum pin_source src = PIN_FROM_CLIENT;
        if (!pin) {
                rv = user == CKU_USER ? null_pin(cl, k, &cpin, &clen, &src) : CKR_ARGUMENTS_BAD;
                if (rv != CKR_OK) {
                        if (rv != CKR_ARGUMENTS_BAD)
                                audit_login(cl, k, user, rv, false);
                        session_put(s);
                        return rv;
                }
        }
        const char *use_pin = cpin ? cpin : (const char *)pin;
        size_t use_len = cpin ? clen : pin_len;
        /* Rate limit (see login_fail_check): the same refused PIN again. */
        if (pin && login_fail_check(cl, k, user, pin, pin_len, true, false)) {
                log_debug(LOG_SUB_CORE, "login slot %lu pid %d: same refused PIN again, not sent to the token",
                          (unsigned long)s->slot, (int)cl->peer.pid);
                session_put(s);
                return CKR_PIN_INCORRECT;
        }
        pthread_mutex_lock(&k->lock);
        int r = k->ops->login(k->t, user, use_pin, use_len);
        if (pin)
                login_fail_check(cl, k, user, pin, pin_len, false, rv_from_errno(r) == CKR_PIN_INCORRECT);
        if (user == CKU_USER)
                pin_judged(cl, k, r, src == PIN_FROM_CACHE, use_pin, use_len);
        bool from_cache = src == PIN_FROM_CACHE;
        secure_free(cpin);
        if (r == 0) {
                struct login *l = calloc(1, sizeof *l);
                if (!l)
                        r = -ENOMEM;
                else {
                        core_lock(c);
                        l->tok = k;
                        l->user = user;
                        l->next = cl->logins;
                        cl->logins = l;
                        k->refs++;
                        if (user == CKU_SO)
                                k->so_logins++;
                        else
                                k->user_logins++;
                        core_unlock(c);
                }
        }
        pthread_mutex_unlock(&k->lock);
        rv = rv_from_errno(r);
        log_debug(LOG_SUB_CORE, "login slot %lu user %lu pid %d: rv 0x%lx", (unsigned long)s->slot,
                  (unsigned long)user, (int)cl->peer.pid, (unsigned long)rv);
        audit_login(cl, k, user, rv, from_cache);
        CK_SLOT_ID slot = s->slot;
        session_put(s);
        emit(c, WIRE_EV_TOKEN_CHANGED, slot);
        return rv;
}

CK_RV core_logout(struct core_client *cl, CK_SESSION_HANDLE h) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct core *c = cl->core;
        struct tok *k = s->tok;
        core_lock(c);
        k->refs++;
        bool had = login_find_locked(cl, k) != NULL;
        bool idle = had && login_drop_locked(cl, k);
        core_unlock(c);
        CK_SLOT_ID slot = s->slot;
        session_put(s);
        if (idle)
                tok_logout_if_idle(k);
        tok_unref(k);
        if (!had)
                return CKR_USER_NOT_LOGGED_IN;
        emit(c, WIRE_EV_TOKEN_CHANGED, slot);
        return CKR_OK;
}

/* --------------------------------------------------------------- objects */

/* Makes sure the token's objects are in the cache (reading them once). */
static int obj_insert_locked(struct tok *k, struct dobj *d, struct core_client *owner, CK_SESSION_HANDLE sess,
                             CK_OBJECT_HANDLE *ret);
static void obj_remove_locked(struct tok *k, struct cobj *o);

/* After a write to a token whose writes may touch other objects
 * (driver_ops.writes_affect_others): its list read again and matched by id
 * with the token objects the core has: gone ones removed, changed ones
 * updated, new ones added; their handles stay.  Session objects are the
 * core's own and untouched.  Token lock held. */
static int tok_reconcile_locked(struct tok *k) {
        struct dobj *v = NULL;
        size_t n = 0;
        int r = k->ops->load_objects(k->t, &v, &n);
        if (r < 0)
                return r;
        struct core *c = k->core;
        core_lock(c);
        k->object_loads++;
        for (size_t i = 0; i < k->nobjs;) {
                struct cobj *o = k->objs[i];
                size_t j = 0;
                while (j < n && (o->owner || v[j].id != o->id))
                        j++;
                if (o->owner) {
                        i++;
                        continue;
                }
                if (j == n) {
                        obj_remove_locked(k, o);
                        continue;
                }
                nattrs_done(&o->attrs);
                o->attrs = v[j].attrs;
                nattrs_init(&v[j].attrs);
                v[j].id = 0; /* matched */
                i++;
        }
        for (size_t j = 0; j < n && r == 0; j++)
                if (v[j].id)
                        r = obj_insert_locked(k, &v[j], NULL, 0, NULL);
        core_unlock(c);
        dobj_free_array(v, n);
        return r;
}

/* Core lock held.  The handle of token object id, 0 if none. */
static CK_OBJECT_HANDLE handle_of_id_locked(struct tok *k, uint64_t id) {
        for (size_t i = 0; i < k->nobjs; i++)
                if (!k->objs[i]->owner && k->objs[i]->id == id)
                        return k->objs[i]->handle;
        return CK_INVALID_HANDLE;
}

static __thread bool tl_nowait, tl_would_block;

void core_set_nowait(bool on) {
        tl_nowait = on;
        tl_would_block = false;
}

bool core_take_would_block(void) {
        bool r = tl_would_block;
        tl_would_block = false;
        return r;
}

static CK_RV tok_load(struct tok *k) {
        struct core *c = k->core;
        core_lock(c);
        bool loaded = k->loaded;
        core_unlock(c);
        if (loaded)
                return CKR_OK;
        if (tl_nowait) {
                /* Every caller calls this before it changes anything. */
                tl_would_block = true;
                return CKR_FUNCTION_FAILED;
        }
        pthread_mutex_lock(&k->lock);
        core_lock(c);
        loaded = k->loaded;
        core_unlock(c);
        if (loaded) {
                pthread_mutex_unlock(&k->lock);
                return CKR_OK;
        }
        struct dobj *v = NULL;
        size_t n = 0;
        int r = k->ops->load_objects(k->t, &v, &n);
        if (r < 0) {
                pthread_mutex_unlock(&k->lock);
                return rv_from_errno(r);
        }
        core_lock(c);
        k->object_loads++;
        core_unlock(c);
        struct cobj **objs = calloc(n ? n : 1, sizeof *objs);
        if (!objs) {
                dobj_free_array(v, n);
                pthread_mutex_unlock(&k->lock);
                return CKR_HOST_MEMORY;
        }
        for (size_t i = 0; i < n; i++) {
                objs[i] = calloc(1, sizeof **objs);
                if (!objs[i]) {
                        for (size_t j = 0; j < i; j++)
                                cobj_free(objs[j]);
                        free(objs);
                        dobj_free_array(v, n);
                        pthread_mutex_unlock(&k->lock);
                        return CKR_HOST_MEMORY;
                }
                objs[i]->id = v[i].id;
                objs[i]->attrs = v[i].attrs;
                nattrs_init(&v[i].attrs);
        }
        dobj_free_array(v, n);
        core_lock(c);
        for (size_t i = 0; i < n; i++)
                objs[i]->handle = c->next_object++;
        /* Session objects created before the load stay. */
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i]->owner) {
                        struct cobj **no = realloc(objs, (n + 1) * sizeof *no);
                        if (!no)
                                break;
                        objs = no;
                        objs[n++] = k->objs[i];
                        k->objs[i] = NULL;
                }
        for (size_t i = 0; i < k->nobjs; i++)
                cobj_free(k->objs[i]);
        free(k->objs);
        k->objs = objs;
        k->nobjs = n;
        k->loaded = true;
        core_unlock(c);
        pthread_mutex_unlock(&k->lock);
        log_debug(LOG_SUB_CORE, "slot %lu: %zu objects loaded", (unsigned long)k->slot, n);
        return CKR_OK;
}

static bool obj_visible(const struct cobj *o, struct core_client *cl, bool user) {
        if (o->owner && o->owner != cl)
                return false;
        if (nattrs_get_bool(&o->attrs, CKA_PRIVATE, false) && !user)
                return false;
        return true;
}

/* Core lock held.  The visible object with this handle, or NULL. */
static struct cobj *obj_find_locked(struct tok *k, CK_OBJECT_HANDLE h, struct core_client *cl, bool user) {
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i]->handle == h)
                        return obj_visible(k->objs[i], cl, user) ? k->objs[i] : NULL;
        return NULL;
}

static int obj_insert_locked(struct tok *k, struct dobj *d, struct core_client *owner, CK_SESSION_HANDLE sess,
                             CK_OBJECT_HANDLE *ret) {
        struct cobj *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        struct cobj **no = realloc(k->objs, (k->nobjs + 1) * sizeof *no);
        if (!no) {
                free(o);
                return -ENOMEM;
        }
        k->objs = no;
        o->id = d->id;
        o->attrs = d->attrs;
        nattrs_init(&d->attrs);
        o->owner = owner;
        o->owner_session = sess;
        o->handle = k->core->next_object++;
        k->objs[k->nobjs++] = o;
        if (ret)
                *ret = o->handle;
        return 0;
}

static void obj_remove_locked(struct tok *k, struct cobj *o) {
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i] == o) {
                        memmove(&k->objs[i], &k->objs[i + 1], (k->nobjs - i - 1) * sizeof *k->objs);
                        k->nobjs--;
                        cobj_free(o);
                        return;
                }
}

static void destroy_session_objects(struct core *c, struct tok *k, struct core_client *cl,
                                    CK_SESSION_HANDLE only) {
        for (;;) {
                uint64_t id = 0;
                core_lock(c);
                for (size_t i = 0; i < k->nobjs; i++)
                        if (k->objs[i]->owner == cl && (!only || k->objs[i]->owner_session == only)) {
                                id = k->objs[i]->id;
                                obj_remove_locked(k, k->objs[i]);
                                break;
                        }
                bool removed = k->removed;
                core_unlock(c);
                if (!id)
                        break;
                if (!removed) {
                        pthread_mutex_lock(&k->lock);
                        (void)k->ops->destroy_object(k->t, id);
                        pthread_mutex_unlock(&k->lock);
                }
        }
}

/* The session, with its token's objects loaded, and whether its client is
 * logged in as user (who sees private objects).  Released with
 * session_put() on CKR_OK only. */
static CK_RV session_get_objects(struct core_client *cl, CK_SESSION_HANDLE h, struct session **ret, bool *ret_user) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if ((rv = tok_load(s->tok)) != CKR_OK) {
                session_put(s);
                return rv;
        }
        *ret_user = is_user(cl, s->tok);
        *ret = s;
        return CKR_OK;
}

CK_RV core_get_attribute_value(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                               CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
        if (!tmpl && n)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        bool user;
        CK_RV rv = session_get_objects(cl, h, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        core_lock(cl->core);
        struct cobj *o = obj_find_locked(k, obj, cl, user);
        rv = o ? nattrs_answer(&o->attrs, tmpl, n) : CKR_OBJECT_HANDLE_INVALID;
        core_unlock(cl->core);
        session_put(s);
        return rv;
}

CK_RV core_find_objects_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
        if (!tmpl && n)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        bool user;
        CK_RV rv = session_get_objects(cl, h, &s, &user);
        if (rv != CKR_OK)
                return rv;
        if (s->finding) {
                session_put(s);
                return CKR_OPERATION_ACTIVE;
        }
        struct tok *k = s->tok;
        core_lock(cl->core);
        CK_OBJECT_HANDLE *found = calloc(k->nobjs ? k->nobjs : 1, sizeof *found);
        size_t nf = 0;
        if (found)
                for (size_t i = 0; i < k->nobjs; i++)
                        if (obj_visible(k->objs[i], cl, user) && nattrs_match(&k->objs[i]->attrs, tmpl, n))
                                found[nf++] = k->objs[i]->handle;
        core_unlock(cl->core);
        if (!found) {
                session_put(s);
                return CKR_HOST_MEMORY;
        }
        free(s->found);
        s->found = found;
        s->nfound = nf;
        s->found_pos = 0;
        s->finding = true;
        session_put(s);
        return CKR_OK;
}

CK_RV core_find_objects(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR ret, CK_ULONG max,
                        CK_ULONG_PTR ret_count) {
        if (!ret_count || (!ret && max))
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (!s->finding) {
                session_put(s);
                return CKR_OPERATION_NOT_INITIALIZED;
        }
        CK_ULONG n = 0;
        while (n < max && s->found_pos < s->nfound)
                ret[n++] = s->found[s->found_pos++];
        *ret_count = n;
        session_put(s);
        return CKR_OK;
}

CK_RV core_find_objects_final(struct core_client *cl, CK_SESSION_HANDLE h) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (!s->finding)
                rv = CKR_OPERATION_NOT_INITIALIZED;
        free(s->found);
        s->found = NULL;
        s->nfound = s->found_pos = 0;
        s->finding = false;
        session_put(s);
        return rv;
}

CK_RV core_get_objects(struct core_client *cl, CK_SESSION_HANDLE h, size_t max_bytes, struct nbuf *out) {
        struct session *s;
        bool user;
        CK_RV rv = session_get_objects(cl, h, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        struct nattrs pub;
        nattrs_init(&pub);
        core_lock(cl->core);
        uint32_t n = 0;
        for (size_t i = 0; i < k->nobjs; i++)
                if (obj_visible(k->objs[i], cl, user))
                        n++;
        nbuf_put_u32(out, n);
        for (size_t i = 0; i < k->nobjs && !nbuf_failed(out); i++) {
                const struct cobj *o = k->objs[i];
                if (!obj_visible(o, cl, user))
                        continue;
                /* The object as C_GetAttributeValue shows it: without the
                 * sensitive attributes. */
                nattrs_done(&pub);
                for (size_t j = 0; j < o->attrs.n; j++)
                        if (!nattrs_is_sensitive(&o->attrs, o->attrs.v[j].type) &&
                            nattrs_set(&pub, o->attrs.v[j].type, o->attrs.v[j].value, o->attrs.v[j].len) < 0)
                                nbuf_fail(out);
                struct nbuf one;
                nbuf_init(&one, WIRE_FRAME_MAX);
                nattrs_serialize(&pub, &one);
                nbuf_put_u64(out, o->handle);
                nbuf_put_blob(out, one.data, one.len);
                if (nbuf_failed(&one))
                        nbuf_fail(out);
                nbuf_done(&one);
                if (out->len > max_bytes) {
                        rv = CKR_DATA_LEN_RANGE;
                        break;
                }
        }
        core_unlock(cl->core);
        nattrs_done(&pub);
        session_put(s);
        if (rv == CKR_OK && nbuf_failed(out))
                rv = CKR_HOST_MEMORY;
        return rv;
}

static bool tmpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, bool def) {
        for (CK_ULONG i = 0; i < n; i++)
                if (t[i].type == type && t[i].pValue && t[i].ulValueLen == sizeof(CK_BBOOL))
                        return *(CK_BBOOL *)t[i].pValue != 0;
        return def;
}

static bool tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret) {
        for (CK_ULONG i = 0; i < n; i++)
                if (t[i].type == type && t[i].pValue && t[i].ulValueLen == sizeof(CK_ULONG)) {
                        memcpy(ret, t[i].pValue, sizeof *ret);
                        return true;
                }
        return false;
}

static CK_RV check_template(const CK_ATTRIBUTE *t, CK_ULONG n) {
        if (!t && n)
                return CKR_ARGUMENTS_BAD;
        for (CK_ULONG i = 0; i < n; i++)
                if (!t[i].pValue && t[i].ulValueLen)
                        return CKR_ATTRIBUTE_VALUE_INVALID;
        return CKR_OK;
}

CK_RV core_create_object(struct core_client *cl, CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                         CK_OBJECT_HANDLE_PTR ret) {
        if (!ret)
                return CKR_ARGUMENTS_BAD;
        CK_RV rv = check_template(tmpl, n);
        if (rv != CKR_OK)
                return rv;
        CK_ULONG cls;
        if (!tmpl_ulong(tmpl, n, CKA_CLASS, &cls))
                return CKR_TEMPLATE_INCOMPLETE;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        bool persistent = tmpl_bool(tmpl, n, CKA_TOKEN, false);
        bool priv = tmpl_bool(tmpl, n, CKA_PRIVATE, cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY);
        if ((rv = tok_load(k)) != CKR_OK)
                goto out;
        if (persistent && !(s->flags & CKF_RW_SESSION)) {
                rv = CKR_SESSION_READ_ONLY;
                goto out;
        }
        if (priv && !is_user(cl, k)) {
                rv = CKR_USER_NOT_LOGGED_IN;
                goto out;
        }
        struct dobj d;
        memset(&d, 0, sizeof d);
        pthread_mutex_lock(&k->lock);
        int r = k->ops->create_object(k->t, tmpl, n, persistent, &d);
        if (r == 0 && persistent && k->ops->writes_affect_others) {
                r = tok_reconcile_locked(k);
                core_lock(cl->core);
                *ret = handle_of_id_locked(k, d.id);
                core_unlock(cl->core);
                if (r == 0 && !*ret)
                        r = -EIO;
                dobj_done(&d);
        } else if (r == 0) {
                core_lock(cl->core);
                r = obj_insert_locked(k, &d, persistent ? NULL : cl, persistent ? 0 : h, ret);
                core_unlock(cl->core);
                dobj_done(&d);
        }
        pthread_mutex_unlock(&k->lock);
        rv = rv_from_errno(r);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        if (persistent)
                audit_object(cl, k, tmpl, n, false, rv);
out:
        session_put(s);
        return rv;
}

CK_RV core_destroy_object(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        if ((rv = tok_load(k)) != CKR_OK)
                goto out;
        bool user = is_user(cl, k);
        pthread_mutex_lock(&k->lock);
        core_lock(cl->core);
        struct cobj *o = obj_find_locked(k, obj, cl, user);
        uint64_t id = o ? o->id : 0;
        bool persistent = o && !o->owner;
        bool destroyable = o && nattrs_get_bool(&o->attrs, CKA_DESTROYABLE, true);
        CK_ULONG cls = CKO_DATA;
        char label[65] = "";
        if (o) {
                (void)nattrs_get_ulong(&o->attrs, CKA_CLASS, &cls);
                obj_label_locked(k, obj, label, sizeof label);
        }
        core_unlock(cl->core);
        if (!o)
                rv = CKR_OBJECT_HANDLE_INVALID;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!destroyable)
                rv = CKR_ACTION_PROHIBITED;
        else {
                rv = rv_from_errno(k->ops->destroy_object(k->t, id));
                if (rv == CKR_OK && persistent && k->ops->writes_affect_others)
                        rv = rv_from_errno(tok_reconcile_locked(k));
                else if (rv == CKR_OK) {
                        core_lock(cl->core);
                        for (size_t i = 0; i < k->nobjs; i++)
                                if (k->objs[i]->handle == obj) {
                                        obj_remove_locked(k, k->objs[i]);
                                        break;
                                }
                        core_unlock(cl->core);
                }
        }
        pthread_mutex_unlock(&k->lock);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        if (persistent)
                audit(cl, k, cls == CKO_CERTIFICATE ? "cert-delete" : "object-delete", label, rv, NULL);
out:
        session_put(s);
        return rv;
}

CK_RV core_set_attribute_value(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                               CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
        CK_RV rv = check_template(tmpl, n);
        if (rv != CKR_OK)
                return rv;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        if ((rv = tok_load(k)) != CKR_OK)
                goto out;
        bool user = is_user(cl, k);
        pthread_mutex_lock(&k->lock);
        core_lock(cl->core);
        struct cobj *o = obj_find_locked(k, obj, cl, user);
        uint64_t id = o ? o->id : 0;
        bool persistent = o && !o->owner;
        bool modifiable = o && nattrs_get_bool(&o->attrs, CKA_MODIFIABLE, true);
        core_unlock(cl->core);
        if (!o)
                rv = CKR_OBJECT_HANDLE_INVALID;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!modifiable)
                rv = CKR_ACTION_PROHIBITED;
        else if (!k->ops->set_attributes)
                rv = CKR_FUNCTION_NOT_SUPPORTED;
        else {
                struct nattrs na;
                nattrs_init(&na);
                int r = k->ops->set_attributes(k->t, id, tmpl, n, &na);
                if (r == -EINVAL)
                        r = -EDOM; /* a bad value, not an inconsistent template */
                rv = rv_from_errno(r);
                if (rv == CKR_OK) {
                        core_lock(cl->core);
                        for (size_t i = 0; i < k->nobjs; i++)
                                if (k->objs[i]->handle == obj) {
                                        nattrs_done(&k->objs[i]->attrs);
                                        k->objs[i]->attrs = na;
                                        nattrs_init(&na);
                                        break;
                                }
                        core_unlock(cl->core);
                }
                nattrs_done(&na);
        }
        pthread_mutex_unlock(&k->lock);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
out:
        session_put(s);
        return rv;
}

CK_RV core_generate_key_pair(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                             CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_n, CK_ATTRIBUTE_PTR priv_tmpl,
                             CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR ret_pub, CK_OBJECT_HANDLE_PTR ret_priv) {
        if (!mech || !ret_pub || !ret_priv)
                return CKR_ARGUMENTS_BAD;
        CK_RV rv = check_template(pub_tmpl, pub_n);
        if (rv == CKR_OK)
                rv = check_template(priv_tmpl, priv_n);
        if (rv != CKR_OK)
                return rv;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        const CK_MECHANISM_INFO *mi = mech_lookup(k, mech->mechanism);
        bool persistent = tmpl_bool(pub_tmpl, pub_n, CKA_TOKEN, false) || tmpl_bool(priv_tmpl, priv_n, CKA_TOKEN, false);
        if (!mi || !(mi->flags & CKF_GENERATE_KEY_PAIR) || !k->ops->generate_key_pair)
                rv = CKR_MECHANISM_INVALID;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!is_user(cl, k))
                rv = CKR_USER_NOT_LOGGED_IN;
        else
                rv = tok_load(k);
        if (rv != CKR_OK)
                goto out;
        struct dobj pub, priv;
        memset(&pub, 0, sizeof pub);
        memset(&priv, 0, sizeof priv);
        pthread_mutex_lock(&k->lock);
        int r = k->ops->generate_key_pair(k->t, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, &pub, &priv);
        if (r == 0 && k->ops->writes_affect_others) {
                r = tok_reconcile_locked(k);
                core_lock(cl->core);
                *ret_pub = handle_of_id_locked(k, pub.id);
                *ret_priv = handle_of_id_locked(k, priv.id);
                core_unlock(cl->core);
                if (r == 0 && (!*ret_pub || !*ret_priv))
                        r = -EIO;
        } else if (r == 0) {
                bool pub_tok = tmpl_bool(pub_tmpl, pub_n, CKA_TOKEN, false);
                bool priv_tok = tmpl_bool(priv_tmpl, priv_n, CKA_TOKEN, false);
                core_lock(cl->core);
                r = obj_insert_locked(k, &pub, pub_tok ? NULL : cl, pub_tok ? 0 : h, ret_pub);
                if (r == 0)
                        r = obj_insert_locked(k, &priv, priv_tok ? NULL : cl, priv_tok ? 0 : h, ret_priv);
                core_unlock(cl->core);
        }
        dobj_done(&pub);
        dobj_done(&priv);
        pthread_mutex_unlock(&k->lock);
        rv = rv_from_errno(r);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        audit_object(cl, k, priv_tmpl, priv_n, true, rv);
out:
        session_put(s);
        return rv;
}

/* ------------------------------------------------------------ operations */

static CK_FLAGS op_flag(enum op_kind kind) {
        switch (kind) {
        case OP_SIGN: return CKF_SIGN;
        case OP_VERIFY: return CKF_VERIFY;
        case OP_ENCRYPT: return CKF_ENCRYPT;
        case OP_DECRYPT: return CKF_DECRYPT;
        default: return CKF_DIGEST;
        }
}

static CK_ATTRIBUTE_TYPE op_attr(enum op_kind kind) {
        switch (kind) {
        case OP_SIGN: return CKA_SIGN;
        case OP_VERIFY: return CKA_VERIFY;
        case OP_ENCRYPT: return CKA_ENCRYPT;
        default: return CKA_DECRYPT;
        }
}

static bool mech_key_type_ok(CK_MECHANISM_TYPE raw, CK_KEY_TYPE kt) {
        switch (raw) {
        case CKM_RSA_PKCS:
        case CKM_RSA_X_509:
        case CKM_RSA_PKCS_PSS:
        case CKM_RSA_PKCS_OAEP:
                return kt == CKK_RSA;
        case CKM_ECDSA:
                return kt == CKK_EC;
        default:
                return false;
        }
}

/* Sets up an operation: checks the mechanism and key, fills *o. */
static CK_RV op_setup(struct core_client *cl, struct session *s, enum op_kind kind, const CK_MECHANISM *mech,
                      CK_OBJECT_HANDLE key, struct op *o) {
        struct tok *k = s->tok;
        const CK_MECHANISM_INFO *mi = mech_lookup(k, mech->mechanism);
        if (!mi || !(mi->flags & op_flag(kind)))
                return CKR_MECHANISM_INVALID;
        if (mech->ulParameterLen && !mech->pParameter)
                return CKR_ARGUMENTS_BAD;
        CK_MECHANISM_TYPE h_, raw_ = mech->mechanism;
        pkc_combined_mech(mech->mechanism, &h_, &raw_);
        if (raw_ == CKM_RSA_PKCS_PSS && mech->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
                return CKR_MECHANISM_PARAM_INVALID;
        if (raw_ == CKM_RSA_PKCS_OAEP) {
                /* Only an empty label: the copy kept below must hold no pointer. */
                const CK_RSA_PKCS_OAEP_PARAMS *op = mech->pParameter;
                if (mech->ulParameterLen != sizeof *op || op->ulSourceDataLen != 0)
                        return CKR_MECHANISM_PARAM_INVALID;
        }
        o->mech = mech->mechanism;
        o->raw = mech->mechanism;
        if (kind == OP_DIGEST) {
                o->md = mbedtls_md_info_from_type(pkc_md_type(mech->mechanism));
                if (!o->md)
                        return CKR_MECHANISM_INVALID;
        } else {
                CK_MECHANISM_TYPE hash;
                if (pkc_combined_mech(mech->mechanism, &hash, &o->raw)) {
                        if (kind != OP_SIGN && kind != OP_VERIFY)
                                return CKR_MECHANISM_INVALID;
                        o->md = mbedtls_md_info_from_type(pkc_md_type(hash));
                        if (!o->md)
                                return CKR_MECHANISM_INVALID;
                }
        }
        if (o->md) {
                mbedtls_md_init(&o->mdctx);
                o->md_started = true;
                if (mbedtls_md_setup(&o->mdctx, o->md, 0) != 0 || mbedtls_md_starts(&o->mdctx) != 0)
                        return CKR_HOST_MEMORY;
        }
        if (mech->ulParameterLen) {
                o->param = malloc(mech->ulParameterLen);
                if (!o->param)
                        return CKR_HOST_MEMORY;
                memcpy(o->param, mech->pParameter, mech->ulParameterLen);
                o->param_len = mech->ulParameterLen;
        }
        nbuf_init(&o->data, MAX_ACCUMULATE);
        o->data.secure = true;
        if (kind == OP_DIGEST)
                return CKR_OK;

        CK_RV rv = tok_load(k);
        if (rv != CKR_OK)
                return rv;
        bool user = is_user(cl, k);
        core_lock(cl->core);
        struct cobj *ko = obj_find_locked(k, key, cl, user);
        CK_ULONG cls = 0, kt = 0;
        bool allowed = false, priv = false;
        struct nattrs attrs;
        nattrs_init(&attrs);
        if (ko) {
                nattrs_get_ulong(&ko->attrs, CKA_CLASS, &cls);
                nattrs_get_ulong(&ko->attrs, CKA_KEY_TYPE, &kt);
                allowed = nattrs_get_bool(&ko->attrs, op_attr(kind), true);
                priv = nattrs_get_bool(&ko->attrs, CKA_PRIVATE, false);
                o->always_auth = nattrs_get_bool(&ko->attrs, CKA_ALWAYS_AUTHENTICATE, false);
                o->key_id = ko->id;
                if (kind == OP_VERIFY || kind == OP_ENCRYPT)
                        rv = nattrs_copy(&attrs, &ko->attrs) < 0 ? CKR_HOST_MEMORY : CKR_OK;
        }
        core_unlock(cl->core);
        if (!ko)
                return CKR_KEY_HANDLE_INVALID;
        if (rv != CKR_OK)
                goto out;
        o->key = key;
        o->key_type = kt;
        if (kind == OP_SIGN || kind == OP_DECRYPT) {
                if (cls != CKO_PRIVATE_KEY)
                        rv = CKR_KEY_TYPE_INCONSISTENT;
                else if (priv && !user)
                        rv = CKR_USER_NOT_LOGGED_IN;
        } else if (cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
                rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv == CKR_OK && !allowed)
                rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        if (rv == CKR_OK && !mech_key_type_ok(o->raw, kt))
                rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv == CKR_OK && (kind == OP_VERIFY || kind == OP_ENCRYPT)) {
                mbedtls_pk_init(&o->pk);
                o->has_pk = true;
                int r = pkc_pk_from_attrs(&attrs, &o->pk);
                if (r < 0)
                        rv = r == -ENOMEM ? CKR_HOST_MEMORY : CKR_KEY_TYPE_INCONSISTENT;
        }
out:
        nattrs_done(&attrs);
        return rv;
}

static CK_RV op_init(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, CK_MECHANISM_PTR mech,
                     CK_OBJECT_HANDLE key) {
        if (!mech)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct op *o = &s->ops[kind];
        if (o->active) {
                session_put(s);
                return CKR_OPERATION_ACTIVE;
        }
        rv = op_setup(cl, s, kind, mech, key, o);
        if (rv == CKR_OK)
                o->active = true;
        else
                op_reset(o);
        session_put(s);
        return rv;
}

/* Gets the session with an active op of this kind. */
static CK_RV op_get(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, struct session **ret_s,
                    struct op **ret_o) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (!s->ops[kind].active) {
                session_put(s);
                return CKR_OPERATION_NOT_INITIALIZED;
        }
        *ret_s = s;
        *ret_o = &s->ops[kind];
        return CKR_OK;
}

/* The bytes the raw mechanism gets: for a hashing op, the hash (in a
 * DigestInfo for CKM_RSA_PKCS); else the data itself.  in/in_len is the
 * single-part data, or NULL to use what was accumulated / hashed so far. */
static CK_RV op_input(struct op *o, const uint8_t *in, size_t in_len, uint8_t *buf, size_t bufsize,
                      const uint8_t **ret, size_t *ret_len) {
        if (!o->md) {
                if (in) {
                        *ret = in;
                        *ret_len = in_len;
                } else {
                        *ret = o->data.data ? o->data.data : (const uint8_t *)"";
                        *ret_len = o->data.len;
                }
                return CKR_OK;
        }
        uint8_t hash[MBEDTLS_MD_MAX_SIZE];
        size_t hlen = mbedtls_md_get_size(o->md);
        if (in && mbedtls_md_update(&o->mdctx, in, in_len) != 0)
                return CKR_FUNCTION_FAILED;
        if (mbedtls_md_finish(&o->mdctx, hash) != 0)
                return CKR_FUNCTION_FAILED;
        if (o->raw == CKM_RSA_PKCS) {
                CK_MECHANISM_TYPE hm = CKM_SHA256;
                CK_MECHANISM_TYPE raw;
                pkc_combined_mech(o->mech, &hm, &raw);
                size_t n = bufsize;
                if (pkc_digest_info(hm, hash, hlen, buf, &n) < 0)
                        return CKR_FUNCTION_FAILED;
                *ret_len = n;
        } else {
                memcpy(buf, hash, hlen);
                *ret_len = hlen;
        }
        *ret = buf;
        return CKR_OK;
}

static CK_RV op_update(struct op *o, const uint8_t *part, size_t len) {
        if (!part && len)
                return CKR_ARGUMENTS_BAD;
        o->multipart = true;
        if (o->md)
                return mbedtls_md_update(&o->mdctx, part, len) == 0 ? CKR_OK : CKR_FUNCTION_FAILED;
        nbuf_put_raw(&o->data, part, len);
        return nbuf_failed(&o->data) ? CKR_DATA_LEN_RANGE : CKR_OK;
}

/* C_*Update: feeds the operation; out_len (encrypt/decrypt) is set to 0,
 * as RSA gives all its output with the final call.  An error ends it. */
static CK_RV update_run(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, const uint8_t *part,
                        size_t len, CK_ULONG_PTR out_len) {
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, kind, &s, &o);
        if (rv != CKR_OK)
                return rv;
        rv = op_update(o, part, len);
        if (rv != CKR_OK)
                op_reset(o);
        else if (out_len)
                *out_len = 0;
        session_put(s);
        return rv;
}

/* Runs a private-key operation (sign or decrypt) in the driver. */
static int drv_private_op(struct tok *k, enum op_kind kind, struct op *o, const uint8_t *in, size_t in_len,
                          uint8_t *out, size_t *outlen) {
        CK_MECHANISM m = { o->raw, o->param, o->param_len };
        bool lock = !k->ops->parallel_crypto;
        if (lock)
                pthread_mutex_lock(&k->lock);
        int r;
        if (kind == OP_SIGN)
                r = k->ops->sign(k->t, o->key_id, &m, in, in_len, out, outlen);
        else
                r = k->ops->decrypt(k->t, o->key_id, &m, in, in_len, out, outlen);
        if (lock)
                pthread_mutex_unlock(&k->lock);
        return r;
}

/* The token says a logged-in client is not logged in: the card lost its
 * verified state (reset by something else, or power-cycled).  The client's
 * cached PIN, if any, is presented again; true when the token took it.
 * Keys that want the PIN for each use (CKA_ALWAYS_AUTHENTICATE) never come
 * here. */
static bool represent_pin(struct core_client *cl, struct tok *k) {
        if (!is_user(cl, k))
                return false;
        char *pin = NULL;
        size_t len = 0;
        if (cached_pin(cl, k, &pin, &len) != CKR_OK)
                return false;
        pthread_mutex_lock(&k->lock);
        int r = k->ops->login(k->t, CKU_USER, pin, len);
        pthread_mutex_unlock(&k->lock);
        pin_judged(cl, k, r, true, NULL, 0);
        secure_free(pin);
        log_notice("slot %lu: the token had lost its login; the cached PIN was presented again: %s",
                   (unsigned long)k->slot, r == 0 ? "accepted" : "refused");
        audit(cl, k, "login", NULL, rv_from_errno(r), "the token had lost its login: cached PIN presented again");
        return r == 0;
}

/* Shared tail of sign / decrypt (single-part and final): length queries and
 * a too-small buffer keep the operation; anything else ends it. */
static CK_RV private_op(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, const uint8_t *in,
                        size_t in_len, bool final, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len || (!final && !in && in_len))
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, kind, &s, &o);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        bool keep = false;
        if (!final && o->multipart) {
                rv = CKR_OPERATION_ACTIVE;
                keep = true;
                goto out;
        }
        if (!is_user(cl, k)) {
                rv = CKR_USER_NOT_LOGGED_IN;
                goto out;
        }
        if (o->always_auth && !o->context_ok) {
                rv = CKR_USER_NOT_LOGGED_IN;
                keep = true;
                goto out;
        }
        size_t need = 0;
        int r = drv_private_op(k, kind, o, NULL, 0, NULL, &need);
        if (r < 0) {
                rv = rv_from_errno(r);
                goto out;
        }
        if (!out) {
                *out_len = need;
                keep = true;
                goto out;
        }
        uint8_t buf[128];
        const uint8_t *input;
        size_t input_len;
        /* Hashing consumes the digest context: only do it once we know the
         * output fits (length checks above use the key size). */
        if (*out_len < need && kind == OP_SIGN) {
                *out_len = need;
                rv = CKR_BUFFER_TOO_SMALL;
                keep = true;
                goto out;
        }
        rv = op_input(o, final ? NULL : in, in_len, buf, sizeof buf, &input, &input_len);
        if (rv != CKR_OK)
                goto out;
        size_t ol = *out_len;
        r = drv_private_op(k, kind, o, input, input_len, out, &ol);
        if (r == -EPERM && !o->always_auth && represent_pin(cl, k)) {
                ol = *out_len;
                r = drv_private_op(k, kind, o, input, input_len, out, &ol);
        }
        if (r == -ENOBUFS) {
                *out_len = ol;
                rv = CKR_BUFFER_TOO_SMALL;
                keep = !o->md; /* a consumed hash cannot be replayed */
                goto out;
        }
        if (r == -EBADMSG && kind == OP_DECRYPT)
                rv = CKR_ENCRYPTED_DATA_INVALID;
        else if (r == -ERANGE && kind == OP_DECRYPT)
                rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
        else
                rv = rv_from_errno(r);
        if (rv == CKR_OK)
                *out_len = ol;
        explicit_bzero(buf, sizeof buf);
out:
        if (!keep)
                op_reset(o);
        session_put(s);
        return rv;
}

/* private_op, with a usage record for each signature or decryption made or
 * refused (not for length queries and short buffers, which the caller
 * repeats). */
static CK_RV private_op_recorded(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, const uint8_t *in,
                                 size_t in_len, bool final, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        char label[65] = "";
        struct tok *k = NULL;
        struct session *s;
        if (session_get(cl, h, &s) == CKR_OK) {
                core_lock(cl->core);
                k = s->tok;
                k->refs++;
                if (s->ops[kind].active)
                        obj_label_locked(k, s->ops[kind].key, label, sizeof label);
                core_unlock(cl->core);
                session_put(s);
        }
        CK_RV rv = private_op(cl, h, kind, in, in_len, final, out, out_len);
        if (k) {
                if (out && rv != CKR_BUFFER_TOO_SMALL && rv != CKR_SESSION_HANDLE_INVALID)
                        audit(cl, k, kind == OP_SIGN ? "sign" : "decrypt", label, rv, NULL);
                tok_unref(k);
        }
        return rv;
}

CK_RV core_sign_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_SIGN, mech, key);
}

CK_RV core_sign(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                CK_ULONG_PTR sig_len) {
        if (!data && len)
                return CKR_ARGUMENTS_BAD;
        return private_op_recorded(cl, h, OP_SIGN, data ? data : (CK_BYTE_PTR) "", len, false, sig, sig_len);
}

CK_RV core_sign_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
        return update_run(cl, h, OP_SIGN, part, len, NULL);
}

CK_RV core_sign_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
        return private_op_recorded(cl, h, OP_SIGN, NULL, 0, true, sig, sig_len);
}

CK_RV core_decrypt_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_DECRYPT, mech, key);
}

CK_RV core_decrypt(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len) {
        if (!data && len)
                return CKR_ARGUMENTS_BAD;
        return private_op_recorded(cl, h, OP_DECRYPT, data ? data : (CK_BYTE_PTR) "", len, false, out, out_len);
}

CK_RV core_decrypt_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return CKR_ARGUMENTS_BAD;
        return update_run(cl, h, OP_DECRYPT, part, len, out_len);
}

CK_RV core_decrypt_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return private_op_recorded(cl, h, OP_DECRYPT, NULL, 0, true, out, out_len);
}

CK_RV core_verify_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_VERIFY, mech, key);
}

static CK_RV verify_run(struct core_client *cl, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, bool final,
                        const uint8_t *sig, size_t sig_len) {
        if (!sig && sig_len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_VERIFY, &s, &o);
        if (rv != CKR_OK)
                return rv;
        if (!final && o->multipart) {
                session_put(s);
                return CKR_OPERATION_ACTIVE;
        }
        uint8_t buf[128];
        const uint8_t *input;
        size_t input_len;
        rv = op_input(o, final ? NULL : data, len, buf, sizeof buf, &input, &input_len);
        if (rv == CKR_OK) {
                CK_MECHANISM m = { o->raw, o->param, o->param_len };
                int r = pkc_verify(&o->pk, &m, input, input_len, sig ? sig : (const uint8_t *)"", sig_len);
                if (r == -EBADMSG)
                        rv = CKR_SIGNATURE_INVALID;
                else if (r == -ERANGE)
                        rv = CKR_SIGNATURE_LEN_RANGE;
                else
                        rv = rv_from_errno(r);
        }
        op_reset(o);
        session_put(s);
        return rv;
}

CK_RV core_verify(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                  CK_ULONG sig_len) {
        if (!data && len)
                return CKR_ARGUMENTS_BAD;
        return verify_run(cl, h, data ? data : (CK_BYTE_PTR) "", len, false, sig, sig_len);
}

CK_RV core_verify_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
        return update_run(cl, h, OP_VERIFY, part, len, NULL);
}

CK_RV core_verify_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len) {
        return verify_run(cl, h, NULL, 0, true, sig, sig_len);
}

CK_RV core_encrypt_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_ENCRYPT, mech, key);
}

static CK_RV encrypt_run(struct core_client *cl, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, bool final,
                         CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_ENCRYPT, &s, &o);
        if (rv != CKR_OK)
                return rv;
        bool keep = false;
        const uint8_t *in = final ? (o->data.data ? o->data.data : (const uint8_t *)"") : data;
        size_t in_len = final ? o->data.len : len;
        CK_MECHANISM m = { o->raw, o->param, o->param_len };
        size_t ol = out ? *out_len : 0;
        int r = pkc_encrypt(&o->pk, &m, in, in_len, out, &ol);
        if (!out && r == 0) {
                keep = true;
                *out_len = ol;
        } else if (r == -ENOBUFS) {
                keep = true;
                *out_len = ol;
                rv = CKR_BUFFER_TOO_SMALL;
        } else {
                rv = rv_from_errno(r);
                if (rv == CKR_OK)
                        *out_len = ol;
        }
        if (!keep)
                op_reset(o);
        session_put(s);
        return rv;
}

CK_RV core_encrypt(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len) {
        if (!data && len)
                return CKR_ARGUMENTS_BAD;
        return encrypt_run(cl, h, data ? data : (CK_BYTE_PTR) "", len, false, out, out_len);
}

CK_RV core_encrypt_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return CKR_ARGUMENTS_BAD;
        return update_run(cl, h, OP_ENCRYPT, part, len, out_len);
}

CK_RV core_encrypt_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return encrypt_run(cl, h, NULL, 0, true, out, out_len);
}

CK_RV core_digest_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech) {
        return op_init(cl, h, OP_DIGEST, mech, CK_INVALID_HANDLE);
}

static CK_RV digest_run(struct core_client *cl, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, bool final,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_DIGEST, &s, &o);
        if (rv != CKR_OK)
                return rv;
        size_t need = mbedtls_md_get_size(o->md);
        if (!final && o->multipart) {
                session_put(s);
                return CKR_OPERATION_ACTIVE;
        }
        if (!out) {
                *out_len = need;
                session_put(s);
                return CKR_OK;
        }
        if (*out_len < need) {
                *out_len = need;
                session_put(s);
                return CKR_BUFFER_TOO_SMALL;
        }
        if (!final && mbedtls_md_update(&o->mdctx, data, len) != 0)
                rv = CKR_FUNCTION_FAILED;
        else if (mbedtls_md_finish(&o->mdctx, out) != 0)
                rv = CKR_FUNCTION_FAILED;
        else
                *out_len = need;
        op_reset(o);
        session_put(s);
        return rv;
}

CK_RV core_digest(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len) {
        if (!data && len)
                return CKR_ARGUMENTS_BAD;
        return digest_run(cl, h, data ? data : (CK_BYTE_PTR) "", len, false, out, out_len);
}

CK_RV core_digest_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
        return update_run(cl, h, OP_DIGEST, part, len, NULL);
}

CK_RV core_digest_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return digest_run(cl, h, NULL, 0, true, out, out_len);
}

CK_RV core_generate_random(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len) {
        if (!out && len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        int r;
        if (k->ops->random) {
                pthread_mutex_lock(&k->lock);
                r = k->ops->random(k->t, out, len);
                pthread_mutex_unlock(&k->lock);
        } else
                r = pkc_random(out, len);
        session_put(s);
        return rv_from_errno(r);
}

CK_RV core_seed_random(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len) {
        if (!seed && len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        session_put(s);
        /* The DRBG reseeds itself from the OS; extra seed material is mixed in. */
        return rv_from_errno(pkc_seed(seed, len));
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
                for (struct session *s = cl->sessions; s; s = s->next)
                        if (s->h == h && !s->closed) {
                                k = s->tok;
                                slot = s->slot;
                                break;
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
