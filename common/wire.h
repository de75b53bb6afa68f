/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The wire between netca-pkcs11.so / netca-tool and netcad.
 *
 * Frame (all big-endian):
 *     u32 length     bytes that follow this field: 8 + payload
 *     u32 id         request id chosen by the client, echoed in the reply;
 *                    0 for events pushed by the daemon
 *     u16 op         from the op table below (never renumbered)
 *     u16 flags      WIRE_F_*
 *     payload        fields in the order of the op's signature
 * A frame longer than WIRE_FRAME_MAX in total is refused before anything is
 * allocated for it.
 *
 * Signature characters (the payload grammar, one per field):
 *     u   u64                 CK_ULONG and handles; ~0 is CK_UNAVAILABLE_INFORMATION
 *     y   u8                  CK_BBOOL, CK_BYTE
 *     z   blob                u32 length + bytes; length 0xffffffff = NULL pointer
 *     s   string              a blob holding UTF-8 (no NUL)
 *     j   JSON                a blob holding a JSON document (management ops)
 *     q   output request      u8 is_null + u64 capacity of the caller's buffer
 *     Z   output bytes        u64 length (PKCS#11 pulLen) + blob (NULL when no
 *                             bytes are returned: length query or too small)
 *     U   u64 array           u32 count + count u64
 *     L   output u64 list     u64 count + (u32 n + n u64, or u32 NULL marker)
 *     A   attribute template  u32 count + count (u64 type, blob value)
 *     G   attribute query     u32 count + count (u64 type, u8 is_null, u64 capacity)
 *     R   attribute result    u32 count + count (u64 type, u64 ulValueLen, blob value)
 *     M   mechanism           u64 type + blob parameter (struct parameters such as
 *                             PSS and OAEP in the explicit form of common/mechparam.h)
 *     I   CK_SLOT_INFO        T CK_TOKEN_INFO   S CK_SESSION_INFO
 *     N   CK_MECHANISM_INFO
 *
 * Every PKCS#11 reply starts with 'u' (the CK_RV) and always carries all of
 * its fields, zero/empty when the call failed.  A reply with WIRE_F_ERROR
 * carries only a u64 CK_RV: the request could not be decoded or the op is
 * unknown.  Management replies are "uj": a CK_RV-like status (0 ok) and a JSON
 * object, {"error": "...", "errno": N} on failure.
 *
 * Both sides check every message against the table: a put or get of a type
 * the signature does not expect fails the message. */
#pragma once

#include "p11.h"
#include <stdbool.h>
#include <stdint.h>

#include "buffer.h"

#define WIRE_VERSION_MAJOR 1
#define WIRE_VERSION_MINOR 0
#define WIRE_VERSION ((WIRE_VERSION_MAJOR << 16) | WIRE_VERSION_MINOR)
#define WIRE_HDR_SIZE 12
#define WIRE_FRAME_MAX (1u << 20)   /* whole frame, header included */
#define WIRE_MAX_ATTRS 1024         /* attributes in one template */
#define WIRE_MAX_LIST 65536         /* entries in any list */
#define WIRE_RANDOM_MAX 65536       /* bytes one GENERATE_RANDOM may ask for */

enum wire_flags {
        WIRE_F_REPLY = 1 << 0,
        WIRE_F_ERROR = 1 << 1,  /* with REPLY: payload is "u" only */
        WIRE_F_EVENT = 1 << 2,  /* pushed by the daemon, id 0 */
};

enum wire_caps {
        WIRE_CAP_EVENTS = 1 << 0,  /* daemon pushes slot/token events */
        WIRE_CAP_MGMT = 1 << 1,    /* management (JSON) ops */
};

enum wire_event {
        WIRE_EV_SLOT_ADDED = 1,     /* slot id: a token appeared */
        WIRE_EV_SLOT_REMOVED = 2,   /* slot id: the token went away */
        WIRE_EV_TOKEN_CHANGED = 3,  /* slot id: info/flags/login state changed */
        WIRE_EV_OBJECTS_CHANGED = 4,/* slot id: objects added/removed/changed */
        WIRE_EV_RESYNC = 5,         /* slot 0: events were left out (the client did not
                                     * read them); refresh all it holds of every slot */
};

