/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIN cache through the daemon's core, on a real soft token: C_Login
 * with a NULL PIN served to the process that entered the PIN (and, in
 * session scope, to its session), refused to others, and every flush the
 * core does: PIN change, unblock, a cached PIN the token refuses, token
 * removal, CKA_ALWAYS_AUTHENTICATE keys.  Per-process login too: one
 * client's login does not log another in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core.h"
#include "daemon/pincache.h"
#include "drivers/soft/soft.h"
#include "testutil.h"

#define PIN(s) (CK_UTF8CHAR_PTR)(s), (CK_ULONG)strlen(s)

static struct core *core;
static CK_SLOT_ID slot;
static struct token *tok_raw; /* the driver's token, to change its PIN behind the core */

static struct core_client *client(pid_t pid, unsigned long long start, const char *session) {
        struct core_peer p = { .pid = pid, .uid = getuid(), .start_time = start };
        snprintf(p.session, sizeof p.session, "%s", session);
        struct core_client *cl;
        if (core_client_new(core, &p, &cl) < 0)
                exit(1);
        return cl;
}

static CK_SESSION_HANDLE open_rw(struct core_client *cl) {
        CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
        CHECK_RV(core_open_session(cl, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, &h), CKR_OK);
        return h;
}

/* C_Login(CKU_USER, NULL) then, if it worked, C_Logout. */
static CK_RV null_login(struct core_client *cl, CK_SESSION_HANDLE h) {
        CK_RV rv = core_login(cl, h, CKU_USER, NULL, 0);
        if (rv == CKR_OK)
                CHECK_RV(core_logout(cl, h), CKR_OK);
        return rv;
}

static void set_scope(enum pincache_scope scope, bool always_auth) {
        struct pincache_policy p;
        pincache_policy_default(&p);
        p.scope = scope;
        p.always_authenticate = always_auth;
        pincache_set_policy(core_pin_cache(core), &p);
}

