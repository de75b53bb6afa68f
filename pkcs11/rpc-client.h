/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The module's RPC client: PKCS#11 calls encoded with common/wire.h and
 * carried by a transport.  The mirror of daemon/dispatch.c.
 *
 * Transports:
 * - the Unix socket to netcad (transport-unix.c): one connection per
 *   C_Initialize, requests multiplexed by request id (a reader thread routes
 *   replies to their callers and events to the client's event callback), so
 *   several threads can have calls in flight at once;
 * - in-process (transport-inproc.c, tests only): calls dispatch_p11() on a
 *   core client directly.
 *
 * Connections have a generation (1, 2, ...): a session belongs to the
 * connection it was opened on.  rpc_* calls that take a session take its
 * generation and fail with CKR_SESSION_HANDLE_INVALID when that connection is
 * gone (daemon restarted), without sending anything; the other calls
 * (re)connect as needed.
 *
 * Thread safety: every rpc_* function may be called from any thread at once. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buffer.h"
#include "common/p11.h"
#include "common/wire.h"

struct rpc_transport;

/* Called from the transport's reader thread for each event frame (kind is a
 * WIRE_EV_*), and with kind RPC_EV_CONNECTION when a connection to the daemon
 * is made or found lost (from the thread that notices): whatever the module
 * knew of the daemon's state may have changed. */
typedef void (*rpc_event_fn)(void *userdata, uint64_t kind, uint64_t slot, uint64_t aux);
#define RPC_EV_CONNECTION 0

struct rpc_transport_ops {
        /* Optional: takes in what the daemon already sent (events) without
         * waiting; for transports without a reader thread. */
        void (*poll_events)(struct rpc_transport *t);
        /* Optional: from now on, events arrive as they are sent (starts a
         * reader thread when the application allows threads; clears
         * poll_before_use when it did). */
        void (*start_events)(struct rpc_transport *t);
        /* Connects and negotiates (HELLO).  Returns 0, -ENOENT or
         * -ECONNREFUSED (no daemon), -EPROTO (version mismatch or refused
         * by the daemon), another -errno. */
        int (*connect)(struct rpc_transport *t);
        /* Sends the finished request frame in *frame (the transport writes
         * its request id into it) and waits for the reply.  On 0, *ret is
         * the malloc'd reply frame (header included) of *ret_len bytes.
         * -ENOTCONN: not connected or the connection is known to be dead,
         * nothing was processed; -ECONNRESET: the connection was lost after
         * the request was sent.  Only called while connected. */
        int (*call)(struct rpc_transport *t, struct nbuf *frame, uint8_t **ret, size_t *ret_len);
        /* Optional: n calls at once (one write, the replies awaited
         * together); on 0, ret[i] is the reply to frames[i].  Errors as
         * for call; on an error no reply is returned. */
        int (*call_many)(struct rpc_transport *t, struct nbuf **frames, size_t n, uint8_t **ret, size_t *ret_len);
        /* Disconnects: calls in flight fail with -ECONNRESET.  No-op when
         * not connected. */
        void (*close)(struct rpc_transport *t);
        /* In a forked child: drop the parent's connection without touching
         * it for the parent (close the fd, no shutdown, no thread join, no
         * locks taken).  Async-signal-safe. */
        void (*forget)(struct rpc_transport *t);
        void (*free)(struct rpc_transport *t);
};

struct rpc_transport {
        const struct rpc_transport_ops *ops;
        rpc_event_fn on_event;   /* set before connect; may be NULL */
        void *event_userdata;
        /* Events (and the loss of the connection) reach on_event as soon as
         * they arrive, not only while a call is in flight: what the module
         * keeps from the daemon's answers can then be kept exact. */
        bool live_events;
        /* Events are only taken in when read: call rpc_client_poll_events()
         * before trusting what is kept.  Read and written atomically: the
         * Unix transport clears it once its reader thread runs. */
        bool poll_before_use;
};

/* The Unix socket transport.  path NULL: NETCA_SOCKET, else
 * $XDG_RUNTIME_DIR/netca/netcad.sock, else /run/user/<uid>/netca/netcad.sock
 * (wire_socket_path, common/wire-client.h).  With autostart, a missing daemon is started (NETCA_DAEMON, else the
 * installed netcad) and waited for (about 3 s). */
int rpc_transport_unix_new(const char *path, bool autostart, struct rpc_transport **ret);
/* threaded false: no reader thread; callers read for each other (for
 * applications that forbid library threads).  Before the first connect. */
void rpc_transport_unix_set_threaded(struct rpc_transport *t, bool threaded);

struct rpc_client {
        struct rpc_transport *t;
        pthread_rwlock_t lock;   /* read: a call in flight; write: (re)connect, close */
        bool connected;
        uint64_t gen;            /* generation of the current connection, 0 none yet */
        int last_error;          /* of the last failed connect */
};

/* Takes ownership of t. */
int rpc_client_new(struct rpc_transport *t, struct rpc_client **ret);
/* Disconnects and frees. NULL ok; returns NULL. */
struct rpc_client *rpc_client_free(struct rpc_client *c);
/* In a forked child: abandon the parent's connection (see ->forget) and the
 * client's memory; nothing is freed or locked. */
void rpc_client_forget(struct rpc_client *c);
/* Connects if not connected.  0 or -errno (as ->connect). */
int rpc_client_connect(struct rpc_client *c);
uint64_t rpc_client_generation(struct rpc_client *c);
/* Takes in the events already sent, when the transport needs it
 * (poll_before_use); cheap otherwise. */
void rpc_client_poll_events(struct rpc_client *c);
/* After an answer from what is kept: let events arrive as they are sent
 * (the transport's start_events), so that the next answers need no poll.
 * Cheap once done. */
void rpc_client_start_events(struct rpc_client *c);

/* The PKCS#11 calls.  Semantics of the C_* function of the same name;
 * session handles are the daemon's, with the generation (gen) of the
 * connection they came from.  A missing daemon looks like a system with no
 * slots: GetSlotList returns zero slots, slot calls CKR_SLOT_ID_INVALID.  A
 * version mismatch or broken connection is CKR_DEVICE_ERROR. */
CK_RV rpc_get_slot_list(struct rpc_client *c, CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count);
CK_RV rpc_get_slot_info(struct rpc_client *c, CK_SLOT_ID slot, CK_SLOT_INFO_PTR info);
CK_RV rpc_get_token_info(struct rpc_client *c, CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info);
/* The token info of n slots (at most 32) in one round trip, on connection
 * generation gen only: 0 and each answer in rvs[i] (infos[i] when CKR_OK),
 * or -errno (-ESTALE: another connection; -ENOTSUP: the transport cannot,
 * or n too large) and nothing answered. */
int rpc_get_token_infos(struct rpc_client *c, uint64_t gen, const CK_SLOT_ID *slots, size_t n,
                        CK_TOKEN_INFO *infos, CK_RV *rvs);
CK_RV rpc_get_mechanism_list(struct rpc_client *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                             CK_ULONG_PTR count);
CK_RV rpc_get_mechanism_info(struct rpc_client *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                             CK_MECHANISM_INFO_PTR info);
CK_RV rpc_init_token(struct rpc_client *c, CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                     CK_UTF8CHAR_PTR label);
/* *ret_gen: the generation the session belongs to. */
CK_RV rpc_open_session(struct rpc_client *c, CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR ret,
                       uint64_t *ret_gen);
CK_RV rpc_close_all_sessions(struct rpc_client *c, CK_SLOT_ID slot);

CK_RV rpc_init_pin(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len);
CK_RV rpc_set_pin(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin,
                  CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len);
CK_RV rpc_close_session(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s);
CK_RV rpc_get_session_info(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info);
CK_RV rpc_login(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                CK_ULONG pin_len);
CK_RV rpc_logout(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s);
CK_RV rpc_create_object(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                        CK_OBJECT_HANDLE_PTR ret);
CK_RV rpc_destroy_object(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj);
CK_RV rpc_copy_object(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                      CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret);
/* Ends the session's operation begun by init_op (WIRE_OP_SIGN_INIT ...),
 * after the module refused a call's arguments itself. */
CK_RV rpc_digest_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key);
CK_RV rpc_op_end(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, uint16_t init_op);
CK_RV rpc_get_attribute_value(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                              CK_ATTRIBUTE_PTR t, CK_ULONG n);
CK_RV rpc_set_attribute_value(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                              CK_ATTRIBUTE_PTR t, CK_ULONG n);
CK_RV rpc_find_objects_init(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t,
                            CK_ULONG n);