/* The op table: one row per op, everything the two sides and netcad's
 * server need to know of it.  Numbers are part of the protocol: never
 * renumber, only add.
 *
 *   X(name, number, request signature, reply signature, kind, route,
 *     reply, handler)
 *
 * kind     LOOP  answered by the server's event loop itself (HELLO, PING)
 *          PUSH  sent by the daemon only (events); refused as a request
 *          P11   a PKCS#11 call (numbers 16..255): daemon/dispatch.c
 *          MGMT  a management op (numbers from 256), JSON: daemon/mgmt.c
 * route    where netcad runs the request (daemon/server.c):
 *          LOOP            on the event loop
 *          GENERAL         the general lane: no device
 *          SLOT_DEVICE     first argument a slot; calls the driver (token lane)
 *          SESSION         first argument a session; no device
 *          SESSION_LOAD    first argument a session; calls the driver only
 *                          while the token's objects are not cached
 *          SESSION_DEVICE  first argument a session; calls the driver
 *          SESSION_CPU     first argument a session; no device, but
 *                          public-key work that can be expensive (RSA
 *                          and ECDSA verification, RSA encryption): the
 *                          general lane, never the event loop, so that a
 *                          flood of it holds no other client
 * reply    SECRET when the reply may carry plaintext or key material (its
 *          buffer is wiped on every reallocation and when freed), else
 *          PUBLIC
 * handler  the function of the kind's file that runs it (none for PUSH)
 *
 * A row that lacks a column, or names a kind, route or reply that does not
 * exist, does not compile (WIRE_OP_CHECK, common/wire.c; meson.build checks
 * that the check refuses a row without a route). */
