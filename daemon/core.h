/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's core: PKCS#11 semantics over the drivers.
 *
 * Owns the slot table (a token keeps its slot id when it comes back, by its
 * slot key), the object cache (each token's objects are read once with
 * load_objects and served from memory; a write refreshes), sessions, and
 * login state per client (a client is one connection, i.e. one process).
 *
 * Every core_* PKCS#11 function has the semantics of the C_* function of the
 * same name (PKCS#11 2.40), for the given client, including the buffer
 * conventions (NULL output = length query, CKR_BUFFER_TOO_SMALL) and
 * GetAttributeValue's per-attribute rules; it returns a CK_RV.  This is the
 * PKCS#11 edge of the daemon: drivers return -errno, the core translates.
 *
 * Thread safety: every function may be called from any thread at once.  The
 * core holds its own lock for its tables only briefly; driver calls run under
 * the token's lock (see drivers/driver.h), so a slow token never blocks
 * another token or calls that need no token I/O (slot/token/session info,
 * find, attribute reads are answered from memory). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/p11.h"
#include "common/wire.h"
#include "drivers/driver.h"

struct core;
struct core_client;

/* Called (from any thread) for each event to push to clients. */
typedef void (*core_event_fn)(void *userdata, enum wire_event ev, CK_SLOT_ID slot);

struct core_peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        uint64_t start_time;  /* process start time (/proc/pid/stat field 22), 0 unknown */
        char exe[256];        /* executable path, "" unknown */
        char session[64];     /* login session (logind, else the client's XDG_SESSION_ID); ""
                                 unknown: looked up when the PIN cache needs it */
};

int core_new(struct core **ret);
/* The daemon's PIN cache (daemon/pincache.h), owned by the core. */
struct pincache *core_pin_cache(struct core *c);
/* Drops what belongs to processes that are gone (cached PINs of process
 * scope).  Called on a timer and when a client leaves. */
void core_sweep(struct core *c);

/* Collecting PINs: token kinds ("soft", "usb", "ble", "phone") listed in
 * protected_kinds advertise CKF_PROTECTED_AUTHENTICATION_PATH, and a
 * C_Login with a NULL PIN that no cached PIN serves asks the user through
 * the pinentry program (daemon/pinentry.h). */
struct core_pin_entry {
        char program[256];
        unsigned timeout_s;
        char protected_kinds[64];   /* comma-separated */
};
void core_pin_entry_default(struct core_pin_entry *p);
/* Changing it tells every client that token info changed. */
void core_set_pin_entry(struct core *c, const struct core_pin_entry *p);
void core_get_pin_entry(struct core *c, struct core_pin_entry *ret);

/* Usage records (daemon/audit.h): the core reports each security-relevant
 * event to the sink (from the thread that ran it). */
struct audit_event;
typedef void (*core_audit_fn)(void *userdata, const struct audit_event *e);
void core_set_audit_sink(struct core *c, core_audit_fn fn, void *userdata);
/* Closes every session, logs every token out, frees every token. NULL ok. */
struct core *core_free(struct core *c);
void core_set_event_sink(struct core *c, core_event_fn fn, void *userdata);

/* Registry.  core_add_token takes ownership of t (freed with ops->free even
 * on failure).  A slot_key seen before gets its old slot id back. */
int core_add_token(struct core *c, const struct driver_ops *ops, struct token *t, const char *slot_key,
                   CK_SLOT_ID *ret_slot);
/* The token is gone (unplugged, deleted): sessions on it become invalid,
 * logins dropped, CKR_DEVICE_REMOVED for its ops in flight; the slot stays
 * (empty).  Returns 0 or -ENOENT. */
int core_remove_token(struct core *c, CK_SLOT_ID slot);
/* The token in this slot changed by itself (a driver's token_changed):
 * clients get WIRE_EV_TOKEN_CHANGED. */
