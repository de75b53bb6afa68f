/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "common/wire.h"
#include "core.h"
#include "dispatch.h"
#include "mgmt.h"
#include "netcad.h"
#include "peer.h"

/* Scheduling.  Requests run on worker threads grouped in lanes, so that a
 * slow token can only ever hold up its own requests:
 *
 *   general  `workers` threads (--workers, default 8) for everything that
 *            touches no device: slot/token/session/mechanism info, open
 *            session, find and attribute reads on a token whose objects are
 *            cached, verify/encrypt/digest (daemon-side crypto), management;
 *   token    one lane per slot, for the requests that call into its driver
 *            (sign/decrypt, login/logout, PIN changes, object writes, key
 *            generation, random, close session, and the first read of a
 *            token's objects).  Threads start on demand, up to 1 for a driver
 *            that does one thing at a time (its token lock would serialize
 *            them anyway) or max(2, CPUs) for one that signs in parallel
 *            (driver_ops.parallel_crypto), and end after LANE_LINGER_MS idle;
 *   release  up to 2 threads that close a departed client's sessions (which
 *            may log out of, or destroy objects on, a busy token).
 * A token lane never borrows a general worker, and the general lane does
 * not wait for tokens (it calls drivers only for get_info, answered from
 * memory by contract, and reloads objects only if C_InitToken dropped them
 * between routing and running), so however many requests a slow token has
 * queued, other tokens and info calls run at once.  (A blocked C_WaitForSlotEvent never
 * reaches the daemon: the module answers it from pushed events.)
 *
 *   loop     the event loop thread itself runs a request that touches no
 *            device and is small (INLINE_MAX_FRAME): slot/token/session/
 *            mechanism info, open session, C_*Init, find and attribute reads
 *            on a token whose objects are cached, digest of short data
 *            (not public-key work: route SESSION_CPU).  Handing these to a worker cost a wake-up and two
 *            context switches per request, which on the benchmark machine
 *            was most of the daemon's kernel time (issue 3).  What needs a
 *            token's objects read first is refused by the core at once
 *            (core_set_nowait) and goes to the token's lane instead, so the
 *            loop never waits for a device.
 *
 * Order: requests of one connection on the same session run one at a time,
 * in the order they arrived, even when they go to different lanes (e.g. a
 * C_SignInit on the general lane and the C_Sign after it on the token's):
 * a later one waits, outside any lane, until the earlier one has finished.
 * Requests on different sessions, or on no session, may run concurrently
 * and complete in any order (replies carry the request id).
 *
 * Locks: srv->lock (lanes, queues, thread counts, conns list, refs) before
 * conn->mu (bufferevent, inflight, the session chains); never the other way
 * round. */

#define LANE_LINGER_MS 5000
#define INLINE_MAX_FRAME 4096
#define RELEASE_THREADS 2
#define ACCEPT_PAUSE_MS 250       /* out of fds: no accept() for this long (nginx: 500) */
#define REFUSAL_LOG_SECONDS 10    /* refusals are logged once per this */

struct job;

struct conn {
        struct server *srv;
        struct bufferevent *bev;  /* NULL once closed; guarded by mu */
        pthread_mutex_t mu;
        struct core_client *cl;
        unsigned refs;            /* guarded by srv->lock */
        unsigned inflight;        /* guarded by mu */
        struct job *active;       /* session jobs dispatched, one per session; guarded by mu */
        struct job *parked, *parked_tail; /* jobs waiting for the client to read (job_park); mu */
        bool hello;
        bool events;
        bool reading_paused;
        bool partial;             /* a frame has begun but not ended (loop thread) */
        bool open;                /* holds its socket, counted in srv->nconns (srv->lock) */
        bool resync;              /* events were left out: a RESYNC is owed (mu) */
        bool overflowed;          /* to be dropped for unread events (mu) */
        size_t held;              /* bytes of that frame buffered, in srv->incomplete (loop thread) */
        struct event *deadline;   /* ends the connection if that frame is not complete in time */
        struct core_peer peer;
        struct conn *next;        /* srv->conns, guarded by srv->lock */
};

struct job {
        struct conn *conn;
        uint8_t *frame;           /* NULL: release the connection's client */
        size_t len;
        enum wire_route route;
        uint16_t op;
        uint64_t key;             /* the first argument: slot or session handle */
        uint64_t arrival;         /* core_arrival_now() when read */
        struct job *next;         /* lane queue */
        /* Session chains (under conn->mu): an active job holds the jobs that
         * arrived after it for the same session, in order. */
        struct job *active_next;
        struct job *waiters, *waiters_tail, *waiter_next;
};

struct lane {
        struct server *srv;
        CK_SLOT_ID slot;          /* token lanes */
        bool token;
        unsigned keep;            /* threads that never linger out */
        unsigned cap;             /* most threads at once */
        unsigned nthreads, idle, queued; /* under srv->lock */
        struct job *head, *tail;
        pthread_cond_t cond;
        struct lane *next;        /* srv->lanes (token lanes) */
};

struct wthread {
        pthread_t tid;
        struct lane *lane;
        struct wthread *next;     /* srv->dead once it has ended */
};