#define WIRE_OPS(X) \
        X(HELLO, 1, "uus", "uuus", LOOP, LOOP, PUBLIC, loop_hello)                                 \
        X(PING, 2, "", "u", LOOP, LOOP, PUBLIC, loop_ping)                                         \
        X(EVENT, 3, "", "uuu", PUSH, LOOP, PUBLIC, none)                                           \
        X(GET_SLOT_LIST, 16, "yq", "uL", P11, GENERAL, PUBLIC, h_get_slot_list)                    \
        X(GET_SLOT_INFO, 17, "u", "uI", P11, GENERAL, PUBLIC, h_get_slot_info)                     \
        X(GET_TOKEN_INFO, 18, "u", "uT", P11, GENERAL, PUBLIC, h_get_token_info)                   \
        X(GET_MECHANISM_LIST, 19, "uq", "uL", P11, GENERAL, PUBLIC, h_get_mechanism_list)          \
        X(GET_MECHANISM_INFO, 20, "uu", "uN", P11, GENERAL, PUBLIC, h_get_mechanism_info)          \
        X(INIT_TOKEN, 21, "uzz", "u", P11, SLOT_DEVICE, PUBLIC, h_init_token)                      \
        X(INIT_PIN, 22, "uz", "u", P11, SESSION_DEVICE, PUBLIC, h_init_pin)                        \
        X(SET_PIN, 23, "uzz", "u", P11, SESSION_DEVICE, PUBLIC, h_set_pin)                         \
        X(OPEN_SESSION, 24, "uu", "uu", P11, GENERAL, PUBLIC, h_open_session)                      \
        X(CLOSE_SESSION, 25, "u", "u", P11, SESSION_DEVICE, PUBLIC, h_close_session)               \
        X(CLOSE_ALL_SESSIONS, 26, "u", "u", P11, SLOT_DEVICE, PUBLIC, h_close_all_sessions)        \
        X(GET_SESSION_INFO, 27, "u", "uS", P11, SESSION, PUBLIC, h_get_session_info)               \
        X(LOGIN, 28, "uuz", "u", P11, SESSION_DEVICE, PUBLIC, h_login)                             \
        X(LOGOUT, 29, "u", "u", P11, SESSION_DEVICE, PUBLIC, h_logout)                             \
        X(CREATE_OBJECT, 30, "uA", "uu", P11, SESSION_DEVICE, PUBLIC, h_create_object)             \
        X(DESTROY_OBJECT, 31, "uu", "u", P11, SESSION_DEVICE, PUBLIC, h_destroy_object)            \
        X(GET_ATTRIBUTE_VALUE, 32, "uuG", "uR", P11, SESSION_LOAD, SECRET, h_get_attribute_value)  \
        X(SET_ATTRIBUTE_VALUE, 33, "uuA", "u", P11, SESSION_DEVICE, PUBLIC, h_set_attribute_value) \
        X(FIND_OBJECTS_INIT, 34, "uA", "u", P11, SESSION_LOAD, PUBLIC, h_find_objects_init)        \
        X(FIND_OBJECTS, 35, "uu", "uU", P11, SESSION, PUBLIC, h_find_objects)                      \
        X(FIND_OBJECTS_FINAL, 36, "u", "u", P11, SESSION, PUBLIC, h_find_objects_final)            \
        X(SIGN_INIT, 37, "uMu", "u", P11, SESSION_LOAD, PUBLIC, h_sign_init)                       \
        X(SIGN, 38, "uzq", "uZ", P11, SESSION_DEVICE, PUBLIC, h_sign)                              \
        X(SIGN_UPDATE, 39, "uz", "u", P11, SESSION, PUBLIC, h_sign_update)                         \
        X(SIGN_FINAL, 40, "uq", "uZ", P11, SESSION_DEVICE, PUBLIC, h_sign_final)                   \
        X(VERIFY_INIT, 41, "uMu", "u", P11, SESSION_LOAD, PUBLIC, h_verify_init)                   \
        X(VERIFY, 42, "uzz", "u", P11, SESSION_DEVICE, PUBLIC, h_verify)                           \
        X(VERIFY_UPDATE, 43, "uz", "u", P11, SESSION, PUBLIC, h_verify_update)                     \
        X(VERIFY_FINAL, 44, "uz", "u", P11, SESSION_DEVICE, PUBLIC, h_verify_final)                \
        X(ENCRYPT_INIT, 45, "uMu", "u", P11, SESSION_LOAD, PUBLIC, h_encrypt_init)                 \
        X(ENCRYPT, 46, "uzq", "uZ", P11, SESSION_DEVICE, PUBLIC, h_encrypt)                        \
        X(ENCRYPT_UPDATE, 47, "uzq", "uZ", P11, SESSION, PUBLIC, h_encrypt_update)                 \
        X(ENCRYPT_FINAL, 48, "uq", "uZ", P11, SESSION_DEVICE, PUBLIC, h_encrypt_final)             \
        X(DECRYPT_INIT, 49, "uMu", "u", P11, SESSION_LOAD, PUBLIC, h_decrypt_init)                 \
        X(DECRYPT, 50, "uzq", "uZ", P11, SESSION_DEVICE, SECRET, h_decrypt)                        \
        X(DECRYPT_UPDATE, 51, "uzq", "uZ", P11, SESSION, SECRET, h_decrypt_update)                 \
        X(DECRYPT_FINAL, 52, "uq", "uZ", P11, SESSION_DEVICE, SECRET, h_decrypt_final)             \
        X(DIGEST_INIT, 53, "uM", "u", P11, SESSION, PUBLIC, h_digest_init)                         \
        X(DIGEST, 54, "uzq", "uZ", P11, SESSION, PUBLIC, h_digest)                                 \
        X(DIGEST_UPDATE, 55, "uz", "u", P11, SESSION, PUBLIC, h_digest_update)                     \
        X(DIGEST_FINAL, 56, "uq", "uZ", P11, SESSION, PUBLIC, h_digest_final)                      \
        X(GENERATE_KEY_PAIR, 57, "uMAA", "uuu", P11, SESSION_DEVICE, PUBLIC, h_generate_key_pair)  \
        X(GENERATE_RANDOM, 58, "uu", "uz", P11, SESSION_DEVICE, SECRET, h_generate_random)         \
        X(SEED_RANDOM, 59, "uz", "u", P11, SESSION_DEVICE, PUBLIC, h_seed_random)                  \
        X(GET_OBJECTS, 60, "u", "uz", P11, SESSION_LOAD, SECRET, h_get_objects)                    \
        X(SIGN_ONCE, 61, "uMuzq", "uZ", P11, SESSION_DEVICE, PUBLIC, h_sign_once)                  \
        X(SIGN_INIT_UPDATE, 62, "uMuz", "u", P11, SESSION_LOAD, PUBLIC, h_sign_init_update)        \
        X(OP_END, 63, "uu", "u", P11, SESSION, PUBLIC, h_op_end)                                   \
        X(COPY_OBJECT, 64, "uuA", "uu", P11, SESSION_DEVICE, PUBLIC, h_copy_object)                \
        X(SIGN_RECOVER_INIT, 65, "uMu", "u", P11, SESSION_LOAD, PUBLIC, h_sign_recover_init)       \
        X(SIGN_RECOVER, 66, "uzq", "uZ", P11, SESSION_DEVICE, PUBLIC, h_sign_recover)              \
        X(VERIFY_RECOVER_INIT, 67, "uMu", "u", P11, SESSION_LOAD, PUBLIC, h_verify_recover_init)   \
        X(VERIFY_RECOVER, 68, "uzq", "uZ", P11, SESSION_CPU, PUBLIC, h_verify_recover)             \
        X(GENERATE_KEY, 69, "uMA", "uu", P11, SESSION_DEVICE, PUBLIC, h_generate_key)              \
        X(DIGEST_KEY, 70, "uu", "u", P11, SESSION_DEVICE, PUBLIC, h_digest_key)                    \
        X(WRAP_KEY, 71, "uMuuq", "uZ", P11, SESSION_DEVICE, SECRET, h_wrap_key)                    \
        X(UNWRAP_KEY, 72, "uMuzA", "uu", P11, SESSION_DEVICE, PUBLIC, h_unwrap_key)                \
        X(MGMT_STATUS, 256, "j", "uj", MGMT, GENERAL, PUBLIC, op_status)                           \
        X(MGMT_TOKEN_LIST, 257, "j", "uj", MGMT, GENERAL, PUBLIC, op_token_list)                   \
        X(MGMT_TOKEN_CREATE_SOFT, 258, "j", "uj", MGMT, GENERAL, PUBLIC, op_create_soft)           \
        X(MGMT_PIN_STATUS, 259, "j", "uj", MGMT, GENERAL, PUBLIC, op_pin_status)                   \
        X(MGMT_TOKEN_DELETE, 260, "j", "uj", MGMT, GENERAL, PUBLIC, op_token_delete)               \
        X(MGMT_PIN_CACHE_SET, 261, "j", "uj", MGMT, GENERAL, PUBLIC, op_pin_cache_set)             \
        X(MGMT_PIN_CACHE_STATUS, 262, "j", "uj", MGMT, GENERAL, PUBLIC, op_pin_cache_status)       \
        X(MGMT_PIN_CACHE_CLEAR, 263, "j", "uj", MGMT, GENERAL, PUBLIC, op_pin_cache_clear)         \
        X(MGMT_LOG_SHOW, 264, "j", "uj", MGMT, GENERAL, PUBLIC, op_log_show)                       \
        X(MGMT_LOG_CLEAR, 265, "j", "uj", MGMT, GENERAL, PUBLIC, op_log_clear)                     \
        X(MGMT_LOG_SET, 266, "j", "uj", MGMT, GENERAL, PUBLIC, op_log_set)                         \
        X(MGMT_PINENTRY_SET, 267, "j", "uj", MGMT, GENERAL, PUBLIC, op_pinentry_set)

