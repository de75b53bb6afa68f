/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The core's own state, shared by its files (daemon/core*.c) and by
 * nothing else: the daemon's other parts use core.h.
 *
 * Locks, in the only order they are ever taken:
 *   session->mu  (one call at a time per session)
 *   tok->lock    (one driver call at a time per token; see driver.h)
 *   core->lock   (the tables: slots, clients, sessions, object caches,
 *                 login counts; held only briefly, never across a driver call)
 * Tokens and sessions are reference counted so that a removal or a close
 * racing with a call in flight frees them only after the call.
 *
 * Files: core.c (errors, events, clients, scheduling), core-registry.c
 * (slots and tokens), core-session.c, core-login.c (PINs, PIN cache, rate
 * limit), core-objects.c, core-crypto.c (mechanisms and operations);
 * process lookups are daemon/peer.c's. */
#pragma once

#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <pthread.h>

#include "common/buffer.h"
#include "common/attrs.h"
#include "core.h"

#define CORE_MAX_SESSIONS 4096     /* per client, the default of NETCA_MAX_SESSIONS */
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

enum op_kind { OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT, OP_DIGEST, OP_SIGN_RECOVER, OP_VERIFY_RECOVER, _OP_MAX };
/* Operations with the private key (run by the driver), with the public key
 * (run here). */
static inline bool op_kind_private(enum op_kind k) {
        return k == OP_SIGN || k == OP_DECRYPT || k == OP_SIGN_RECOVER;
}
static inline bool op_kind_public(enum op_kind k) {
        return k == OP_VERIFY || k == OP_ENCRYPT || k == OP_VERIFY_RECOVER;
}