struct server {
        struct netcad *d;
        struct evconnlistener *listener;
        bool bound_path;
        pthread_mutex_t lock;     /* conns list, refs, lanes */
        pthread_cond_t done;      /* alive reached 0 */
        struct conn *conns;
        struct lane general, release;
        struct lane *lanes;
        unsigned token_cap;       /* threads of a parallel token's lane */
        unsigned long released;   /* clients released (atomic) */
        unsigned alive;           /* worker threads started and not yet ended */
        struct wthread *dead;     /* ended, to be joined */
        bool stopping;
        struct timeval frame_timeout; /* a begun frame must end within this */
        size_t incomplete;        /* bytes of incomplete frames buffered, all clients (loop thread) */
        size_t incomplete_max;    /* NETCA_MAX_INCOMPLETE_KB */
        size_t output_max;        /* NETCA_MAX_OUTPUT_KB: unsent output that stops a client's requests */
        unsigned nconns;          /* connections holding a socket (lock) */
        unsigned max_conns;       /* NETCA_MAX_CONNECTIONS */
        unsigned max_conns_pid;   /* NETCA_MAX_CONNECTIONS_PER_PROCESS */
        size_t event_output_max;  /* NETCA_MAX_EVENT_OUTPUT_KB */
        bool event_drop;          /* NETCA_EVENT_OVERFLOW=drop (else resync) */
        int spare_fd;             /* given up to accept-and-close when out of fds; -1 */
        struct event *accept_resume; /* re-enables the listener after ACCEPT_PAUSE_MS */
        time_t refused_logged;    /* refusals: last logged (loop thread) */
        unsigned long refused;    /* refused since */
};

/* ------------------------------------------------------------- routing */

/* Where a request goes: its row of the op table (common/wire.h).  An
 * unknown op, or an event sent as a request, runs on the general lane,
 * where it gets its error reply (the LOOP ops never get here). */
static enum wire_route op_route(uint16_t op) {
        const struct wire_op *o = wire_op_lookup(op);
        return o && o->route != WIRE_ROUTE_LOOP ? o->route : WIRE_ROUTE_GENERAL;
}

static bool route_has_session(enum wire_route r) {
        return r == WIRE_ROUTE_SESSION || r == WIRE_ROUTE_SESSION_LOAD || r == WIRE_ROUTE_SESSION_DEVICE ||
               r == WIRE_ROUTE_SESSION_CPU;
}

/* Classifies a request frame (header already checked): its route and first
 * argument.  A payload too short for the argument runs on the general lane,
 * where it fails to decode. */
static void job_classify(struct job *j, uint16_t op) {
        j->op = op;
        j->route = op_route(op);
        if (j->route == WIRE_ROUTE_GENERAL)
                return;
        if (wire_frame_first_u64(j->frame, j->len, &j->key) < 0)
                j->route = WIRE_ROUTE_GENERAL;
}

/* ---------------------------------------------------------------- lanes */

static void *lane_main(void *arg);

static void lane_init(struct lane *l, struct server *s, unsigned keep, unsigned cap) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cond, &ca);
        pthread_condattr_destroy(&ca);
        l->srv = s;
        l->keep = keep;
        l->cap = cap;
}

/* The lane of a token's slot, made on first use.  NULL on -ENOMEM. */
static struct lane *lane_get_locked(struct server *s, CK_SLOT_ID slot, bool parallel) {
        for (struct lane *l = s->lanes; l; l = l->next)
                if (l->slot == slot)
                        return l;
        struct lane *l = calloc(1, sizeof *l);
        if (!l)
                return NULL;
        lane_init(l, s, 0, parallel ? s->token_cap : 1);
        l->token = true;
        l->slot = slot;
        l->next = s->lanes;
        s->lanes = l;
        return l;
}

/* Queues j.  Returns true when the caller must start a thread for the lane
 * (counted already) with lane_spawn() once it has dropped the lock: there
 * are more queued jobs than idle threads, and room for one more. */
static bool lane_push_locked(struct lane *l, struct job *j) {
        j->next = NULL;
        if (l->tail)
                l->tail->next = j;
        else
                l->head = j;
        l->tail = j;
        l->queued++;
        if (l->queued > l->idle && l->nthreads < l->cap) {
                l->nthreads++;
                l->srv->alive++;
                return true;
        }
        pthread_cond_signal(&l->cond);
        return false;
}

static void job_run(struct server *s, struct job *j);
static bool job_inline_ok(const struct job *j);
static void job_run_inline(struct server *s, struct job *j);

/* Joins the threads that have ended. */
static void reap_dead(struct server *s) {
        pthread_mutex_lock(&s->lock);
        struct wthread *w = s->dead;
        s->dead = NULL;
        pthread_mutex_unlock(&s->lock);
        while (w) {
                struct wthread *n = w->next;
                pthread_join(w->tid, NULL);
                free(w);
                w = n;
        }
}

/* Starts the thread lane_push_locked() asked for.  If that fails and the
 * lane has no thread at all, its jobs move to the general lane (which
 * always has its threads), or, when even that has none, run here. */
static void lane_spawn(struct server *s, struct lane *l) {
        reap_dead(s);
        struct wthread *w = calloc(1, sizeof *w);
        if (w) {
                w->lane = l;
                if (pthread_create(&w->tid, NULL, lane_main, w) == 0)
                        return;
                free(w);
        }
        log_warning("cannot start a worker thread: %s", w ? "pthread_create failed" : "out of memory");
        pthread_mutex_lock(&s->lock);
        l->nthreads--;
        s->alive--;
        if (s->alive == 0)
                pthread_cond_broadcast(&s->done);
        struct job *orphans = NULL;
        if (l->nthreads == 0 && l != &s->general) {
                orphans = l->head;
                l->head = l->tail = NULL;
                l->queued = 0;
        }
        bool inline_run = s->general.nthreads == 0;
        if (orphans && !inline_run)
                while (orphans) {
                        struct job *n = orphans->next;
                        (void)lane_push_locked(&s->general, orphans); /* has threads: never asks for one */
                        orphans = n;
                }
        pthread_mutex_unlock(&s->lock);
        while (orphans) {
                struct job *n = orphans->next;
                job_run(s, orphans);
                orphans = n;
        }
}