CK_RV rpc_find_objects(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR ret,
                       CK_ULONG max, CK_ULONG_PTR ret_count);
CK_RV rpc_find_objects_final(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s);

/* SignInit, VerifyInit, EncryptInit, DecryptInit (op selects which). */
CK_RV rpc_crypt_init(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                     CK_OBJECT_HANDLE key);
/* A C_SignInit the module held back, sent with the C_Sign (WIRE_OP_SIGN_ONCE)
 * or C_SignUpdate (WIRE_OP_SIGN_INIT_UPDATE) that followed it: one round
 * trip; the init's error, if it fails, is the answer. */
CK_RV rpc_sign_once(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV rpc_sign_init_update(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                           CK_OBJECT_HANDLE key, CK_BYTE_PTR data, CK_ULONG len);
CK_RV rpc_digest_init(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech);
/* Sign, Encrypt, Decrypt, Digest, EncryptUpdate, DecryptUpdate ("uzq"). */
CK_RV rpc_data_out(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR data,
                   CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
/* SignFinal, EncryptFinal, DecryptFinal, DigestFinal ("uq"). */
CK_RV rpc_final_out(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                    CK_ULONG_PTR out_len);
/* SignUpdate, VerifyUpdate, VerifyFinal, DigestUpdate, SeedRandom ("uz"). */
CK_RV rpc_data_in(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR data,
                  CK_ULONG len);
CK_RV rpc_verify(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len,
                 CK_BYTE_PTR sig, CK_ULONG sig_len);
CK_RV rpc_generate_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                       CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret);
CK_RV rpc_wrap_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                   CK_OBJECT_HANDLE wkey, CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV rpc_unwrap_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                     CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in, CK_ULONG in_len, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR ret);
CK_RV rpc_generate_key_pair(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                            CK_ATTRIBUTE_PTR pub, CK_ULONG pub_n, CK_ATTRIBUTE_PTR priv, CK_ULONG priv_n,
                            CK_OBJECT_HANDLE_PTR ret_pub, CK_OBJECT_HANDLE_PTR ret_priv);
CK_RV rpc_generate_random(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len);
/* Every object the session sees, sensitive attributes left out (WIRE_OP_GET_OBJECTS):
 * *ret is a malloc'd copy of the daemon's list (core_get_objects' form). */
CK_RV rpc_get_objects(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, uint8_t **ret, size_t *ret_len);