enum wire_op_code {
#define WIRE_ENUM(name, num, req, rep, kind, route, reply, handler) WIRE_OP_##name = num,
        WIRE_OPS(WIRE_ENUM)
#undef WIRE_ENUM
};

enum wire_kind { WIRE_KIND_LOOP, WIRE_KIND_PUSH, WIRE_KIND_P11, WIRE_KIND_MGMT };

enum wire_route {
        WIRE_ROUTE_LOOP,
        WIRE_ROUTE_GENERAL,
        WIRE_ROUTE_SLOT_DEVICE,
        WIRE_ROUTE_SESSION,
        WIRE_ROUTE_SESSION_LOAD,
        WIRE_ROUTE_SESSION_DEVICE,
        WIRE_ROUTE_SESSION_CPU,
};

enum wire_reply { WIRE_REPLY_PUBLIC, WIRE_REPLY_SECRET };

/* The build-time check of one row (common/wire.c applies it to every row). */
#define WIRE_OP_CHECK(name, num, req, rep, kind, route, reply, handler)                                      \
        _Static_assert((WIRE_KIND_##kind == WIRE_KIND_P11) == ((num) >= 16 && (num) < 256),                   \
                       #name ": PKCS#11 ops, and only they, are numbered 16..255");                          \
        _Static_assert((WIRE_KIND_##kind == WIRE_KIND_MGMT) == ((num) >= 256), #name ": management ops from 256"); \
        _Static_assert((WIRE_ROUTE_##route == WIRE_ROUTE_LOOP) ==                                              \
                               (WIRE_KIND_##kind == WIRE_KIND_LOOP || WIRE_KIND_##kind == WIRE_KIND_PUSH),    \
                       #name ": only LOOP and PUSH ops stay on the loop");                                    \
        _Static_assert(WIRE_KIND_##kind != WIRE_KIND_MGMT || WIRE_ROUTE_##route == WIRE_ROUTE_GENERAL,         \
                       #name ": management ops run on the general lane");                                     \
        _Static_assert(WIRE_REPLY_##reply == WIRE_REPLY_PUBLIC || WIRE_REPLY_##reply == WIRE_REPLY_SECRET, #name);

struct wire_op {
        uint16_t op;
        const char *name;
        const char *req;          /* request signature */
        const char *rep;          /* reply signature */
        enum wire_kind kind;
        enum wire_route route;
        bool secret;              /* WIRE_REPLY_SECRET */
};

/* NULL for an unknown op.  Constant time. */
const struct wire_op *wire_op_lookup(uint16_t op);
const char *wire_op_name(uint16_t op);

struct wire_hdr {
        uint32_t len;  /* bytes after the length field */
        uint32_t id;
        uint16_t op;
        uint16_t flags;
};

/* Parses the first WIRE_HDR_SIZE bytes.  Returns 0, -EBADMSG (length under 8)
 * or -EMSGSIZE (frame over WIRE_FRAME_MAX).  *ret untouched on failure. */
int wire_hdr_parse(const uint8_t in[WIRE_HDR_SIZE], struct wire_hdr *ret);

/* Peeks at the first field of a request frame (len bytes, header included
 * and parsed) without decoding the rest: the slot or session handle that
 * routes it.  0, or -EBADMSG when the op is unknown, its request does not
 * begin with a u64, or the frame is too short for one. */
int wire_frame_first_u64(const uint8_t *frame, size_t len, uint64_t *ret);

/* A message being written or read, checked against its op's signature. */
struct wire_msg {
        struct nbuf buf;        /* whole frame, header included */
        const struct wire_op *op;
        const char *sigp;       /* what remains of the signature */
        uint32_t id;
        uint16_t opnum;
        uint16_t flags;
};

/* Writing: starts a frame for op (request, or reply if flags has
 * WIRE_F_REPLY; WIRE_F_ERROR selects the "u" error signature).  An unknown op
 * fails the message.  wire_msg_finish() checks the whole signature was
 * written and nothing failed, then patches the length: 0, -EBADMSG or
 * -EMSGSIZE.  The frame is then m->buf.data, m->buf.len. */
void wire_msg_init_write(struct wire_msg *m, uint16_t op, uint32_t id, uint16_t flags);
int wire_msg_finish(struct wire_msg *m);

/* Reading: frame points to a whole frame (header included) that stays alive
 * while the message is used; nothing is copied.  Returns 0, -EBADMSG
 * (malformed header), -ENOTSUP (unknown op: m->id and m->opnum are still set
 * so that an error reply can be made).  wire_msg_read_done() returns 0 when
 * every field was read and nothing is left over, else -EBADMSG. */
int wire_msg_init_read(struct wire_msg *m, const uint8_t *frame, size_t len);
int wire_msg_read_done(struct wire_msg *m);

void wire_msg_done(struct wire_msg *m);

/* Builds the finished error reply (WIRE_F_REPLY | WIRE_F_ERROR, payload the
 * u64 rv) to request id of op; any op number, also unknown ones, is echoed.
 * 0, or -ENOMEM (m is then released). */
int wire_error_reply(struct wire_msg *m, uint16_t op, uint32_t id, uint64_t rv);
static inline bool wire_msg_failed(const struct wire_msg *m) { return nbuf_failed(&m->buf); }

/* Puts: append a field; a type mismatch with the signature fails the msg. */
void wire_put_u64(struct wire_msg *m, uint64_t v);
void wire_put_u8(struct wire_msg *m, uint8_t v);
void wire_put_blob(struct wire_msg *m, const void *p, size_t n);     /* 'z' */
void wire_put_string(struct wire_msg *m, const char *s);             /* 's' */
void wire_put_json(struct wire_msg *m, const char *json);            /* 'j' */
void wire_put_outreq(struct wire_msg *m, bool is_null, uint64_t capacity);          /* 'q' */
void wire_put_outbytes(struct wire_msg *m, uint64_t len, const void *p);            /* 'Z', p NULL: no bytes */
void wire_put_u64_array(struct wire_msg *m, const CK_ULONG *v, size_t n);           /* 'U' */
void wire_put_outlist(struct wire_msg *m, uint64_t count, const CK_ULONG *v, size_t n); /* 'L', v NULL: no list */
void wire_put_attrs(struct wire_msg *m, const CK_ATTRIBUTE *t, CK_ULONG n);         /* 'A' */
void wire_put_attr_query(struct wire_msg *m, const CK_ATTRIBUTE *t, CK_ULONG n);    /* 'G' */
void wire_put_attr_result(struct wire_msg *m, const CK_ATTRIBUTE *t, CK_ULONG n);   /* 'R' */
void wire_put_mechanism(struct wire_msg *m, const CK_MECHANISM *mech);              /* 'M' */
void wire_put_slot_info(struct wire_msg *m, const CK_SLOT_INFO *i);
void wire_put_token_info(struct wire_msg *m, const CK_TOKEN_INFO *i);
void wire_put_session_info(struct wire_msg *m, const CK_SESSION_INFO *i);
void wire_put_mech_info(struct wire_msg *m, const CK_MECHANISM_INFO *i);

/* Gets: return false (and fail the msg) on a type mismatch or short data.
 * Pointers returned point into the frame.  Arrays returned through **ret are
 * malloc'd and owned by the caller (free()); their pValue pointers point into
 * the frame. */
bool wire_get_u64(struct wire_msg *m, uint64_t *v);
bool wire_get_ulong(struct wire_msg *m, CK_ULONG *v);
bool wire_get_u8(struct wire_msg *m, uint8_t *v);
bool wire_get_blob(struct wire_msg *m, const uint8_t **p, size_t *n);
/* 's' and 'j' come back as malloc'd NUL-terminated strings (NULL for the
 * NULL marker); a string holding a NUL byte fails the msg. */
bool wire_get_string(struct wire_msg *m, char **ret);
bool wire_get_json(struct wire_msg *m, char **ret);
bool wire_get_outreq(struct wire_msg *m, bool *is_null, uint64_t *capacity);
bool wire_get_outbytes(struct wire_msg *m, uint64_t *len, const uint8_t **p, size_t *n);
bool wire_get_u64_array(struct wire_msg *m, CK_ULONG **ret, size_t *n);
bool wire_get_outlist(struct wire_msg *m, uint64_t *count, CK_ULONG **ret, size_t *n); /* *ret NULL: no list */
bool wire_get_attrs(struct wire_msg *m, CK_ATTRIBUTE **ret, CK_ULONG *n);
/* Query: pValue is NULL when the caller's was, else a non-NULL dummy; only
 * ulValueLen (the capacity) is meaningful. */
bool wire_get_attr_query(struct wire_msg *m, CK_ATTRIBUTE **ret, CK_ULONG *n);
bool wire_get_attr_result(struct wire_msg *m, CK_ATTRIBUTE **ret, CK_ULONG *n);
bool wire_get_mechanism(struct wire_msg *m, CK_MECHANISM *mech);
bool wire_get_slot_info(struct wire_msg *m, CK_SLOT_INFO *i);
bool wire_get_token_info(struct wire_msg *m, CK_TOKEN_INFO *i);
bool wire_get_session_info(struct wire_msg *m, CK_SESSION_INFO *i);
bool wire_get_mech_info(struct wire_msg *m, CK_MECHANISM_INFO *i);