static void *lane_main(void *arg) {
        struct wthread *w = arg;
        struct lane *l = w->lane;
        struct server *s = l->srv;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                struct job *j = l->head;
                if (j) {
                        l->head = j->next;
                        if (!l->head)
                                l->tail = NULL;
                        l->queued--;
                        pthread_mutex_unlock(&s->lock);
                        job_run(s, j);
                        pthread_mutex_lock(&s->lock);
                        continue;
                }
                if (s->stopping)
                        break;
                bool extra = l->nthreads > l->keep;
                int rc = 0;
                l->idle++;
                if (extra) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_sec += LANE_LINGER_MS / 1000;
                        ts.tv_nsec += (long)(LANE_LINGER_MS % 1000) * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        rc = pthread_cond_timedwait(&l->cond, &s->lock, &ts);
                } else
                        pthread_cond_wait(&l->cond, &s->lock);
                l->idle--;
                if (rc == ETIMEDOUT && !l->head && l->nthreads > l->keep)
                        break;
        }
        l->nthreads--;
        if (l->token && l->nthreads == 0 && !l->head) {
                for (struct lane **pp = &s->lanes; *pp; pp = &(*pp)->next)
                        if (*pp == l) {
                                *pp = l->next;
                                break;
                        }
                pthread_cond_destroy(&l->cond);
                free(l);
        }
        w->next = s->dead;
        s->dead = w;
        if (--s->alive == 0)
                pthread_cond_broadcast(&s->done);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* Hands a job to its lane. */
static void job_dispatch(struct server *s, struct job *j) {
        struct core_route rt;
        bool token = false;
        if (!j->frame)
                ; /* a release: its own lane */
        else if (j->route == WIRE_ROUTE_SLOT_DEVICE)
                token = core_route(j->conn->cl, false, j->key, &rt) == 0;
        else if (j->route == WIRE_ROUTE_SESSION_DEVICE || j->route == WIRE_ROUTE_SESSION_LOAD)
                token = core_route(j->conn->cl, true, j->key, &rt) == 0 &&
                        (j->route == WIRE_ROUTE_SESSION_DEVICE || !rt.loaded);
        pthread_mutex_lock(&s->lock);
        struct lane *l = !j->frame ? &s->release : token ? lane_get_locked(s, rt.slot, rt.parallel) : &s->general;
        if (!l)
                l = &s->general;
        bool spawn = lane_push_locked(l, j);
        pthread_mutex_unlock(&s->lock);
        if (spawn)
                lane_spawn(s, l);
}

/* A new request of a connection: dispatched now, or, if an earlier request
 * on the same session has not finished, queued behind it.  Loop thread. */
static void job_submit(struct server *s, struct job *j) {
        struct conn *c = j->conn;
        if (route_has_session(j->route)) {
                bool held = false;
                pthread_mutex_lock(&c->mu);
                struct job *a;
                for (a = c->active; a; a = a->active_next)
                        if (a->key == j->key)
                                break;
                if (a) {
                        j->waiter_next = NULL;
                        if (a->waiters_tail)
                                a->waiters_tail->waiter_next = j;
                        else
                                a->waiters = j;
                        a->waiters_tail = j;
                        held = true;
                } else {
                        j->active_next = c->active;
                        c->active = j;
                }
                pthread_mutex_unlock(&c->mu);
                if (held)
                        return;
        }
        if (job_inline_ok(j))
                job_run_inline(s, j);
        else
                job_dispatch(s, j);
}

/* j (a session job) has finished: the next one on its session, if any,
 * becomes active and is returned for dispatching.  Under c->mu. */
static struct job *chain_next_locked(struct conn *c, struct job *j) {
        for (struct job **pp = &c->active; *pp; pp = &(*pp)->active_next)
                if (*pp == j) {
                        *pp = j->active_next;
                        break;
                }
        struct job *n = j->waiters;
        if (!n)
                return NULL;
        n->waiters = n->waiter_next;
        n->waiters_tail = n->waiters ? j->waiters_tail : NULL;
        n->waiter_next = NULL;
        n->active_next = c->active;
        c->active = n;
        return n;
}

static void conn_unref(struct conn *c);

/* Writes a finished frame to the client, if it is still there.  Any
 * thread.  A reply or event goes straight to the socket when nothing
 * is queued before it (the usual case: the client waits for it), from the
 * thread that made it; only what the socket does not take at once is queued
 * on the bufferevent for the loop to write.  Through the bufferevent alone,
 * every reply cost the loop a wake-up (eventfd), two epoll_ctl and a
 * context switch: about a third of the daemon's kernel time per request on
 * the benchmark machine (issue 3).  Order is kept: the bufferevent's lock is
 * held, and the loop writes only while its output buffer holds something. */