int main(void) {
        char *dir = tu_mkdtemp("pincore");
        char *path = NULL;
        CK_SESSION_HANDLE ha, hb, hc;
        if (soft_token_create(dir, "pins", TU_USER_PIN, strlen(TU_USER_PIN), TU_SO_PIN, strlen(TU_SO_PIN), 0,
                              &path) < 0 ||
            soft_token_open(path, &tok_raw) < 0 || core_new(&core) < 0 ||
            core_add_token(core, &soft_ops, tok_raw, "soft:pins", &slot) < 0) {
                fprintf(stderr, "FATAL: setup\n");
                return 1;
        }
        /* Processes: a and a2 are the same process (two connections);
         * a_reused has a's pid but started later; b shares a's session. */
        struct core_client *a = client(1000, 50, "s1"), *a2 = client(1000, 50, "s1");
        struct core_client *a_reused = client(1000, 77, "s1"), *b = client(2000, 60, "s1");
        struct core_client *other = client(3000, 70, "s2");
        ha = open_rw(a);
        hb = open_rw(b);
        hc = open_rw(other);
        CK_SESSION_HANDLE ha2 = open_rw(a2), har = open_rw(a_reused);

        /* Nothing cached yet: a NULL PIN is refused. */
        CHECK_RV(null_login(a, ha), CKR_ARGUMENTS_BAD);

        /* Per-process login: a's login is not b's. */
        CHECK_RV(core_login(a, ha, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        CK_SESSION_INFO si;
        CHECK_RV(core_get_session_info(b, hb, &si), CKR_OK);
        CHECK(si.state == CKS_RW_PUBLIC_SESSION);
        CHECK_RV(core_logout(a, ha), CKR_OK);

        /* Process scope: a (any connection) is served; b, the pid reused
         * by another process, and another session are not. */
        CHECK_RV(null_login(a, ha), CKR_OK);
        CHECK_RV(null_login(a2, ha2), CKR_OK);
        CHECK_RV(null_login(b, hb), CKR_ARGUMENTS_BAD);
        CHECK_RV(null_login(a_reused, har), CKR_ARGUMENTS_BAD);
        CHECK_RV(null_login(other, hc), CKR_ARGUMENTS_BAD);
        /* The SO PIN is never served from the cache. */
        CHECK_RV(core_login(a, ha, CKU_SO, NULL, 0), CKR_ARGUMENTS_BAD);

        /* Session scope (the policy change flushes): b is served after a
         * entered the PIN, other (another session) is not. */
        set_scope(PINCACHE_SCOPE_SESSION, false);
        CHECK_RV(null_login(b, hb), CKR_ARGUMENTS_BAD);
        CHECK_RV(core_login(a, ha, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        CHECK_RV(core_logout(a, ha), CKR_OK);
        CHECK_RV(null_login(b, hb), CKR_OK);
        CHECK_RV(null_login(a_reused, har), CKR_OK);
        CHECK_RV(null_login(other, hc), CKR_ARGUMENTS_BAD);
        set_scope(PINCACHE_SCOPE_PROCESS, false);

        /* PIN change flushes (and the new PIN is cached when next entered). */
        CHECK_RV(core_login(a, ha, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        CHECK_RV(core_set_pin(a, ha, PIN(TU_USER_PIN), PIN("654321")), CKR_OK);
        CHECK_RV(core_logout(a, ha), CKR_OK);
        CHECK_RV(null_login(a, ha), CKR_ARGUMENTS_BAD);
        CHECK_RV(core_login(a, ha, CKU_USER, PIN("654321")), CKR_OK);
        CHECK_RV(core_logout(a, ha), CKR_OK);
        CHECK_RV(null_login(a, ha), CKR_OK);

        /* Unblock / reset by the SO (C_InitPIN) flushes. */
        CHECK_RV(core_login(b, hb, CKU_SO, PIN(TU_SO_PIN)), CKR_OK);
        CHECK_RV(core_init_pin(b, hb, PIN(TU_USER_PIN)), CKR_OK);
        CHECK_RV(core_logout(b, hb), CKR_OK);
        CHECK_RV(null_login(a, ha), CKR_ARGUMENTS_BAD);

        /* A cached PIN the token refuses (changed behind the daemon's
         * back) is dropped at once: one refusal, not one per call. */
        CHECK_RV(core_login(a, ha, CKU_USER, PIN(TU_USER_PIN)), CKR_OK);
        CHECK_RV(core_logout(a, ha), CKR_OK);
        CHECK(soft_ops.set_pin(tok_raw, CKU_USER, TU_USER_PIN, strlen(TU_USER_PIN), "111111", 6) == 0);
        CHECK_RV(null_login(a, ha), CKR_PIN_INCORRECT);
        CHECK_RV(null_login(a, ha), CKR_ARGUMENTS_BAD);
        CHECK_RV(core_login(a, ha, CKU_USER, PIN("111111")), CKR_OK);

        /* CKA_ALWAYS_AUTHENTICATE: a key that wants the PIN each time is
         * not served from the cache unless the policy says so. */
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_BBOOL tru = CK_TRUE;
        CK_ATTRIBUTE pubt[] = { { CKA_EC_PARAMS, (void *)p256, sizeof p256 }, { CKA_TOKEN, &tru, 1 } };
        CK_ATTRIBUTE privt[] = { { CKA_TOKEN, &tru, 1 }, { CKA_PRIVATE, &tru, 1 }, { CKA_SIGN, &tru, 1 },
                                 { CKA_ALWAYS_AUTHENTICATE, &tru, 1 } };
        CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 }, ecdsa = { CKM_ECDSA, NULL, 0 };
        CK_OBJECT_HANDLE pub, priv;
        CHECK_RV(core_generate_key_pair(a, ha, &gen, pubt, 2, privt, 4, &pub, &priv), CKR_OK);
        uint8_t hash[32] = { 1 }, sig[128];
        CK_ULONG slen = sizeof sig;
        CHECK_RV(core_sign_init(a, ha, &ecdsa, priv), CKR_OK);
        CHECK_RV(core_login(a, ha, CKU_CONTEXT_SPECIFIC, NULL, 0), CKR_ARGUMENTS_BAD);
        CHECK_RV(core_sign(a, ha, hash, sizeof hash, sig, &slen), CKR_USER_NOT_LOGGED_IN);
        /* With the setting on (the change flushed the cache: enter it
         * again), on a fresh session of the same client. */
        set_scope(PINCACHE_SCOPE_PROCESS, true);
        CK_SESSION_HANDLE ha3 = open_rw(a);
        CHECK_RV(core_logout(a, ha3), CKR_OK);
        CHECK_RV(core_login(a, ha3, CKU_USER, PIN("111111")), CKR_OK);
        CHECK_RV(core_sign_init(a, ha3, &ecdsa, priv), CKR_OK);
        CHECK_RV(core_login(a, ha3, CKU_CONTEXT_SPECIFIC, NULL, 0), CKR_OK);
        slen = sizeof sig;
        CHECK_RV(core_sign(a, ha3, hash, sizeof hash, sig, &slen), CKR_OK);

        /* Token removal flushes. */
        CK_SLOT_ID s2 = slot;
        struct pincache_policy pol;
        pincache_get_policy(core_pin_cache(core), &pol);
        CHECK(pol.always_authenticate);
        struct pincache_owner ao = { .pid = 1000, .start_time = 50 };
        char buf[64];
        size_t blen;
        CHECK(pincache_get(core_pin_cache(core), "soft:pins", &ao, buf, sizeof buf, &blen) == 0);
        CHECK(core_remove_token(core, s2) == 0);
        CHECK(pincache_get(core_pin_cache(core), "soft:pins", &ao, buf, sizeof buf, &blen) == -ENOENT);

        core_free(core);
        tu_rmrf(dir);
        free(dir);
        free(path);
        if (tu_failures) {
                fprintf(stderr, "%u check(s) failed\n", tu_failures);
                return 1;
        }
        return 0;
}