struct op {
        bool active;
        CK_MECHANISM_TYPE mech;   /* what the client asked for */
        CK_MECHANISM_TYPE raw;    /* what the driver / pkcrypto runs */
        uint8_t *param;
        size_t param_len;
        CK_OBJECT_HANDLE key;
        uint64_t key_id;
        CK_KEY_TYPE key_type;
        bool key_private;          /* CKA_PRIVATE: using the key needs a login */
        bool secret;               /* a secret key: the driver runs the operation, whatever its kind */
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
        struct session *prev;
        struct session *hnext;     /* in the core's hash chain (core->stab) */
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

/* A session closed because its token was removed, remembered so that a
 * request that was queued for it meanwhile answers CKR_DEVICE_REMOVED. */
#define GONE_SESSIONS_MAX 256
struct gone_session {
        CK_SESSION_HANDLE h;
        uint64_t removed;          /* core_arrival_now() at the removal */
};

struct core_client {
        struct core *core;
        struct core_peer peer;
        struct session *sessions;
        unsigned nsessions;        /* in the list; at most core->max_sessions */
        struct login *logins;
        struct core_client *next;
        struct gone_session *gone; /* ring of GONE_SESSIONS_MAX, made on first removal */
        size_t gone_next;
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
        struct session **stab;    /* every open session by handle: stab_cap chains (a power of 2) */
        size_t stab_cap, stab_n;
        unsigned max_sessions;    /* per client (NETCA_MAX_SESSIONS) */
        CK_OBJECT_HANDLE next_object;
        core_event_fn event_fn;
        void *event_ud;
        struct pincache *pins;    /* daemon/pincache.h; never NULL after core_new */
        core_audit_fn audit_fn;
        void *audit_ud;
        struct core_pin_entry pin_entry;  /* under the core lock */
        struct login_fails login_fails;   /* its own lock */
};



/* ---- shared between the core's files ---- */

/* core-crypto.c */
const CK_MECHANISM_INFO *mech_lookup(const struct tok *k, CK_MECHANISM_TYPE type);
int tok_build_mechs(struct tok *k);
/* The parameter of a secret-key mechanism is right (true for others). */
bool sym_param_ok(const CK_MECHANISM *m);
/* core-login.c */
CK_RV cached_pin(struct core_client *cl, struct tok *k, char **ret, size_t *ret_len);
void pin_judged(struct core_client *cl, struct tok *k, int r, bool from_cache, const char *pin, size_t pin_len);
/* core-objects.c */
void destroy_session_objects(struct core *c, struct tok *k, struct core_client *cl, CK_SESSION_HANDLE only);
struct cobj *obj_find_locked(struct tok *k, CK_OBJECT_HANDLE h, struct core_client *cl, bool user);
CK_RV tok_load(struct tok *k);
/* core-registry.c */
bool login_drop_locked(struct core_client *cl, struct tok *k);
/* Under the core lock: remembers that session h went with its token. */
void session_gone_locked(struct core_client *cl, CK_SESSION_HANDLE h, uint64_t when);
struct login *login_find_locked(struct core_client *cl, struct tok *k);
void session_free(struct session *s);
bool session_unlink_locked(struct session *s);
/* core-session.c */
/* Under the core lock: the open session h of cl, or NULL (O(1): a hash). */
struct session *session_find_locked(struct core_client *cl, CK_SESSION_HANDLE h);
bool is_user(struct core_client *cl, struct tok *k);
CK_USER_TYPE login_state(struct core_client *cl, struct tok *k);
void op_reset(struct op *o);
CK_RV session_get(struct core_client *cl, CK_SESSION_HANDLE h, struct session **ret);
void session_put(struct session *s);
void session_release_ops(struct session *s);
/* For _cleanup_session_: a session from session_get() is put back on every
 * way out of the scope that holds it; TAKE_PTR() hands it on. */
static inline void session_putp(struct session **s) {
        if (*s)
                session_put(*s);
}
#define _cleanup_session_ __attribute__((cleanup(session_putp)))
/* core.c */
void audit(struct core_client *cl, struct tok *k, const char *op, const char *object, CK_RV rv, const char *reason);
void audit_login(struct core_client *cl, struct tok *k, CK_USER_TYPE user, CK_RV rv, bool from_cache);
void audit_object(struct core_client *cl, struct tok *k, const CK_ATTRIBUTE *t, CK_ULONG n, bool keygen, CK_RV rv);
void cobj_free(struct cobj *o);
void core_lock(struct core *c);
void core_unlock(struct core *c);
void emit(struct core *c, enum wire_event ev, CK_SLOT_ID slot);
bool kind_protected(struct core *c, const char *kind);
void obj_label_locked(struct tok *k, CK_OBJECT_HANDLE h, char *buf, size_t cap);
void session_finish_close(struct core *c, struct session *s, bool do_free);
struct slot *slot_find_locked(struct core *c, CK_SLOT_ID id);
void tok_free_objs(struct tok *k);
CK_RV tok_get(struct core *c, CK_SLOT_ID id, struct tok **ret);
void tok_logout_if_idle(struct tok *k);
void tok_unref(struct tok *k);
void tok_unref_locked(struct tok *k);
/* core-registry.c: the token lock's one owner.  Nothing else touches
 * tok->lock: a driver call that needs it (every call but get_info(), and
 * sign/decrypt of a parallel_crypto driver) runs between tok_lock() and
 * tok_unlock(), or in a scope that holds it:
 *     _cleanup_tok_unlock_ struct tok *held = tok_lock(k);
 * with tok_unlock(TAKE_PTR(held)) to let it go early.  The mutex checks
 * its owner: an unlock by a thread that does not hold it, or a second
 * lock by the thread that does, aborts instead of corrupting the token. */
void tok_lock_init(struct tok *k);
void tok_lock_done(struct tok *k);
struct tok *tok_lock(struct tok *k);
void tok_unlock(struct tok *k);
static inline void tok_unlockp(struct tok **k) {
        if (*k)
                tok_unlock(*k);
}
#define _cleanup_tok_unlock_ __attribute__((cleanup(tok_unlockp)))