static void conn_send(struct conn *c, const uint8_t *p, size_t n) {
        pthread_mutex_lock(&c->mu);
        if (c->bev) {
                bufferevent_lock(c->bev);
                struct evbuffer *out = bufferevent_get_output(c->bev);
                if (evbuffer_get_length(out) == 0) {
                        ssize_t w = send(bufferevent_getfd(c->bev), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                        /* An error other than a full socket: queued, the
                         * bufferevent's own write will report it. */
                        if (w > 0) {
                                p += w;
                                n -= (size_t)w;
                        }
                }
                if (n > 0)
                        bufferevent_write(c->bev, p, n);
                if (evbuffer_get_length(out) > c->srv->output_max && !c->reading_paused) {
                        c->reading_paused = true;
                        bufferevent_disable(c->bev, EV_READ);
                }
                bufferevent_unlock(c->bev);
        }
        pthread_mutex_unlock(&c->mu);
}

static void send_error(struct conn *c, uint32_t id, uint16_t op, CK_RV rv) {
        struct wire_msg m;
        if (wire_error_reply(&m, op, id, rv) == 0)
                conn_send(c, m.buf.data, m.buf.len);
        wire_msg_done(&m);
}

/* Runs a request and sends its reply.  Returns false, having sent nothing,
 * when the core found it would have to wait for a device (only under
 * core_set_nowait: see job_run_inline). */
static bool run_request(struct conn *c, const uint8_t *frame, size_t len, uint64_t arrival) {
        struct server *s = c->srv;
        struct wire_msg req;
        bool done = true;
        int r = wire_msg_init_read(&req, frame, len);
        if (r < 0) {
                send_error(c, req.id, req.opnum, r == -ENOTSUP ? CKR_FUNCTION_NOT_SUPPORTED : CKR_ARGUMENTS_BAD);
                wire_msg_done(&req);
                return true;
        }
        struct wire_msg rep;
        memset(&rep, 0, sizeof rep);
        switch (req.op->kind) {
        case WIRE_KIND_P11:
                core_set_arrival(arrival);
                r = dispatch_p11(c->cl, &req, &rep);
                core_clear_arrival();
                break;
        case WIRE_KIND_MGMT:
                r = mgmt_dispatch(s->d, c->cl, &req, &rep);
                break;
        default: /* LOOP ops never reach a lane; PUSH ops are not requests */
                r = wire_error_reply(&rep, req.opnum, req.id, CKR_FUNCTION_NOT_SUPPORTED);
                break;
        }
        if (core_take_would_block())
                done = false;
        else if (r == 0)
                conn_send(c, rep.buf.data, rep.buf.len);
        else
                send_error(c, req.id, req.opnum, CKR_HOST_MEMORY);
        wire_msg_done(&rep);
        wire_msg_done(&req);
        return done;
}

static void job_finish(struct server *s, struct job *j);

/* A client that does not read its replies: while its unsent output is over
 * output_max, its requests wait on it instead of running (the first one to
 * find it over parks; the later ones on its session wait behind it as
 * usual), so that what it makes the daemon hold is bounded by output_max
 * plus the replies already being made.  write_cb runs them again once the
 * client has read (conn_unpark).  Returns true when j was parked.  Any
 * thread. */
static bool job_park(struct conn *c, struct job *j) {
        pthread_mutex_lock(&c->mu);
        bool park = c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) > c->srv->output_max;
        if (park) {
                j->next = NULL;
                if (c->parked_tail)
                        c->parked_tail->next = j;
                else
                        c->parked = j;
                c->parked_tail = j;
        }
        pthread_mutex_unlock(&c->mu);
        return park;
}

/* Hands c's parked jobs to their lanes again: its output went down, or it
 * is closed (they run, their replies go nowhere, and release it). */
static void conn_unpark(struct conn *c) {
        pthread_mutex_lock(&c->mu);
        struct job *j = c->parked;
        c->parked = c->parked_tail = NULL;
        pthread_mutex_unlock(&c->mu);
        while (j) {
                struct job *n = j->next;
                job_dispatch(c->srv, j);
                j = n;
        }
}

/* Runs one job on a worker thread and frees it. */
static void job_run(struct server *s, struct job *j) {
        struct conn *c = j->conn;
        if (!j->frame) {
                /* Last reference gone: close its sessions, drop logins. */
                log_debug(LOG_SUB_SERVER, "client pid %d gone", (int)c->peer.pid);
                core_client_free(c->cl);
                pthread_mutex_destroy(&c->mu);
                free(c);
                free(j);
                __atomic_add_fetch(&s->released, 1, __ATOMIC_RELAXED);
                return;
        }
        if (job_park(c, j))
                return;
        (void)run_request(c, j->frame, j->len, j->arrival);
        job_finish(s, j);
}

/* Whether the loop may run j itself (see "loop" above): a small PKCS#11
 * request that calls no driver, or only reads a token's cached objects. */
static bool job_inline_ok(const struct job *j) {
        if (!j->frame || j->len > INLINE_MAX_FRAME)
                return false;
        if (!dispatch_is_p11_op(j->op))
                return false; /* management: may take long */
        return j->route == WIRE_ROUTE_GENERAL || j->route == WIRE_ROUTE_SESSION || j->route == WIRE_ROUTE_SESSION_LOAD;
}

/* Loop thread: runs j here, or, when the core says it would wait for a
 * device (objects not cached), hands it to its lane like any other. */
static void job_run_inline(struct server *s, struct job *j) {
        if (job_park(j->conn, j))
                return;
        core_set_nowait(true);
        bool done = run_request(j->conn, j->frame, j->len, j->arrival);
        core_set_nowait(false);
        if (done)
                job_finish(s, j);
        else
                job_dispatch(s, j);
}

/* After a request has run: wipes and frees the job, dispatches the next
 * request on its session, and resumes reading if the connection had too
 * many in flight. */
static void job_finish(struct server *s, struct job *j) {
        struct conn *c = j->conn;
        explicit_bzero(j->frame, j->len);
        free(j->frame);
        pthread_mutex_lock(&c->mu);
        struct job *next = route_has_session(j->route) ? chain_next_locked(c, j) : NULL;
        bool resume = c->inflight-- == SERVER_MAX_INFLIGHT && c->bev && !c->reading_paused;
        if (resume) {
                bufferevent_enable(c->bev, EV_READ);
                bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
        }
        pthread_mutex_unlock(&c->mu);
        free(j);
        if (next)
                job_dispatch(s, next);
        conn_unref(c);
}

/* ----------------------------------------------------------- connections */

static void conn_unref(struct conn *c) {
        struct server *s = c->srv;
        pthread_mutex_lock(&s->lock);
        bool last = --c->refs == 0;
        if (last)
                for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
                        if (*pp == c) {
                                *pp = c->next;
                                break;
                        }
        pthread_mutex_unlock(&s->lock);
        if (!last)
                return;
        struct job *j = calloc(1, sizeof *j);
        if (!j) {
                /* Cannot defer: release here. */
                core_client_free(c->cl);
                pthread_mutex_destroy(&c->mu);
                free(c);
                return;
        }
        j->conn = c;
        job_dispatch(s, j);
}

static bool conn_incomplete(struct conn *c, size_t held);

