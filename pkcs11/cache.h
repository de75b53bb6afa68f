/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the module keeps of the daemon's answers, so that the calls
 * applications make thousands of times (slot list, slot and token info,
 * session info, object searches and attribute reads) are answered without
 * a round trip, and still exactly.
 *
 * Exactness comes from generations, not from time:
 * - epoch: bumped when the connection to the daemon is made or lost and
 *   when a slot is added or removed (pushed events);
 * - per slot, tgen (token and login state: bumped by WIRE_EV_TOKEN_CHANGED)
 *   and ogen (objects: WIRE_EV_OBJECTS_CHANGED);
 * - every call of this process that may change a token's state (login,
 *   logout, sessions opened and closed, objects created, destroyed or
 *   changed, PINs ...) bumps both generations of its slot when it returns.
 * A reader takes a stamp (the generations) before asking the daemon, and its
 * answer is kept only if the stamp still holds when the answer arrives; a
 * kept answer serves while its stamp holds.  So an answer computed before a
 * change is never kept past the event (or the local call) that reports the
 * change, whatever the interleaving of threads, replies and events.  The
 * daemon pushes events after making a change, on the same ordered stream as
 * replies: another process's change is seen here as soon as the reader
 * thread reads its event (microseconds; the issue allows 50 ms).
 *
 * Only used when the transport delivers events as they arrive (the reader
 * thread runs): without it nothing is kept.  NETCA_MODULE_CACHE=0 turns it
 * off for debugging.
 *
 * Objects: one copy per slot of every object this connection can see, as
 * C_GetAttributeValue shows them (sensitive attributes left out), fetched in
 * one request (WIRE_OP_GET_OBJECTS).  Searches whose template names an
 * attribute that is sensitive for some object are left to the daemon.
 *
 * Thread safety: every function may be called from any thread; one mutex. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/attrs.h"
#include "common/p11.h"

struct mcache;

struct mcache_stamp {
        uint64_t epoch, tgen, ogen;
};

int mcache_new(struct mcache **ret);
void mcache_free(struct mcache *c);

/* Invalidation. */
void mcache_bump_all(struct mcache *c);
void mcache_bump_token(struct mcache *c, CK_SLOT_ID slot);
void mcache_bump_objects(struct mcache *c, CK_SLOT_ID slot);
/* Both of a slot: after a local call that may have changed it. */
void mcache_bump_slot(struct mcache *c, CK_SLOT_ID slot);

/* The current stamp of a slot (any slot id; the slot list uses its epoch). */
struct mcache_stamp mcache_stamp(struct mcache *c, CK_SLOT_ID slot);
bool mcache_stamp_valid(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *s);

/* Slot list.  get: true and the PKCS#11 answer in *rv when known. */
bool mcache_get_slot_list(struct mcache *c, CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count, CK_RV *rv);
void mcache_put_slot_list(struct mcache *c, const struct mcache_stamp *s, CK_BBOOL present, const CK_SLOT_ID *list,
                          CK_ULONG n);

bool mcache_get_slot_info(struct mcache *c, CK_SLOT_ID slot, CK_SLOT_INFO *ret);
void mcache_put_slot_info(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *s, const CK_SLOT_INFO *i);
bool mcache_get_token_info(struct mcache *c, CK_SLOT_ID slot, CK_TOKEN_INFO *ret);
void mcache_put_token_info(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *s,
                           const CK_TOKEN_INFO *i);

/* Objects.  put takes the daemon's list (core_get_objects' form); a list
 * that does not parse, or rv != CKR_OK, is remembered as "not available"
 * for this stamp (the calls then go to the daemon). */
void mcache_put_objects(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *s, CK_RV rv,
                        const uint8_t *p, size_t n);
enum mcache_answer {
        MCACHE_MISS,      /* no valid copy: fetch one (or ask the daemon) */
        MCACHE_DAEMON,    /* this question is the daemon's to answer */
        MCACHE_HIT,       /* answered */
};
/* Search: on HIT, *ret (malloc'd) and *ret_n are the matching handles. */
enum mcache_answer mcache_find(struct mcache *c, CK_SLOT_ID slot, const CK_ATTRIBUTE *t, CK_ULONG n,
                               CK_OBJECT_HANDLE **ret, size_t *ret_n);
/* C_GetAttributeValue: on HIT, *rv is the answer and t is filled in. */
enum mcache_answer mcache_get_attributes(struct mcache *c, CK_SLOT_ID slot, CK_OBJECT_HANDLE obj,
                                         CK_ATTRIBUTE *t, CK_ULONG n, CK_RV *rv);

/* Sign mechanisms (pkcs11/module.c's held-back C_SignInit): put records
 * that a C_SignInit with mech succeeded on the slot (kept while the epoch
 * of the stamp, taken before the call, holds: the same token in the slot
 * over the same connection); known says whether one did.  Up to
 * MCACHE_SIGN_MECHS per slot. */
#define MCACHE_SIGN_MECHS 16
void mcache_put_sign_mech(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *st, CK_MECHANISM_TYPE mech);
bool mcache_sign_mech_known(struct mcache *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE mech);

/* The list form, parsed (exposed for the fuzz target). */
struct mcache_obj {
        CK_OBJECT_HANDLE handle;
        struct nattrs attrs;
};
int mcache_parse_objects(const uint8_t *p, size_t n, struct mcache_obj **ret, size_t *ret_n);
void mcache_free_objects(struct mcache_obj *v, size_t n);
