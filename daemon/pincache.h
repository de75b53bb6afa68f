/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIN cache (密码缓存).
 *
 * A PIN that a token accepted is kept, for the token it was entered for and
 * the scope of its owner, so that a later C_Login with a NULL PIN (or a
 * netca-tool command) is served without asking the user again:
 * - scope "process": the entry serves only the process that entered it,
 *   identified by pid and start time (a reused pid is another process);
 * - scope "session": every process of the user in the same login session
 *   (logind's session of the client; without logind, the XDG_SESSION_ID of
 *   the client's environment; a client in no session is served as in
 *   "process" scope).
 * Each use slides the expiry to now + ttl, never past the absolute cap
 * counted from the PIN's entry.  Entries are flushed by the daemon on:
 * token removal, PIN change or unblock, the cached PIN being refused, a
 * policy change, `pin-cache clear`, the owner process going away (process
 * scope), the session's screen lock (session scope), daemon stop.
 *
 * PINs live in secure memory (common/secmem.h: locked, excluded from core
 * dumps, wiped when freed) and never leave this file except into a token's
 * login call: there is no operation that returns a PIN to a client.
 *
 * Time comes from a clock function (monotonic seconds), injectable for
 * tests.  Thread-safe: one mutex. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum pincache_scope {
        PINCACHE_SCOPE_PROCESS,
        PINCACHE_SCOPE_SESSION,
};

struct pincache_policy {
        bool enabled;
        uint64_t ttl;                 /* seconds, > 0 */
        uint64_t max;                 /* seconds from entry, >= ttl */
        enum pincache_scope scope;
        bool always_authenticate;     /* serve CKU_CONTEXT_SPECIFIC logins too */
};

/* The defaults: on, 30 minutes, process scope, 8 hours cap, not for
 * CKA_ALWAYS_AUTHENTICATE keys. */
void pincache_policy_default(struct pincache_policy *p);
/* "30m", "1h", "90s", "2h30m" ... -> seconds; -EINVAL. */
int pincache_parse_duration(const char *s, uint64_t *ret);

/* Who entered or asks for a PIN. */
struct pincache_owner {
        pid_t pid;
        unsigned long long start_time;  /* /proc/<pid>/stat field 22 */
        char session[64];               /* login session id, "" for none */
};

typedef uint64_t (*pincache_clock_fn)(void *userdata);

struct pincache;

/* clock NULL: CLOCK_MONOTONIC seconds. */
int pincache_new(pincache_clock_fn clock, void *clock_userdata, struct pincache **ret);
/* Wipes and frees everything; NULL ok; returns NULL. */
struct pincache *pincache_free(struct pincache *c);

/* A policy change flushes every entry. */
void pincache_set_policy(struct pincache *c, const struct pincache_policy *p);
void pincache_get_policy(struct pincache *c, struct pincache_policy *ret);

/* A PIN the token `token` (a slot key: "soft:...", "usb:<serial>") just
 * accepted from owner.  Replaces the owner's (scope's) earlier entry. */
void pincache_put(struct pincache *c, const char *token, const struct pincache_owner *owner, const char *pin,
                  size_t pin_len);
/* A PIN for owner on token: copied to out (capacity cap), length in
 * *ret_len; the expiry slides.  0, -ENOENT (none, expired, or caching off),
 * -ENOBUFS. */
int pincache_get(struct pincache *c, const char *token, const struct pincache_owner *owner, char *out,
                 size_t cap, size_t *ret_len);

/* Flushes; each returns the number of entries dropped. */
unsigned pincache_flush_token(struct pincache *c, const char *token);
/* The entry that serves owner on token (the token refused it). */
unsigned pincache_flush_entry(struct pincache *c, const char *token, const struct pincache_owner *owner);
unsigned pincache_flush_process(struct pincache *c, pid_t pid, unsigned long long start_time);
unsigned pincache_flush_session(struct pincache *c, const char *session);
unsigned pincache_flush_all(struct pincache *c);
/* Drops the process-scope entries whose process alive() says is gone
 * (the daemon passes peer_alive, daemon/peer.h). */
unsigned pincache_sweep(struct pincache *c, bool (*alive)(pid_t pid, unsigned long long start_time));

/* Status, never the PIN: one callback per live entry (expired ones are
 * dropped first).  expires_in: seconds from now. */
struct pincache_entry_info {
        const char *token;
        enum pincache_scope scope;
        pid_t pid;                   /* process scope */
        const char *session;         /* session scope */
        uint64_t expires_in;
        uint64_t cap_in;             /* seconds until the absolute cap */
};
void pincache_foreach(struct pincache *c, void (*fn)(const struct pincache_entry_info *e, void *ud), void *ud);