/* Loop thread: the client is gone or misbehaved. */
static void conn_close(struct conn *c) {
        pthread_mutex_lock(&c->mu);
        struct bufferevent *bev = c->bev;
        c->bev = NULL;
        pthread_mutex_unlock(&c->mu);
        if (!bev)
                return;
        (void)conn_incomplete(c, 0);
        event_free(c->deadline);
        c->deadline = NULL;
        pthread_mutex_lock(&c->srv->lock);
        c->open = false;
        c->srv->nconns--;
        pthread_mutex_unlock(&c->srv->lock);
        bufferevent_free(bev);
        conn_unpark(c);
        conn_unref(c);
}

static void send_hello_reply(struct conn *c, uint32_t id, CK_RV rv) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_HELLO, id, WIRE_F_REPLY);
        wire_put_u64(&m, rv);
        wire_put_u64(&m, WIRE_VERSION);
        wire_put_u64(&m, WIRE_CAP_EVENTS | WIRE_CAP_MGMT);
        wire_put_string(&m, "netcad " NETCA_VERSION);
        if (wire_msg_finish(&m) == 0)
                conn_send(c, m.buf.data, m.buf.len);
        wire_msg_done(&m);
}

/* The LOOP ops (HELLO, PING) run on the loop.  A handler returns false to
 * drop the client. */
static bool loop_hello(struct conn *c, struct wire_msg *m) {
        uint64_t version = 0, caps = 0;
        char *name = NULL;
        if (!wire_get_u64(m, &version) || !wire_get_u64(m, &caps) || !wire_get_string(m, &name) ||
            wire_msg_read_done(m) < 0) {
                free(name);
                return false;
        }
        bool ok = true;
        if ((version >> 16) != WIRE_VERSION_MAJOR) {
                log_warning("client pid %d speaks protocol %u.%u, not %u.x: refused", (int)c->peer.pid,
                            (unsigned)(version >> 16), (unsigned)(version & 0xffff), WIRE_VERSION_MAJOR);
                send_hello_reply(c, m->id, CKR_DEVICE_ERROR);
                ok = false;
        } else {
                c->hello = true;
                c->events = (caps & WIRE_CAP_EVENTS) != 0;
                log_debug(LOG_SUB_SERVER, "client pid %d (%s) hello, version %u.%u", (int)c->peer.pid,
                          name ? name : "?", (unsigned)(version >> 16), (unsigned)(version & 0xffff));
                send_hello_reply(c, m->id, CKR_OK);
        }
        free(name);
        return ok;
}

static bool loop_ping(struct conn *c, struct wire_msg *m) {
        /* A PING carries nothing; one with a payload is answered with an
         * error rather than left unanswered. */
        if (wire_msg_read_done(m) < 0) {
                send_error(c, m->id, WIRE_OP_PING, CKR_ARGUMENTS_BAD);
                return true;
        }
        struct wire_msg r;
        wire_msg_init_write(&r, WIRE_OP_PING, m->id, WIRE_F_REPLY);
        wire_put_u64(&r, CKR_OK);
        if (wire_msg_finish(&r) == 0)
                conn_send(c, r.buf.data, r.buf.len);
        wire_msg_done(&r);
        return true;
}

typedef bool (*loop_handler_fn)(struct conn *c, struct wire_msg *m);

/* The handler of each LOOP row of the op table (common/wire.h). */
static const loop_handler_fn loop_handlers[16] = {
#define ROW(name, num, req, rep, kind, route, reply, handler) ROW_##kind(num, handler)
#define ROW_LOOP(num, handler) [num] = handler,
#define ROW_PUSH(num, handler)
#define ROW_P11(num, handler)
#define ROW_MGMT(num, handler)
        WIRE_OPS(ROW)
#undef ROW
#undef ROW_LOOP
#undef ROW_PUSH
#undef ROW_P11
#undef ROW_MGMT
};

static loop_handler_fn loop_handler(uint16_t op) {
        return op < ELEMENTSOF(loop_handlers) ? loop_handlers[op] : NULL;
}

static bool handle_inline(struct conn *c, const uint8_t *frame, size_t len, loop_handler_fn fn) {
        struct wire_msg m;
        bool ok = wire_msg_init_read(&m, frame, len) == 0 && fn(c, &m);
        wire_msg_done(&m);
        return ok;
}

/* A client may stay idle between frames for as long as it likes, but one
 * that begins a frame holds a buffer of up to the frame cap: the whole frame
 * must arrive within frame_timeout of its first byte (a deadline, which
 * bytes trickling in do not restart), and the bytes of incomplete frames of
 * all clients together stay under incomplete_max.  held is what c's
 * incomplete frame holds now (0: none).  Returns false when c must be
 * dropped for taking the total over the cap.  Loop thread. */
static bool conn_incomplete(struct conn *c, size_t held) {
        struct server *s = c->srv;
        bool partial = held > 0;
        if (partial != c->partial) {
                c->partial = partial;
                if (partial)
                        evtimer_add(c->deadline, &s->frame_timeout);
                else
                        evtimer_del(c->deadline);
        }
        s->incomplete = s->incomplete - c->held + held;
        c->held = held;
        if (held == 0 || s->incomplete <= s->incomplete_max)
                return true;
        log_warning("client pid %d: incomplete frames of all clients would hold %zu bytes, over the cap of %zu: "
                    "dropped",
                    (int)c->peer.pid, s->incomplete, s->incomplete_max);
        return false;
}

