/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers, PINs and logins: C_InitToken,
 * C_InitPIN, C_SetPIN, C_Login, C_Logout, the PIN cache and PIN entry, and
 * the rate limit of failed logins.  See core.h, and core-internal.h for the
 * locks and the state the files share. */
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


/* ------------------------------------------------------------------ PINs */

static CK_RV check_pin_arg(CK_UTF8CHAR_PTR pin, CK_ULONG len) {
        if (!pin && len)
                return CKR_ARGUMENTS_BAD;
        if (len > 256)
                return CKR_PIN_LEN_RANGE;
        /* No PIN holds a NUL: a C string would cut it (issue 23 item 9). */
        if (pin && memchr(pin, 0, len))
                return CKR_PIN_INVALID;
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
        tok_lock(k);
        int r = k->ops->init_token(k->t, (const char *)pin, pin_len, lbl);
        if (r == 0) {
                core_lock(c);
                tok_free_objs(k);
                core_unlock(c);
        }
        tok_unlock(k);
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
                tok_lock(k);
                rv = rv_from_errno(k->ops->init_pin(k->t, (const char *)pin, pin_len));
                tok_unlock(k);
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
                tok_lock(k);
                rv = rv_from_errno(k->ops->set_pin(k->t, u, (const char *)old_pin, old_len,
                                                   (const char *)new_pin, new_len));
                tok_unlock(k);
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
CK_RV cached_pin(struct core_client *cl, struct tok *k, char **ret, size_t *ret_len) {
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
void pin_judged(struct core_client *cl, struct tok *k, int r, bool from_cache, const char *pin,
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

/* C_Login(CKU_CONTEXT_SPECIFIC): the PIN again, right before a signature
 * or decryption with a key that wants it for each use. */
static CK_RV login_context(struct core_client *cl, struct session *s, CK_USER_TYPE cur, CK_UTF8CHAR_PTR pin,
                           CK_ULONG pin_len) {
        struct tok *k = s->tok;
        struct op *o = NULL;
        for (enum op_kind kind = 0; kind < _OP_MAX && !o; kind++)
                if (op_kind_private(kind) && s->ops[kind].active)
                        o = &s->ops[kind];
        if (!o)
                return CKR_OPERATION_NOT_INITIALIZED;
        if (cur != CKU_USER)
                return CKR_USER_NOT_LOGGED_IN;
        /* Keys that want the PIN for each use are served from the cache
         * only when the policy says so. */
        _cleanup_secure_free_ char *cpin = NULL;
        size_t clen = 0;
        if (!pin) {
                struct pincache_policy pol;
                pincache_get_policy(cl->core->pins, &pol);
                CK_RV rv = pol.always_authenticate ? cached_pin(cl, k, &cpin, &clen) : CKR_ARGUMENTS_BAD;
                if (rv != CKR_OK)
                        return rv;
        }
        const char *p = cpin ? cpin : (const char *)pin;
        size_t n = cpin ? clen : pin_len;
        tok_lock(k);
        int r = k->ops->login(k->t, CKU_CONTEXT_SPECIFIC, p, n);
        tok_unlock(k);
        if (cpin)
                pin_judged(cl, k, r, true, NULL, 0);
        CK_RV rv = rv_from_errno(r);
        audit_login(cl, k, CKU_CONTEXT_SPECIFIC, rv, cpin != NULL);
        if (rv == CKR_OK)
                o->context_ok = true;
        return rv;
}

/* A read-only session of this client on k (CKR_SESSION_READ_ONLY_EXISTS
 * for an SO login). */
static bool has_ro_session(struct core_client *cl, struct tok *k) {
        bool ro = false;
        core_lock(cl->core);
        for (struct session *o = cl->sessions; o; o = o->next)
                if (o->tok == k && !(o->flags & CKF_RW_SESSION))
                        ro = true;
        core_unlock(cl->core);
        return ro;
}

/* Records a login of cl on k (under k->lock, after the driver took the
 * PIN).  0 or -ENOMEM. */
static int login_add(struct core_client *cl, struct tok *k, CK_USER_TYPE user) {
        struct login *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        core_lock(cl->core);
        l->tok = k;
        l->user = user;
        l->next = cl->logins;
        cl->logins = l;
        k->refs++;
        if (user == CKU_SO)
                k->so_logins++;
        else
                k->user_logins++;
        core_unlock(cl->core);
        return 0;
}

/* Under the token lock, right before the driver gets the PIN: another
 * login of cl on the token may have ended meanwhile (several sessions log
 * in at once), so its state is looked at again; and the rate limit (see
 * login_fail_check) refuses the same refused PIN again.  Both here, not
 * before the lock, so that the same PIN arriving on many sessions at once
 * reaches the token once.  CKR_OK: go on. */
static CK_RV login_precheck_locked(struct core_client *cl, struct session *s, CK_USER_TYPE user,
                                   CK_UTF8CHAR_PTR pin, CK_ULONG pin_len) {
        struct tok *k = s->tok;
        CK_USER_TYPE cur = login_state(cl, k);
        if (cur == user)
                return CKR_USER_ALREADY_LOGGED_IN;
        if (cur != (CK_USER_TYPE)-1)
                return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        if (pin && login_fail_check(cl, k, user, pin, pin_len, true, false)) {
                log_debug(LOG_SUB_CORE, "login slot %lu pid %d: same refused PIN again, not sent to the token",
                          (unsigned long)s->slot, (int)cl->peer.pid);
                return CKR_PIN_INCORRECT;
        }
        return CKR_OK;
}

CK_RV core_login(struct core_client *cl, CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                 CK_ULONG pin_len) {
        CK_RV rv = check_pin_arg(pin, pin_len);
        if (rv != CKR_OK)
                return rv;
        if (user != CKU_SO && user != CKU_USER && user != CKU_CONTEXT_SPECIFIC)
                return CKR_USER_TYPE_INVALID;
        _cleanup_session_ struct session *s = NULL;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        CK_USER_TYPE cur = login_state(cl, k);

        if (user == CKU_CONTEXT_SPECIFIC)
                return login_context(cl, s, cur, pin, pin_len);
        if (cur == user)
                return CKR_USER_ALREADY_LOGGED_IN;
        if (cur != (CK_USER_TYPE)-1)
                return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        if (user == CKU_SO && has_ro_session(cl, k))
                return CKR_SESSION_READ_ONLY_EXISTS;
        /* A NULL PIN: the cached one (user logins only; the SO PIN is
         * never cached). */
        _cleanup_secure_free_ char *cpin = NULL;
        size_t clen = 0;
        enum pin_source src = PIN_FROM_CLIENT;
        if (!pin) {
                rv = user == CKU_USER ? null_pin(cl, k, &cpin, &clen, &src) : CKR_ARGUMENTS_BAD;
                if (rv != CKR_OK) {
                        if (rv != CKR_ARGUMENTS_BAD)
                                audit_login(cl, k, user, rv, false);
                        return rv;
                }
        }
        const char *use_pin = cpin ? cpin : (const char *)pin;
        size_t use_len = cpin ? clen : pin_len;
        tok_lock(k);
        if ((rv = login_precheck_locked(cl, s, user, pin, pin_len)) != CKR_OK) {
                tok_unlock(k);
                return rv;
        }
        int r = k->ops->login(k->t, user, use_pin, use_len);
        if (pin)
                login_fail_check(cl, k, user, pin, pin_len, false, rv_from_errno(r) == CKR_PIN_INCORRECT);
        if (user == CKU_USER)
                pin_judged(cl, k, r, src == PIN_FROM_CACHE, use_pin, use_len);
        if (r == 0)
                r = login_add(cl, k, user);
        tok_unlock(k);
        rv = rv_from_errno(r);
        log_debug(LOG_SUB_CORE, "login slot %lu user %lu pid %d: rv 0x%lx", (unsigned long)s->slot,
                  (unsigned long)user, (int)cl->peer.pid, (unsigned long)rv);
        audit_login(cl, k, user, rv, src == PIN_FROM_CACHE);
        emit(cl->core, WIRE_EV_TOKEN_CHANGED, s->slot);
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