void core_token_changed(struct core *c, CK_SLOT_ID slot);
/* The slot id of the token with this slot key, or -ENOENT. */
int core_find_slot(struct core *c, const char *slot_key, CK_SLOT_ID *ret_slot);

/* A summary for management listings. */
struct core_token_summary {
        CK_SLOT_ID slot;
        bool present;
        char slot_key[128];
        struct token_desc desc;
        unsigned sessions;      /* open sessions on it, all clients */
        unsigned logged_in;     /* clients logged in to it */
        unsigned object_loads;  /* times its object list was read from the driver */
};
/* *ret is malloc'd (free()). */
int core_list_tokens(struct core *c, struct core_token_summary **ret, size_t *ret_n);
/* Number of connected clients and open sessions. */
void core_stats(struct core *c, unsigned *ret_clients, unsigned *ret_sessions);

/* Clients.  core_client_free closes the client's sessions and drops its
 * logins (the token is logged out when nobody else is logged in). */
int core_client_new(struct core *c, const struct core_peer *peer, struct core_client **ret);
struct core_client *core_client_free(struct core_client *cl);
const struct core_peer *core_client_peer(const struct core_client *cl);

/* Translates a driver's -errno (see drivers/driver.h) to a CK_RV. */
CK_RV rv_from_errno(int r);

/* PKCS#11 */
CK_RV core_get_slot_list(struct core_client *cl, CK_BBOOL token_present, CK_SLOT_ID_PTR list,
                         CK_ULONG_PTR count);
CK_RV core_get_slot_info(struct core_client *cl, CK_SLOT_ID slot, CK_SLOT_INFO_PTR info);
CK_RV core_get_token_info(struct core_client *cl, CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info);
CK_RV core_get_mechanism_list(struct core_client *cl, CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                              CK_ULONG_PTR count);
CK_RV core_get_mechanism_info(struct core_client *cl, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                              CK_MECHANISM_INFO_PTR info);
CK_RV core_init_token(struct core_client *cl, CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                      CK_UTF8CHAR_PTR label);
CK_RV core_init_pin(struct core_client *cl, CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len);
CK_RV core_set_pin(struct core_client *cl, CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                   CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len);
CK_RV core_open_session(struct core_client *cl, CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR ret);
CK_RV core_close_session(struct core_client *cl, CK_SESSION_HANDLE s);
CK_RV core_close_all_sessions(struct core_client *cl, CK_SLOT_ID slot);
CK_RV core_get_session_info(struct core_client *cl, CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info);
CK_RV core_login(struct core_client *cl, CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                 CK_ULONG pin_len);
CK_RV core_logout(struct core_client *cl, CK_SESSION_HANDLE s);
CK_RV core_create_object(struct core_client *cl, CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                         CK_OBJECT_HANDLE_PTR ret);
CK_RV core_destroy_object(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj);
CK_RV core_copy_object(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t,
                       CK_ULONG n, CK_OBJECT_HANDLE_PTR ret);
CK_RV core_get_attribute_value(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                               CK_ATTRIBUTE_PTR tmpl, CK_ULONG n);
CK_RV core_set_attribute_value(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                               CK_ATTRIBUTE_PTR tmpl, CK_ULONG n);
CK_RV core_find_objects_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n);
CK_RV core_find_objects(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR ret, CK_ULONG max,
                        CK_ULONG_PTR ret_count);
CK_RV core_find_objects_final(struct core_client *cl, CK_SESSION_HANDLE s);
/* Every object the session can see, as C_GetAttributeValue would show it
 * (sensitive attributes left out), for the module's copy: appended to out as
 * u32 count + count * (u64 handle, blob: nattrs_serialize form).
 * CKR_DATA_LEN_RANGE when that would exceed max_bytes. */