/* The deadline of an incomplete frame has passed. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
        struct conn *c = arg;
        (void)fd;
        (void)what;
        log_warning("client pid %d began a frame and did not complete it within %ld ms: dropped", (int)c->peer.pid,
                    (long)c->srv->frame_timeout.tv_sec * 1000 + c->srv->frame_timeout.tv_usec / 1000);
        conn_close(c);
}

static void read_cb(struct bufferevent *bev, void *arg) {
        struct conn *c = arg;
        struct server *s = c->srv;
        struct evbuffer *in = bufferevent_get_input(bev);
        for (;;) {
                pthread_mutex_lock(&c->mu);
                bool full = c->inflight >= SERVER_MAX_INFLIGHT || c->reading_paused;
                if (full)
                        bufferevent_disable(bev, EV_READ);
                pthread_mutex_unlock(&c->mu);
                if (full)
                        return;
                uint8_t hdr[WIRE_HDR_SIZE];
                if (evbuffer_copyout(in, hdr, sizeof hdr) < (ssize_t)sizeof hdr) {
                        if (!conn_incomplete(c, evbuffer_get_length(in)))
                                conn_close(c);
                        return;
                }
                struct wire_hdr h;
                int r = wire_hdr_parse(hdr, &h);
                if (r < 0 || (h.flags & (WIRE_F_REPLY | WIRE_F_EVENT))) {
                        log_warning("client pid %d sent a bad frame header (%s): dropped", (int)c->peer.pid,
                                    r == -EMSGSIZE ? "over the size cap" : "malformed");
                        conn_close(c);
                        return;
                }
                size_t len = (size_t)h.len + 4;
                if (evbuffer_get_length(in) < len) {
                        if (!conn_incomplete(c, evbuffer_get_length(in)))
                                conn_close(c);
                        return;
                }
                uint8_t *frame = malloc(len);
                if (!frame) {
                        conn_close(c);
                        return;
                }
                evbuffer_remove(in, frame, len);
                (void)conn_incomplete(c, 0);
                if (!c->hello && h.op != WIRE_OP_HELLO) {
                        send_error(c, h.id, h.op, CKR_CRYPTOKI_NOT_INITIALIZED);
                        free(frame);
                        continue;
                }
                loop_handler_fn lfn = loop_handler(h.op);
                if (lfn) {
                        bool ok = handle_inline(c, frame, len, lfn);
                        free(frame);
                        if (!ok) {
                                /* Let the refusal reach the client before closing. */
                                bufferevent_disable(bev, EV_READ);
                                bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
                                conn_close(c);
                                return;
                        }
                        continue;
                }
                struct job *j = calloc(1, sizeof *j);
                if (!j) {
                        free(frame);
                        conn_close(c);
                        return;
                }
                j->conn = c;
                j->frame = frame;
                j->len = len;
                j->arrival = core_arrival_now();
                job_classify(j, h.op);
                pthread_mutex_lock(&s->lock);
                c->refs++;
                pthread_mutex_unlock(&s->lock);
                pthread_mutex_lock(&c->mu);
                c->inflight++;
                pthread_mutex_unlock(&c->mu);
                job_submit(s, j);
        }
}

static void conn_resync(struct conn *c);

/* The client has read its output down to half of output_max: its parked
 * requests run, and its requests are read again. */
