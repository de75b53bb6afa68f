/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "rpc-client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "common/mechparam.h"

/* call_run's answer for "there is no daemon" on calls without session. */
#define RV_NO_DAEMON ((CK_RV)(CKR_VENDOR_DEFINED | 0x4e430001UL))

int rpc_client_new(struct rpc_transport *t, struct rpc_client **ret) {
        if (!t || !ret)
                return -EINVAL;
        struct rpc_client *c = calloc(1, sizeof *c);
        if (!c) {
                t->ops->free(t);
                return -ENOMEM;
        }
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        /* A reconnect must not starve behind a stream of failing calls. */
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        int r = pthread_rwlock_init(&c->lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        if (r != 0) {
                t->ops->free(t);
                free(c);
                return -r;
        }
        c->t = t;
        *ret = c;
        return 0;
}

struct rpc_client *rpc_client_free(struct rpc_client *c) {
        if (!c)
                return NULL;
        pthread_rwlock_wrlock(&c->lock);
        if (c->connected)
                c->t->ops->close(c->t);
        c->connected = false;
        pthread_rwlock_unlock(&c->lock);
        c->t->ops->free(c->t);
        pthread_rwlock_destroy(&c->lock);
        free(c);
        return NULL;
}

void rpc_client_forget(struct rpc_client *c) {
        if (c && c->t)
                c->t->ops->forget(c->t);
}

/* With the write lock held. */
static int connect_locked(struct rpc_client *c) {
        if (c->connected)
                return 0;
        c->t->ops->close(c->t);
        int r = c->t->ops->connect(c->t);
        if (r < 0) {
                c->last_error = r;
                log_debug(LOG_SUB_MODULE, "connecting to netcad failed: %s", strerror(-r));
                return r;
        }
        c->connected = true;
        c->gen++;
        if (c->t->on_event)
                c->t->on_event(c->t->event_userdata, RPC_EV_CONNECTION, 0, 0);
        log_debug(LOG_SUB_MODULE, "connected to netcad (generation %llu)", (unsigned long long)c->gen);
        return 0;
}

int rpc_client_connect(struct rpc_client *c) {
        pthread_rwlock_wrlock(&c->lock);
        int r = connect_locked(c);
        pthread_rwlock_unlock(&c->lock);
        return r;
}

uint64_t rpc_client_generation(struct rpc_client *c) {
        pthread_rwlock_rdlock(&c->lock);
        uint64_t g = c->connected ? c->gen : 0;
        pthread_rwlock_unlock(&c->lock);
        return g;
}

/* Runs a transport op about events on the connection, while the transport
 * still needs them taken in by hand (poll_before_use: cleared by the
 * transport once its reader thread runs). */
static void event_op(struct rpc_client *c, void (*op)(struct rpc_transport *t)) {
        if (!__atomic_load_n(&c->t->poll_before_use, __ATOMIC_ACQUIRE) || !op)
                return;
        pthread_rwlock_rdlock(&c->lock);
        if (c->connected)
                op(c->t);
        pthread_rwlock_unlock(&c->lock);
}

void rpc_client_poll_events(struct rpc_client *c) {
        event_op(c, c->t->ops->poll_events);
}

void rpc_client_start_events(struct rpc_client *c) {
        event_op(c, c->t->ops->start_events);
}

/* The connection of generation gen broke: mark it so, once. */
static void mark_broken(struct rpc_client *c, uint64_t gen) {
        pthread_rwlock_wrlock(&c->lock);
        bool was = c->connected && c->gen == gen;
        if (was) {
                c->t->ops->close(c->t);
                c->connected = false;
        }
        pthread_rwlock_unlock(&c->lock);
        if (was && c->t->on_event)
                c->t->on_event(c->t->event_userdata, RPC_EV_CONNECTION, 0, 0);
}

/* Sends the n frames, returns their reply frames (n > 1: in one round trip,
 * through the transport's call_many).  want_gen 0: any connection, connect
 * (once more after a broken one) as needed; else only on that generation
 * (-ESTALE otherwise). */
static int transact(struct rpc_client *c, uint64_t want_gen, struct nbuf **frames, size_t n, uint8_t **ret,
                    size_t *ret_len, uint64_t *ret_gen) {
        if (n > 1 && !c->t->ops->call_many)
                return -ENOTSUP;
        bool retried = false;
        for (;;) {
                pthread_rwlock_rdlock(&c->lock);
                if (!c->connected) {
                        pthread_rwlock_unlock(&c->lock);
                        if (want_gen != 0)
                                return -ESTALE;
                        pthread_rwlock_wrlock(&c->lock);
                        int r = connect_locked(c);
                        pthread_rwlock_unlock(&c->lock);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (want_gen != 0 && c->gen != want_gen) {
                        pthread_rwlock_unlock(&c->lock);
                        return -ESTALE;
                }
                uint64_t gen = c->gen;
                int r = n == 1 ? c->t->ops->call(c->t, frames[0], ret, ret_len)
                               : c->t->ops->call_many(c->t, frames, n, ret, ret_len);
                pthread_rwlock_unlock(&c->lock);
                *ret_gen = gen;
                if (r == -ENOTCONN || r == -ECONNRESET) {
                        mark_broken(c, gen);
                        /* Nothing was processed: a call without session
                         * may go to a new connection (once); a session is
                         * gone with its connection. */
                        if (r == -ENOTCONN && want_gen == 0 && !retried) {
                                retried = true;
                                continue;
                        }
                        return r == -ENOTCONN && want_gen != 0 ? -ESTALE : r;
                }
                return r;
        }
}

/* One call in progress. */
struct call {
        struct wire_msg req;
        struct wire_msg rep;
        uint8_t *frame;
        size_t frame_len;
        bool has_reply;  /* rep is positioned after the CK_RV */
        uint64_t gen;    /* generation of the connection the call went on */
};

static void call_start(struct call *k, uint16_t op, bool secret) {
        memset(k, 0, sizeof *k);
        wire_msg_init_write(&k->req, op, 0, 0);
        /* PINs: wiped on every reallocation and when done. */
        if (secret)
                k->req.buf.secure = true;
}

/* Starts a call whose first field is the handle h (a slot or a session). */
static void call_start_on(struct call *k, uint16_t op, bool secret, CK_ULONG h) {
        call_start(k, op, secret);
        wire_put_u64(&k->req, h);
}

static void call_end(struct call *k) {
        wire_msg_done(&k->req);
        if (k->frame) {
                /* Replies may hold decrypted data or attribute values. */
                explicit_bzero(k->frame, k->frame_len);
                free(k->frame);
        }
        k->frame = NULL;
}

static CK_RV call_parse(struct call *k);

/* Runs the call.  Returns the reply's CK_RV (k->has_reply set: the reply's
 * fields follow), or the CK_RV for a failure to talk to the daemon:
 * no_daemon_rv when there is no daemon, CKR_SESSION_HANDLE_INVALID when the
 * session's connection is gone, CKR_DEVICE_ERROR otherwise. */
static CK_RV call_run(struct rpc_client *c, struct call *k, uint64_t gen, CK_RV no_daemon_rv) {
        int r = wire_msg_finish(&k->req);
        if (r < 0) {
                log_debug(LOG_SUB_MODULE, "cannot encode %s: %s", wire_op_name(k->req.opnum), strerror(-r));
                return r == -EMSGSIZE ? CKR_DATA_LEN_RANGE : CKR_ARGUMENTS_BAD;
        }
        struct nbuf *frame = &k->req.buf;
        r = transact(c, gen, &frame, 1, &k->frame, &k->frame_len, &k->gen);
        if (r < 0) {
                log_debug(LOG_SUB_MODULE, "%s: %s", wire_op_name(k->req.opnum), strerror(-r));
                switch (r) {
                case -ESTALE:
                        return CKR_SESSION_HANDLE_INVALID;
                case -ENOENT:
                case -ECONNREFUSED:
                case -EACCES:
                case -ENOTCONN:
                        return gen ? CKR_SESSION_HANDLE_INVALID : no_daemon_rv;
                case -ENOMEM:
                        return CKR_HOST_MEMORY;
                default:
                        return CKR_DEVICE_ERROR;
                }
        }
        return call_parse(k);
}

/* Reads the reply's header and CK_RV (see call_run). */
static CK_RV call_parse(struct call *k) {
        int r = wire_msg_init_read(&k->rep, k->frame, k->frame_len);
        if (r < 0 || k->rep.opnum != k->req.opnum || !(k->rep.flags & WIRE_F_REPLY)) {
                log_debug(LOG_SUB_MODULE, "%s: malformed reply", wire_op_name(k->req.opnum));
                return CKR_DEVICE_ERROR;
        }
        uint64_t rv;
        if (!wire_get_u64(&k->rep, &rv)) {
                log_debug(LOG_SUB_MODULE, "%s: malformed reply", wire_op_name(k->req.opnum));
                return CKR_DEVICE_ERROR;
        }
        if (k->rep.flags & WIRE_F_ERROR) {
                log_debug(LOG_SUB_MODULE, "%s: refused by the daemon (0x%llx)", wire_op_name(k->req.opnum),
                          (unsigned long long)rv);
                return rv == CKR_OK || wire_msg_read_done(&k->rep) < 0 ? CKR_DEVICE_ERROR : (CK_RV)rv;
        }
        k->has_reply = true;
        return (CK_RV)rv;
}

/* After reading the last field. */
static bool call_done(struct call *k) {
        return wire_msg_read_done(&k->rep) == 0;
}

/* Reads an 'L' reply field into the caller's list (capacity *count). */
static CK_RV get_outlist(struct call *k, CK_RV rv, CK_ULONG *list, CK_ULONG_PTR count) {
        uint64_t n;
        _cleanup_free_ CK_ULONG *v = NULL;
        size_t nv;
        if (!k->has_reply || (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL))
                return rv;
        if (!wire_get_outlist(&k->rep, &n, &v, &nv) || !call_done(k))
                return CKR_DEVICE_ERROR;
        if (rv == CKR_OK && list) {
                if (!v || nv != n || n > *count)
                        return CKR_DEVICE_ERROR;
                memcpy(list, v, nv * sizeof *v);
        }
        *count = (CK_ULONG)n;
        return rv;
}

/* Reads a 'Z' reply field into the caller's buffer (capacity cap). */
static CK_RV get_outbytes(struct call *k, CK_RV rv, CK_BYTE_PTR out, CK_ULONG cap, CK_ULONG_PTR out_len) {
        uint64_t len;
        const uint8_t *p;
        size_t n;
        if (!k->has_reply || (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL))
                return rv;
        if (!wire_get_outbytes(&k->rep, &len, &p, &n) || !call_done(k))
                return CKR_DEVICE_ERROR;
        if (rv == CKR_OK && out) {
                if (!p || len > cap)
                        return CKR_DEVICE_ERROR;
                memcpy(out, p, n);
        }
        *out_len = (CK_ULONG)len;
        return rv;
}

/* Info structs ('I', 'T', 'S', 'N') are only read on success. */
#define GET_INFO(k, rv, getter, out)                                     \
        do {                                                             \
                if ((rv) == CKR_OK) {                                    \
                        __typeof__(*(out)) tmp_;                         \
                        if (!getter(&(k)->rep, &tmp_) || !call_done(k))  \
                                (rv) = CKR_DEVICE_ERROR;                 \
                        else                                             \
                                *(out) = tmp_;                           \
                }                                                        \
        } while (0)

CK_RV rpc_get_slot_list(struct rpc_client *c, CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
        struct call k;
        call_start(&k, WIRE_OP_GET_SLOT_LIST, false);
        wire_put_u8(&k.req, present ? 1 : 0);
        wire_put_outreq(&k.req, list == NULL, list ? *count : 0);
        CK_RV rv = call_run(c, &k, 0, RV_NO_DAEMON);
        if (rv == RV_NO_DAEMON) {
                /* No daemon: no slots. */
                *count = 0;
                rv = CKR_OK;
        } else
                rv = get_outlist(&k, rv, list, count);
        call_end(&k);
        return rv;
}

/* Reads the info struct of k's op (GET_SLOT_INFO: a CK_SLOT_INFO, ...) into
 * info, on success only. */
static CK_RV get_info(struct call *k, CK_RV rv, void *info) {
        switch (k->req.opnum) {
        case WIRE_OP_GET_SLOT_INFO:
                GET_INFO(k, rv, wire_get_slot_info, (CK_SLOT_INFO *)info);
                break;
        case WIRE_OP_GET_TOKEN_INFO:
                GET_INFO(k, rv, wire_get_token_info, (CK_TOKEN_INFO *)info);
                break;
        case WIRE_OP_GET_SESSION_INFO:
                GET_INFO(k, rv, wire_get_session_info, (CK_SESSION_INFO *)info);
                break;
        default:
                GET_INFO(k, rv, wire_get_mech_info, (CK_MECHANISM_INFO *)info);
                break;
        }
        return rv;
}

/* GetSlotInfo, GetTokenInfo, GetMechanismInfo (h a slot, gen 0) and
 * GetSessionInfo (h a session of gen): the request is h (and, for
 * GetMechanismInfo, type), the reply the op's info struct. */
static CK_RV info_call(struct rpc_client *c, uint16_t op, uint64_t gen, CK_RV no_daemon_rv, CK_ULONG h,
                       CK_MECHANISM_TYPE type, void *info) {
        struct call k;
        call_start_on(&k, op, false, h);
        if (op == WIRE_OP_GET_MECHANISM_INFO)
                wire_put_u64(&k.req, type);
        CK_RV rv = call_run(c, &k, gen, no_daemon_rv);
        if (k.has_reply)
                rv = get_info(&k, rv, info);
        call_end(&k);
        return rv;
}

CK_RV rpc_get_slot_info(struct rpc_client *c, CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
        return info_call(c, WIRE_OP_GET_SLOT_INFO, 0, CKR_SLOT_ID_INVALID, slot, 0, info);
}

CK_RV rpc_get_token_info(struct rpc_client *c, CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
        return info_call(c, WIRE_OP_GET_TOKEN_INFO, 0, CKR_SLOT_ID_INVALID, slot, 0, info);
}

#define TOKEN_INFOS_MAX 32

int rpc_get_token_infos(struct rpc_client *c, uint64_t gen, const CK_SLOT_ID *slots, size_t n,
                        CK_TOKEN_INFO *infos, CK_RV *rvs) {
        struct call k[TOKEN_INFOS_MAX];
        struct nbuf *frames[TOKEN_INFOS_MAX];
        uint8_t *rep[TOKEN_INFOS_MAX];
        size_t rep_len[TOKEN_INFOS_MAX];
        int r = 0;
        if (n == 0)
                return 0;
        if (n > TOKEN_INFOS_MAX || gen == 0)
                return -ENOTSUP;
        for (size_t i = 0; i < n; i++) {
                call_start_on(&k[i], WIRE_OP_GET_TOKEN_INFO, false, slots[i]);
                if (r == 0 && wire_msg_finish(&k[i].req) < 0)
                        r = -ENOMEM;
                frames[i] = &k[i].req.buf;
        }
        uint64_t got_gen = 0;
        if (r == 0)
                r = transact(c, gen, frames, n, rep, rep_len, &got_gen);
        for (size_t i = 0; i < n; i++) {
                if (r == 0) {
                        k[i].frame = rep[i];
                        k[i].frame_len = rep_len[i];
                        k[i].gen = got_gen;
                        rvs[i] = call_parse(&k[i]);
                        if (k[i].has_reply)
                                GET_INFO(&k[i], rvs[i], wire_get_token_info, &infos[i]);
                }
                call_end(&k[i]);
        }
        return r;
}

CK_RV rpc_get_mechanism_list(struct rpc_client *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                             CK_ULONG_PTR count) {
        struct call k;
        call_start_on(&k, WIRE_OP_GET_MECHANISM_LIST, false, slot);
        wire_put_outreq(&k.req, list == NULL, list ? *count : 0);
        CK_RV rv = call_run(c, &k, 0, CKR_SLOT_ID_INVALID);
        rv = get_outlist(&k, rv, list, count);
        call_end(&k);
        return rv;
}

CK_RV rpc_get_mechanism_info(struct rpc_client *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                             CK_MECHANISM_INFO_PTR info) {
        return info_call(c, WIRE_OP_GET_MECHANISM_INFO, 0, CKR_SLOT_ID_INVALID, slot, type, info);
}

/* The PIN ops, "u" -> "u" with the request wiped: InitToken ("uzz": slot h,
 * pin a, label b), InitPIN ("uz": pin a), SetPIN ("uzz": old PIN a, new PIN
 * b), Login ("uuz": user, pin a).  A NULL a or b goes as the NULL marker. */
static CK_RV pin_call(struct rpc_client *c, uint16_t op, uint64_t gen, CK_RV no_daemon_rv, CK_ULONG h,
                      CK_USER_TYPE user, const CK_UTF8CHAR *a, CK_ULONG a_len, const CK_UTF8CHAR *b,
                      CK_ULONG b_len) {
        struct call k;
        call_start_on(&k, op, true, h);
        if (op == WIRE_OP_LOGIN)
                wire_put_u64(&k.req, user);
        wire_put_blob(&k.req, a, a ? a_len : 0);
        if (op == WIRE_OP_INIT_TOKEN || op == WIRE_OP_SET_PIN)
                wire_put_blob(&k.req, b, b ? b_len : 0);
        CK_RV rv = call_run(c, &k, gen, no_daemon_rv);
        call_end(&k);
        return rv;
}

CK_RV rpc_init_token(struct rpc_client *c, CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                     CK_UTF8CHAR_PTR label) {
        return pin_call(c, WIRE_OP_INIT_TOKEN, 0, CKR_SLOT_ID_INVALID, slot, 0, pin, pin_len, label, 32);
}

CK_RV rpc_open_session(struct rpc_client *c, CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR ret,
                       uint64_t *ret_gen) {
        struct call k;
        call_start_on(&k, WIRE_OP_OPEN_SESSION, false, slot);
        wire_put_u64(&k.req, flags);
        CK_RV rv = call_run(c, &k, 0, CKR_SLOT_ID_INVALID);
        if (rv == CKR_OK && k.has_reply) {
                uint64_t h;
                if (!wire_get_u64(&k.rep, &h) || !call_done(&k))
                        rv = CKR_DEVICE_ERROR;
                else {
                        *ret = (CK_SESSION_HANDLE)h;
                        *ret_gen = k.gen;
                }
        }
        call_end(&k);
        return rv;
}

/* Ops "u" -> "u" on a slot (gen 0) or a session of gen. */
static CK_RV handle_only(struct rpc_client *c, uint16_t op, uint64_t gen, CK_RV no_daemon_rv, CK_ULONG h) {
        struct call k;
        call_start_on(&k, op, false, h);
        CK_RV rv = call_run(c, &k, gen, no_daemon_rv);
        call_end(&k);
        return rv;
}

/* Ops "u" -> "u" on a session. */
static CK_RV session_only(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s) {
        return handle_only(c, op, gen, CKR_SESSION_HANDLE_INVALID, s);
}

CK_RV rpc_close_all_sessions(struct rpc_client *c, CK_SLOT_ID slot) {
        return handle_only(c, WIRE_OP_CLOSE_ALL_SESSIONS, 0, CKR_SLOT_ID_INVALID, slot);
}

CK_RV rpc_init_pin(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
        return pin_call(c, WIRE_OP_INIT_PIN, gen, CKR_SESSION_HANDLE_INVALID, s, 0, pin, len, NULL, 0);
}

CK_RV rpc_set_pin(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin,
                  CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len) {
        return pin_call(c, WIRE_OP_SET_PIN, gen, CKR_SESSION_HANDLE_INVALID, s, 0, old_pin, old_len, new_pin,
                        new_len);
}

CK_RV rpc_close_session(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s) {
        return session_only(c, WIRE_OP_CLOSE_SESSION, gen, s);
}

CK_RV rpc_get_session_info(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info) {
        return info_call(c, WIRE_OP_GET_SESSION_INFO, gen, CKR_SESSION_HANDLE_INVALID, s, 0, info);
}

CK_RV rpc_login(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                CK_ULONG pin_len) {
        return pin_call(c, WIRE_OP_LOGIN, gen, CKR_SESSION_HANDLE_INVALID, s, user, pin, pin_len, NULL, 0);
}

CK_RV rpc_logout(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s) {
        return session_only(c, WIRE_OP_LOGOUT, gen, s);
}

/* Runs call k, whose reply is one object handle (into *ret), and ends it. */
static CK_RV run_for_handle(struct rpc_client *c, struct call *k, uint64_t gen, CK_OBJECT_HANDLE_PTR ret) {
        CK_RV rv = call_run(c, k, gen, CKR_SESSION_HANDLE_INVALID);
        if (rv == CKR_OK && k->has_reply) {
                uint64_t h;
                if (!wire_get_u64(&k->rep, &h) || !call_done(k))
                        rv = CKR_DEVICE_ERROR;
                else
                        *ret = (CK_OBJECT_HANDLE)h;
        }
        call_end(k);
        return rv;
}

/* CREATE_OBJECT, or COPY_OBJECT of *from: a new object's handle in *ret. */
static CK_RV object_made(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, const CK_OBJECT_HANDLE *from,
                         CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret) {
        struct call k;
        /* A template may hold a private key value. */
        call_start_on(&k, from ? WIRE_OP_COPY_OBJECT : WIRE_OP_CREATE_OBJECT, true, s);
        if (from)
                wire_put_u64(&k.req, *from);
        wire_put_attrs(&k.req, t, n);
        return run_for_handle(c, &k, gen, ret);
}

CK_RV rpc_create_object(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                        CK_OBJECT_HANDLE_PTR ret) {
        return object_made(c, gen, s, NULL, t, n, ret);
}

CK_RV rpc_copy_object(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                      CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret) {
        return object_made(c, gen, s, &obj, t, n, ret);
}

/* "uu" -> "u": a session and one number. */
static CK_RV handle_ulong(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_ULONG v) {
        struct call k;
        call_start_on(&k, op, false, s);
        wire_put_u64(&k.req, v);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        call_end(&k);
        return rv;
}

CK_RV rpc_destroy_object(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj) {
        return handle_ulong(c, WIRE_OP_DESTROY_OBJECT, gen, s, obj);
}

CK_RV rpc_digest_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key) {
        return handle_ulong(c, WIRE_OP_DIGEST_KEY, gen, s, key);
}

CK_RV rpc_op_end(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, uint16_t init_op) {
        return handle_ulong(c, WIRE_OP_OP_END, gen, s, init_op);
}

CK_RV rpc_get_attribute_value(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                              CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        struct call k;
        call_start_on(&k, WIRE_OP_GET_ATTRIBUTE_VALUE, false, s);
        wire_put_u64(&k.req, obj);
        wire_put_attr_query(&k.req, t, n);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        if (k.has_reply && (rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
                            rv == CKR_BUFFER_TOO_SMALL)) {
                _cleanup_free_ CK_ATTRIBUTE *res = NULL;
                CK_ULONG rn;
                if (!wire_get_attr_result(&k.rep, &res, &rn) || !call_done(&k) || rn != n) {
                        rv = CKR_DEVICE_ERROR;
                        goto out;
                }
                /* Check everything before touching the caller's template. */
                for (CK_ULONG i = 0; i < n; i++) {
                        if (res[i].type != t[i].type) {
                                rv = CKR_DEVICE_ERROR;
                                goto out;
                        }
                        if (res[i].pValue && (!t[i].pValue || res[i].ulValueLen > t[i].ulValueLen)) {
                                rv = CKR_DEVICE_ERROR;
                                goto out;
                        }
                }
                for (CK_ULONG i = 0; i < n; i++) {
                        if (res[i].pValue && res[i].ulValueLen)
                                memcpy(t[i].pValue, res[i].pValue, res[i].ulValueLen);
                        t[i].ulValueLen = res[i].ulValueLen;
                }
        }
out:
        call_end(&k);
        return rv;
}

/* SetAttributeValue ("uuA", on object obj) and FindObjectsInit ("uA") -> "u":
 * the template t of n; secret: wiped, it may hold a key value. */
static CK_RV template_in(struct rpc_client *c, uint16_t op, bool secret, uint64_t gen, CK_SESSION_HANDLE s,
                         const CK_OBJECT_HANDLE *obj, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        struct call k;
        call_start_on(&k, op, secret, s);
        if (obj)
                wire_put_u64(&k.req, *obj);
        wire_put_attrs(&k.req, t, n);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        call_end(&k);
        return rv;
}

CK_RV rpc_set_attribute_value(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                              CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        return template_in(c, WIRE_OP_SET_ATTRIBUTE_VALUE, true, gen, s, &obj, t, n);
}

CK_RV rpc_find_objects_init(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t,
                            CK_ULONG n) {
        return template_in(c, WIRE_OP_FIND_OBJECTS_INIT, false, gen, s, NULL, t, n);
}

CK_RV rpc_find_objects(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR ret,
                       CK_ULONG max, CK_ULONG_PTR ret_count) {
        struct call k;
        call_start_on(&k, WIRE_OP_FIND_OBJECTS, false, s);
        wire_put_u64(&k.req, max > WIRE_MAX_LIST ? WIRE_MAX_LIST : max);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        if (rv == CKR_OK && k.has_reply) {
                _cleanup_free_ CK_ULONG *v = NULL;
                size_t n;
                if (!wire_get_u64_array(&k.rep, &v, &n) || !call_done(&k) || n > max)
                        rv = CKR_DEVICE_ERROR;
                else {
                        if (n)
                                memcpy(ret, v, n * sizeof *v);
                        *ret_count = n;
                }
        }
        call_end(&k);
        return rv;
}

CK_RV rpc_find_objects_final(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s) {
        return session_only(c, WIRE_OP_FIND_OBJECTS_FINAL, gen, s);
}

static bool put_mechanism(struct wire_msg *m, const CK_MECHANISM *mech, struct nbuf *param) {
        CK_MECHANISM enc;
        nbuf_init(param, 4096);
        if (!mechparam_encode(mech, param, &enc))
                return false;
        wire_put_mechanism(m, &enc);
        return true;
}

/* The "uM" start of a request: session s, then mech (false: its parameter
 * cannot be encoded; call_end(k) still needed). */
static bool mech_call_start(struct call *k, uint16_t op, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech) {
        struct nbuf param;
        call_start_on(k, op, false, s);
        bool ok = put_mechanism(&k->req, mech, &param);
        nbuf_done(&param);
        return ok;
}

/* Puts a 'z' field of input data: NULL as no bytes (the daemon's handlers
 * take no NULL data). */
static void put_data(struct call *k, CK_BYTE_PTR data, CK_ULONG len) {
        wire_put_blob(&k->req, data ? data : (CK_BYTE_PTR) "", data ? len : 0);
}

/* The "q" -> "uZ" end of a request that returns bytes: puts the output
 * request, runs the call, takes the output, ends the call. */
static CK_RV out_run(struct rpc_client *c, struct call *k, uint64_t gen, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        CK_ULONG cap = out ? *out_len : 0;
        wire_put_outreq(&k->req, out == NULL, cap);
        CK_RV rv = call_run(c, k, gen, CKR_SESSION_HANDLE_INVALID);
        rv = get_outbytes(k, rv, out, cap, out_len);
        call_end(k);
        return rv;
}

/* The "zq" -> "uZ" rest of a request that returns bytes: the data, then
 * out_run. */
static CK_RV data_out_run(struct rpc_client *c, struct call *k, uint64_t gen, CK_BYTE_PTR data, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        put_data(k, data, len);
        return out_run(c, k, gen, out, out_len);
}

/* The "z" -> "u" rest of a request that only gives bytes; ends the call. */
static CK_RV data_in_run(struct rpc_client *c, struct call *k, uint64_t gen, CK_BYTE_PTR data, CK_ULONG len) {
        put_data(k, data, len);
        CK_RV rv = call_run(c, k, gen, CKR_SESSION_HANDLE_INVALID);
        call_end(k);
        return rv;
}

/* The start of a *Init request ("uMu"), also that of a C_SignInit the
 * module held back and sends with the call that followed it. */
static bool crypt_init_start(struct call *k, uint16_t op, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                            CK_OBJECT_HANDLE key) {
        bool ok = mech_call_start(k, op, s, mech);
        wire_put_u64(&k->req, key);
        return ok;
}

CK_RV rpc_crypt_init(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                     CK_OBJECT_HANDLE key) {
        struct call k;
        if (!crypt_init_start(&k, op, s, mech, key)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        call_end(&k);
        return rv;
}

CK_RV rpc_sign_once(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        struct call k;
        if (!crypt_init_start(&k, WIRE_OP_SIGN_ONCE, s, mech, key)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        return data_out_run(c, &k, gen, data, len, out, out_len);
}

CK_RV rpc_sign_init_update(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                           CK_OBJECT_HANDLE key, CK_BYTE_PTR data, CK_ULONG len) {
        struct call k;
        if (!crypt_init_start(&k, WIRE_OP_SIGN_INIT_UPDATE, s, mech, key)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        return data_in_run(c, &k, gen, data, len);
}

CK_RV rpc_digest_init(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech) {
        struct call k;
        if (!mech_call_start(&k, WIRE_OP_DIGEST_INIT, s, mech)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        call_end(&k);
        return rv;
}

static bool op_input_secret(uint16_t op) {
        /* Encrypt input is plaintext. */
        return op == WIRE_OP_ENCRYPT || op == WIRE_OP_ENCRYPT_UPDATE;
}

CK_RV rpc_data_out(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR data,
                   CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        struct call k;
        call_start_on(&k, op, op_input_secret(op), s);
        return data_out_run(c, &k, gen, data, len, out, out_len);
}

CK_RV rpc_final_out(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                    CK_ULONG_PTR out_len) {
        struct call k;
        call_start_on(&k, op, false, s);
        return out_run(c, &k, gen, out, out_len);
}

CK_RV rpc_data_in(struct rpc_client *c, uint16_t op, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR data,
                  CK_ULONG len) {
        struct call k;
        call_start_on(&k, op, false, s);
        return data_in_run(c, &k, gen, data, len);
}

CK_RV rpc_verify(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len,
                 CK_BYTE_PTR sig, CK_ULONG sig_len) {
        struct call k;
        call_start_on(&k, WIRE_OP_VERIFY, false, s);
        put_data(&k, data, len);
        put_data(&k, sig, sig_len);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        call_end(&k);
        return rv;
}

CK_RV rpc_generate_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                       CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret) {
        struct call k;
        if (!mech_call_start(&k, WIRE_OP_GENERATE_KEY, s, mech)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        wire_put_attrs(&k.req, t, n);
        return run_for_handle(c, &k, gen, ret);
}

CK_RV rpc_wrap_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                   CK_OBJECT_HANDLE wkey, CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        struct call k;
        if (!mech_call_start(&k, WIRE_OP_WRAP_KEY, s, mech)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        wire_put_u64(&k.req, wkey);
        wire_put_u64(&k.req, key);
        return out_run(c, &k, gen, out, out_len);
}

CK_RV rpc_unwrap_key(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                     CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in, CK_ULONG in_len, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR ret) {
        struct call k;
        if (!mech_call_start(&k, WIRE_OP_UNWRAP_KEY, s, mech)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        wire_put_u64(&k.req, ukey);
        put_data(&k, in, in_len);
        wire_put_attrs(&k.req, t, n);
        return run_for_handle(c, &k, gen, ret);
}

CK_RV rpc_generate_key_pair(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech,
                            CK_ATTRIBUTE_PTR pub, CK_ULONG pub_n, CK_ATTRIBUTE_PTR priv, CK_ULONG priv_n,
                            CK_OBJECT_HANDLE_PTR ret_pub, CK_OBJECT_HANDLE_PTR ret_priv) {
        struct call k;
        if (!mech_call_start(&k, WIRE_OP_GENERATE_KEY_PAIR, s, mech)) {
                call_end(&k);
                return CKR_MECHANISM_PARAM_INVALID;
        }
        wire_put_attrs(&k.req, pub, pub_n);
        wire_put_attrs(&k.req, priv, priv_n);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        if (rv == CKR_OK && k.has_reply) {
                uint64_t hp, hk;
                if (!wire_get_u64(&k.rep, &hp) || !wire_get_u64(&k.rep, &hk) || !call_done(&k))
                        rv = CKR_DEVICE_ERROR;
                else {
                        *ret_pub = (CK_OBJECT_HANDLE)hp;
                        *ret_priv = (CK_OBJECT_HANDLE)hk;
                }
        }
        call_end(&k);
        return rv;
}

CK_RV rpc_generate_random(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len) {
        CK_ULONG done = 0;
        do {
                CK_ULONG chunk = len - done > WIRE_RANDOM_MAX ? WIRE_RANDOM_MAX : len - done;
                struct call k;
                call_start_on(&k, WIRE_OP_GENERATE_RANDOM, false, s);
                wire_put_u64(&k.req, chunk);
                CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
                if (rv == CKR_OK && k.has_reply) {
                        const uint8_t *p;
                        size_t n;
                        if (!wire_get_blob(&k.rep, &p, &n) || !call_done(&k) || !p || n != chunk)
                                rv = CKR_DEVICE_ERROR;
                        else if (n)
                                memcpy(out + done, p, n);
                }
                call_end(&k);
                if (rv != CKR_OK)
                        return rv;
                done += chunk;
        } while (done < len);
        return CKR_OK;
}

CK_RV rpc_get_objects(struct rpc_client *c, uint64_t gen, CK_SESSION_HANDLE s, uint8_t **ret, size_t *ret_len) {
        struct call k;
        call_start_on(&k, WIRE_OP_GET_OBJECTS, false, s);
        CK_RV rv = call_run(c, &k, gen, CKR_SESSION_HANDLE_INVALID);
        *ret = NULL;
        *ret_len = 0;
        if (rv == CKR_OK && k.has_reply) {
                const uint8_t *p;
                size_t n;
                if (!wire_get_blob(&k.rep, &p, &n) || !call_done(&k) || !p)
                        rv = CKR_DEVICE_ERROR;
                else if (!(*ret = malloc(n ? n : 1)))
                        rv = CKR_HOST_MEMORY;
                else {
                        memcpy(*ret, p, n);
                        *ret_len = n;
                }
        }
        call_end(&k);
        return rv;
}