CK_RV core_get_objects(struct core_client *cl, CK_SESSION_HANDLE s, size_t max_bytes, struct nbuf *out);
CK_RV core_sign_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV core_sign(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                CK_ULONG_PTR sig_len);
CK_RV core_sign_update(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR part, CK_ULONG len);
CK_RV core_sign_final(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len);
CK_RV core_verify_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV core_verify(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                  CK_ULONG sig_len);
CK_RV core_verify_update(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR part, CK_ULONG len);
CK_RV core_verify_final(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len);
CK_RV core_encrypt_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV core_encrypt(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len);
CK_RV core_encrypt_update(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR part, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV core_encrypt_final(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV core_decrypt_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV core_decrypt(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len);
CK_RV core_decrypt_update(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR part, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV core_decrypt_final(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV core_digest_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech);
CK_RV core_digest(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len);
CK_RV core_digest_update(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR part, CK_ULONG len);
CK_RV core_digest_final(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV core_sign_recover_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                             CK_OBJECT_HANDLE key);
CK_RV core_sign_recover(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                        CK_ULONG_PTR sig_len);
CK_RV core_verify_recover_init(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                               CK_OBJECT_HANDLE key);
CK_RV core_verify_recover(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len,
                          CK_BYTE_PTR data, CK_ULONG_PTR data_len);
/* Ends session s's operation begun by init_op (WIRE_OP_SIGN_INIT,
 * _VERIFY_INIT, _ENCRYPT_INIT, _DECRYPT_INIT, _DIGEST_INIT), if one is
 * active: the module's answer to a call whose arguments it refused itself
 * (CKR_ARGUMENTS_BAD ends the operation, as every error does). */
CK_RV core_op_end(struct core_client *cl, CK_SESSION_HANDLE s, CK_ULONG init_op);
CK_RV core_generate_key(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t,
                        CK_ULONG n, CK_OBJECT_HANDLE_PTR ret);
CK_RV core_digest_key(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key);
CK_RV core_wrap_key(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV core_unwrap_key(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey,
                      CK_BYTE_PTR in, CK_ULONG in_len, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret);
CK_RV core_generate_key_pair(struct core_client *cl, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                             CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_n, CK_ATTRIBUTE_PTR priv_tmpl,
                             CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR ret_pub, CK_OBJECT_HANDLE_PTR ret_priv);
CK_RV core_generate_random(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len);
CK_RV core_seed_random(struct core_client *cl, CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG len);

/* Where the server runs a request (daemon/server.c): the token behind the
 * client's session h (by_session) or behind slot h.  Reads the tables under
 * the core lock only, never waits for a token; callable from any thread,
 * the loop included.  Returns 0, or -ENOENT (no such session or slot, or no
 * token in it: the call will fail in the core without touching a device). */
struct core_route {
        CK_SLOT_ID slot;
        bool parallel;  /* the driver runs sign/decrypt concurrently (driver.h "Threads") */
        bool loaded;    /* objects cached: finds and attribute reads need no device I/O */
};
int core_route(struct core_client *cl, bool by_session, CK_ULONG h, struct core_route *ret);

/* The server's event loop runs the requests that need no device itself
 * (daemon/server.c).  While core_set_nowait(true) is in force on a thread,
 * a call that would have to read a token's objects first (the token's first
 * use, or after C_InitToken dropped them: a driver call, which may block)
 * does not: it fails at once, having changed nothing, and
 * core_take_would_block() then returns true (once), telling the caller to
 * run the request again on a thread that may block.  Per thread. */
void core_set_nowait(bool on);
bool core_take_would_block(void);

/* When the request a thread runs arrived (CLOCK_MONOTONIC, ns): the server
 * stamps each request as it reads it and sets the stamp while it runs, so
 * that a request that was already queued when its token was removed answers
 * CKR_DEVICE_REMOVED, and one sent after the removal
 * CKR_SESSION_HANDLE_INVALID (issue 13 item 7).  Without a stamp a request
 * counts as arriving now.  Per thread. */
uint64_t core_arrival_now(void);
void core_set_arrival(uint64_t t);
void core_clear_arrival(void);