static void write_cb(struct bufferevent *bev, void *arg) {
        struct conn *c = arg;
        conn_unpark(c);
        conn_resync(c);
        pthread_mutex_lock(&c->mu);
        if (c->reading_paused) {
                c->reading_paused = false;
                bufferevent_enable(bev, EV_READ);
                bufferevent_trigger(bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
        }
        pthread_mutex_unlock(&c->mu);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
        struct conn *c = arg;
        pthread_mutex_lock(&c->mu);
        bool overflowed = c->overflowed;
        pthread_mutex_unlock(&c->mu);
        if (overflowed)
                log_warning("client pid %d does not read the events it asked for (over %zu bytes unsent): dropped",
                            (int)c->peer.pid, c->srv->event_output_max);
        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
                conn_close(c);
}

/* A connection refused for a limit (or for want of fds): logged at most
 * once per REFUSAL_LOG_SECONDS, with the count since.  Loop thread. */
static void log_refusal(struct server *s, unsigned long n, const char *why) {
        s->refused += n;
        time_t now = time(NULL);
        if (s->refused_logged && now - s->refused_logged < REFUSAL_LOG_SECONDS)
                return;
        log_warning("%s (connections refused since the last such message: %lu)", why, s->refused);
        s->refused_logged = now;
        s->refused = 0;
}

/* Whether peer may have one more connection: NULL (and it is counted in
 * s->nconns), or why not. */
static const char *conn_admit(struct server *s, const struct core_peer *peer) {
        const char *why = NULL;
        pthread_mutex_lock(&s->lock);
        unsigned mine = 0;
        for (struct conn *c = s->conns; c; c = c->next)
                mine += c->open && c->peer.pid == peer->pid;
        if (s->nconns >= s->max_conns)
                why = "the daemon's connections are at NETCA_MAX_CONNECTIONS";
        else if (mine >= s->max_conns_pid)
                why = "the process's connections are at NETCA_MAX_CONNECTIONS_PER_PROCESS";
        else
                s->nconns++;
        pthread_mutex_unlock(&s->lock);
        return why;
}

/* Undoes conn_admit() for a connection that could not be set up. */
static void conn_uncount(struct server *s) {
        pthread_mutex_lock(&s->lock);
        s->nconns--;
        pthread_mutex_unlock(&s->lock);
}

/* accept() failed.  Out of file descriptors (EMFILE, ENFILE), the pending
 * clients are accepted with the spare fd and closed at once, so that each
 * gets an answer (end of file) instead of a hang; and the listener is off
 * for ACCEPT_PAUSE_MS instead of failing in a loop (its socket stays
 * readable), whatever the error.  Loop thread. */
static void accept_error_cb(struct evconnlistener *l, void *arg) {
        struct server *s = arg;
        int err = EVUTIL_SOCKET_ERROR();
        unsigned long shed = 0;
        if ((err == EMFILE || err == ENFILE) && s->spare_fd >= 0) {
                close(s->spare_fd);
                int fd;
                while ((fd = accept4(evconnlistener_get_fd(l), NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                        close(fd);
                        shed++;
                }
                s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        evconnlistener_disable(l);
        struct timeval tv = { ACCEPT_PAUSE_MS / 1000, (ACCEPT_PAUSE_MS % 1000) * 1000 };
        evtimer_add(s->accept_resume, &tv);
        char why[128];
        snprintf(why, sizeof why, "accept(): %s; not accepting for %d ms", strerror(err), ACCEPT_PAUSE_MS);
        log_refusal(s, shed, why);
}

/* The accept pause is over. */
static void accept_resume_cb(evutil_socket_t fd, short what, void *arg) {
        struct server *s = arg;
        (void)fd;
        (void)what;
        if (s->spare_fd < 0)
                s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        evconnlistener_enable(s->listener);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int socklen, void *arg) {
        struct server *s = arg;
        struct core_peer peer;
        bool ok = peer_from_socket(fd, &peer);
        if (!ok || peer.uid != geteuid()) {
                log_warning("refused connection from uid %ld pid %ld (%s): only uid %ld may use this daemon",
                            ok ? (long)peer.uid : -1L, ok ? (long)peer.pid : -1L, peer.exe[0] ? peer.exe : "?",
                            (long)geteuid());
                close(fd);
                return;
        }
        const char *why = conn_admit(s, &peer);
        if (why) {
                char what[400];
                snprintf(what, sizeof what, "pid %ld (%s): %s", (long)peer.pid, peer.exe[0] ? peer.exe : "?", why);
                log_refusal(s, 1, what);
                close(fd);
                return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
                conn_uncount(s);
                close(fd);
                return;
        }
        c->srv = s;
        c->peer = peer;
        c->refs = 1;
        pthread_mutex_init(&c->mu, NULL);
        if (core_client_new(s->d->core, &peer, &c->cl) < 0) {
                pthread_mutex_destroy(&c->mu);
                free(c);
                conn_uncount(s);
                close(fd);
                return;
        }
        evutil_make_socket_closeonexec(fd);
        c->deadline = evtimer_new(s->d->base, deadline_cb, c);
        c->bev = c->deadline ? bufferevent_socket_new(s->d->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE | BEV_OPT_DEFER_CALLBACKS | BEV_OPT_UNLOCK_CALLBACKS) : NULL;
        if (!c->bev) {
                if (c->deadline)
                        event_free(c->deadline);
                core_client_free(c->cl);
                pthread_mutex_destroy(&c->mu);
                free(c);
                conn_uncount(s);
                close(fd);
                return;
        }
        bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
        bufferevent_setwatermark(c->bev, EV_WRITE, s->output_max / 2, 0);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        pthread_mutex_lock(&s->lock);
        c->open = true;
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
        log_debug(LOG_SUB_SERVER, "client pid %d (%s) connected", (int)peer.pid, peer.exe);
}

/* An event frame.  0 or -ENOMEM; m to be wire_msg_done() either way. */
static int event_msg(struct wire_msg *m, enum wire_event ev, CK_SLOT_ID slot) {
        wire_msg_init_write(m, WIRE_OP_EVENT, 0, WIRE_F_EVENT);
        wire_put_u64(m, ev);
        wire_put_u64(m, slot);
        wire_put_u64(m, 0);
        return wire_msg_finish(m) < 0 ? -ENOMEM : 0;
}

/* Whether c's unsent output is over the cap for pushing events.  Under
 * c->mu, c->bev set. */
static bool events_over_locked(const struct conn *c) {
        return evbuffer_get_length(bufferevent_get_output(c->bev)) > c->srv->event_output_max;
}

/* Sends the RESYNC owed to c, once its unsent output is under the cap
 * again.  Any thread. */
static void conn_resync(struct conn *c) {
        pthread_mutex_lock(&c->mu);
        bool send = c->resync && c->bev && !events_over_locked(c);
        if (send)
                c->resync = false;
        pthread_mutex_unlock(&c->mu);
        struct wire_msg m;
        if (send && event_msg(&m, WIRE_EV_RESYNC, 0) == 0)
                conn_send(c, m.buf.data, m.buf.len);
        if (send)
                wire_msg_done(&m);
}

/* Pushes an event frame to a subscriber.  One that does not read them (a
 * stopped process) is not sent more than event_output_max of unsent
 * output: past it, its events coalesce into one RESYNC, sent once it has
 * read (write_cb), or, with NETCA_EVENT_OVERFLOW=drop, it is dropped.  Any
 * thread. */
static void conn_push_event(struct conn *c, const uint8_t *p, size_t n) {
        pthread_mutex_lock(&c->mu);
        bool over = c->bev && !c->overflowed && events_over_locked(c);
        if (over && c->srv->event_drop) {
                c->overflowed = true;
                bufferevent_trigger_event(c->bev, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
        } else if (over)
                c->resync = true;
        bool skip = over || c->overflowed;
        pthread_mutex_unlock(&c->mu);
        if (skip)
                return;
        conn_resync(c);
        conn_send(c, p, n);
}

/* Core events, from any thread: pushed to every client that asked. */
static void on_core_event(void *ud, enum wire_event ev, CK_SLOT_ID slot) {
        struct server *s = ud;
        struct wire_msg m;
        if (event_msg(&m, ev, slot) == 0) {
                pthread_mutex_lock(&s->lock);
                for (struct conn *c = s->conns; c; c = c->next)
                        if (c->events && c->hello)
                                conn_push_event(c, m.buf.data, m.buf.len);
                pthread_mutex_unlock(&s->lock);
        }
        wire_msg_done(&m);
}

unsigned long server_released(struct server *s) {
        return __atomic_load_n(&s->released, __ATOMIC_RELAXED);
}

unsigned server_clients(struct server *s) {
        unsigned n = 0;
        pthread_mutex_lock(&s->lock);
        for (struct conn *c = s->conns; c; c = c->next)
                n++;
        pthread_mutex_unlock(&s->lock);
        return n;
}

static int bind_socket(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* Someone answering there already? */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
                bool alive = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
                close(probe);
                if (alive) {
                        close(fd);
                        return -EADDRINUSE;
                }
        }
        (void)unlink(path);
        mode_t old = umask(0177);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* NETCA_MAX_CONNECTIONS's default: the fd limit less FD_RESERVE for the
 * daemon's own files (tokens, state, USB), at least 16. */
#define FD_RESERVE 64
static unsigned long default_max_conns(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20))
                return 1u << 20;
        return rl.rlim_cur > FD_RESERVE + 16 ? rl.rlim_cur - FD_RESERVE : 16;
}

/* A limit from the environment: NAME's value when it is a number in
 * min..max, else def (and a warning). */
static unsigned long env_limit(const char *name, unsigned long def, unsigned long min, unsigned long max) {
        const char *e = getenv(name);
        if (!e || !*e)
                return def;
        char *end;
        errno = 0;
        unsigned long v = strtoul(e, &end, 10);
        if (*end == '\0' && errno == 0 && e[0] >= '0' && e[0] <= '9' && v >= min && v <= max)
                return v;
        log_warning("%s=%s is not a number in %lu..%lu: using %lu", name, e, min, max, def);
        return def;
}

int server_new(struct netcad *d, int listen_fd, unsigned workers, struct server **ret) {
        struct server *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->d = d;
        unsigned long ms = env_limit("NETCA_FRAME_TIMEOUT_MS", 10000, 1, 3600000);
        s->incomplete_max = (size_t)env_limit("NETCA_MAX_INCOMPLETE_KB", 16384, 1, 4u << 20) * 1024;
        s->output_max = (size_t)env_limit("NETCA_MAX_OUTPUT_KB", 8192, 64, 4u << 20) * 1024;
        s->max_conns = (unsigned)env_limit("NETCA_MAX_CONNECTIONS", default_max_conns(), 1, 1u << 20);
        s->max_conns_pid = (unsigned)env_limit("NETCA_MAX_CONNECTIONS_PER_PROCESS", 64, 1, 1u << 20);
        s->event_output_max = (size_t)env_limit("NETCA_MAX_EVENT_OUTPUT_KB", 64, 1, 1u << 20) * 1024;
        const char *e = getenv("NETCA_EVENT_OVERFLOW");
        s->event_drop = e && strcmp(e, "drop") == 0;
        if (e && *e && !s->event_drop && strcmp(e, "resync") != 0)
                log_warning("NETCA_EVENT_OVERFLOW=%s is neither resync nor drop: using resync", e);
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        s->frame_timeout.tv_sec = (time_t)(ms / 1000);
        s->frame_timeout.tv_usec = (suseconds_t)(ms % 1000) * 1000;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->done, NULL);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        s->token_cap = ncpu > 2 ? (unsigned)(ncpu > 64 ? 64 : ncpu) : 2;
        lane_init(&s->general, s, workers, workers);
        lane_init(&s->release, s, 0, RELEASE_THREADS);
        int fd = listen_fd, r;
        if (fd < 0) {
                if ((r = bind_socket(d->socket_path, &fd)) < 0) {
                        server_free(s);
                        return r;
                }
                s->bound_path = true;
        } else
                evutil_make_socket_nonblocking(fd);
        s->listener = evconnlistener_new(d->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_THREADSAFE, -1, fd);
        if (!s->listener) {
                close(fd);
                server_free(s);
                return -ENOMEM;
        }
        evconnlistener_set_error_cb(s->listener, accept_error_cb);
        s->accept_resume = evtimer_new(d->base, accept_resume_cb, s);
        if (!s->accept_resume) {
                server_free(s);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < workers; i++) {
                struct wthread *w = calloc(1, sizeof *w);
                if (!w) {
                        server_free(s);
                        return -ENOMEM;
                }
                w->lane = &s->general;
                pthread_mutex_lock(&s->lock);
                s->general.nthreads++;
                s->alive++;
                pthread_mutex_unlock(&s->lock);
                if (pthread_create(&w->tid, NULL, lane_main, w) != 0) {
                        free(w);
                        pthread_mutex_lock(&s->lock);
                        s->general.nthreads--;
                        s->alive--;
                        pthread_mutex_unlock(&s->lock);
                        server_free(s);
                        return -EAGAIN;
                }
        }
        core_set_event_sink(d->core, on_core_event, s);
        *ret = s;
        return 0;
}

struct server *server_free(struct server *s) {
        if (!s)
                return NULL;
        if (s->d && s->d->core)
                core_set_event_sink(s->d->core, NULL, NULL);
        if (s->listener)
                evconnlistener_free(s->listener);
        if (s->accept_resume)
                event_free(s->accept_resume);
        if (s->spare_fd >= 0)
                close(s->spare_fd);
        /* Close every client; their jobs release them. */
        for (;;) {
                pthread_mutex_lock(&s->lock);
                struct conn *c = s->conns;
                while (c && !c->bev)
                        c = c->next;
                pthread_mutex_unlock(&s->lock);
                if (!c)
                        break;
                conn_close(c);
        }
        /* Every queued job still runs (a job may queue the next one of its
         * session, or a release, and starts a thread for it if needed);
         * each thread ends when its lane is empty. */
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->general.cond);
        pthread_cond_broadcast(&s->release.cond);
        for (struct lane *l = s->lanes; l; l = l->next)
                pthread_cond_broadcast(&l->cond);
        while (s->alive > 0)
                pthread_cond_wait(&s->done, &s->lock);
        pthread_mutex_unlock(&s->lock);
        reap_dead(s);
        while (s->lanes) {
                struct lane *l = s->lanes;
                s->lanes = l->next;
                pthread_cond_destroy(&l->cond);
                free(l);
        }
        if (s->bound_path && s->d->socket_path)
                (void)unlink(s->d->socket_path);
        pthread_cond_destroy(&s->general.cond);
        pthread_cond_destroy(&s->release.cond);
        pthread_cond_destroy(&s->done);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}
