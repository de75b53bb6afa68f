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

struct conn {
        struct server *srv;
        struct bufferevent *bev;  /* NULL once closed; guarded by mu */
        pthread_mutex_t mu;
        struct core_client *cl;
        unsigned refs;            /* guarded by srv->lock */
        unsigned inflight;        /* guarded by mu */
        bool hello;
        bool events;
        bool reading_paused;
        bool partial;             /* a frame has begun but not ended (loop thread) */
        struct core_peer peer;
        struct conn *next;        /* srv->conns, guarded by srv->lock */
};

struct job {
        struct conn *conn;
        uint8_t *frame;           /* NULL: release the connection's client */
        size_t len;
        struct job *next;
};

struct server {
        struct netcad *d;
        struct evconnlistener *listener;
        bool bound_path;
        pthread_mutex_t lock;     /* conns list, refs, job queue */
        pthread_cond_t cond;
        struct conn *conns;
        struct job *head, *tail;
        bool stopping;
        pthread_t *threads;
        unsigned nthreads;
        struct timeval frame_timeout; /* a begun frame must end within this */
};

/* ------------------------------------------------------------------ jobs */

static void job_push(struct server *s, struct job *j) {
        pthread_mutex_lock(&s->lock);
        j->next = NULL;
        if (s->tail)
                s->tail->next = j;
        else
                s->head = j;
        s->tail = j;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

static void conn_unref(struct conn *c);

/* Writes a finished frame to the client, if it is still there. */
static void conn_send(struct conn *c, const uint8_t *p, size_t n) {
        pthread_mutex_lock(&c->mu);
        if (c->bev) {
                bufferevent_write(c->bev, p, n);
                struct evbuffer *out = bufferevent_get_output(c->bev);
                if (evbuffer_get_length(out) > SERVER_MAX_OUTPUT && !c->reading_paused) {
                        c->reading_paused = true;
                        bufferevent_disable(c->bev, EV_READ);
                }
        }
        pthread_mutex_unlock(&c->mu);
}

static void send_error(struct conn *c, uint32_t id, uint16_t op, CK_RV rv) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_PING, id, WIRE_F_REPLY | WIRE_F_ERROR);
        /* The op number of the request is echoed even when unknown. */
        wire_put_u64(&m, rv);
        if (wire_msg_finish(&m) == 0) {
                m.buf.data[8] = (uint8_t)(op >> 8);
                m.buf.data[9] = (uint8_t)op;
                conn_send(c, m.buf.data, m.buf.len);
        }
        wire_msg_done(&m);
}

static void run_request(struct conn *c, const uint8_t *frame, size_t len) {
        struct server *s = c->srv;
        struct wire_msg req;
        int r = wire_msg_init_read(&req, frame, len);
        if (r < 0) {
                send_error(c, req.id, req.opnum, r == -ENOTSUP ? CKR_FUNCTION_NOT_SUPPORTED : CKR_ARGUMENTS_BAD);
                wire_msg_done(&req);
                return;
        }
        if (dispatch_is_p11_op(req.opnum)) {
                struct wire_msg rep;
                memset(&rep, 0, sizeof rep);
                r = dispatch_p11(c->cl, &req, &rep);
                if (r == 0)
                        conn_send(c, rep.buf.data, rep.buf.len);
                else
                        send_error(c, req.id, req.opnum, CKR_HOST_MEMORY);
                wire_msg_done(&rep);
        } else if (mgmt_is_op(req.opnum)) {
                char *json = NULL, *out = NULL;
                if (!wire_get_json(&req, &json) || wire_msg_read_done(&req) < 0 || !json) {
                        send_error(c, req.id, req.opnum, CKR_ARGUMENTS_BAD);
                } else {
                        int st = mgmt_handle(s->d, c->cl, req.opnum, json, &out);
                        struct wire_msg rep;
                        wire_msg_init_write(&rep, req.opnum, req.id, WIRE_F_REPLY);
                        wire_put_u64(&rep, st < 0 ? (uint64_t)-st : (uint64_t)st);
                        wire_put_json(&rep, out ? out : "{\"error\":\"out of memory\",\"errno\":12}");
                        if (wire_msg_finish(&rep) == 0)
                                conn_send(c, rep.buf.data, rep.buf.len);
                        else
                                send_error(c, req.id, req.opnum, CKR_GENERAL_ERROR);
                        wire_msg_done(&rep);
                }
                if (json) {
                        explicit_bzero(json, strlen(json)); /* may hold PINs */
                        free(json);
                }
                free(out);
        } else
                send_error(c, req.id, req.opnum, CKR_FUNCTION_NOT_SUPPORTED);
        wire_msg_done(&req);
}

static void *worker_main(void *arg) {
        struct server *s = arg;
        for (;;) {
                pthread_mutex_lock(&s->lock);
                while (!s->head && !s->stopping)
                        pthread_cond_wait(&s->cond, &s->lock);
                struct job *j = s->head;
                if (!j) {
                        pthread_mutex_unlock(&s->lock);
                        return NULL;
                }
                s->head = j->next;
                if (!s->head)
                        s->tail = NULL;
                pthread_mutex_unlock(&s->lock);

                struct conn *c = j->conn;
                if (j->frame) {
                        run_request(c, j->frame, j->len);
                        explicit_bzero(j->frame, j->len);
                        free(j->frame);
                        pthread_mutex_lock(&c->mu);
                        bool resume = c->inflight-- == SERVER_MAX_INFLIGHT && c->bev && !c->reading_paused;
                        if (resume) {
                                bufferevent_enable(c->bev, EV_READ);
                                bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
                        }
                        pthread_mutex_unlock(&c->mu);
                        conn_unref(c);
                } else {
                        /* Last reference gone: close its sessions, drop logins. */
                        log_debug(LOG_SUB_SERVER, "client pid %d gone", (int)c->peer.pid);
                        core_client_free(c->cl);
                        pthread_mutex_destroy(&c->mu);
                        free(c);
                }
                free(j);
        }
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
        job_push(s, j);
}

/* Loop thread: the client is gone or misbehaved. */
static void conn_close(struct conn *c) {
        pthread_mutex_lock(&c->mu);
        struct bufferevent *bev = c->bev;
        c->bev = NULL;
        pthread_mutex_unlock(&c->mu);
        if (!bev)
                return;
        bufferevent_free(bev);
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

/* HELLO and PING run on the loop.  Returns false to drop the client. */
static bool handle_inline(struct conn *c, const uint8_t *frame, size_t len, uint16_t op) {
        struct wire_msg m;
        if (wire_msg_init_read(&m, frame, len) < 0) {
                wire_msg_done(&m);
                return false;
        }
        bool ok = true;
        if (op == WIRE_OP_HELLO) {
                uint64_t version = 0, caps = 0;
                char *name = NULL;
                if (!wire_get_u64(&m, &version) || !wire_get_u64(&m, &caps) || !wire_get_string(&m, &name) ||
                    wire_msg_read_done(&m) < 0) {
                        free(name);
                        wire_msg_done(&m);
                        return false;
                }
                if ((version >> 16) != WIRE_VERSION_MAJOR) {
                        log_warning("client pid %d speaks protocol %u.%u, not %u.x: refused", (int)c->peer.pid,
                                    (unsigned)(version >> 16), (unsigned)(version & 0xffff), WIRE_VERSION_MAJOR);
                        send_hello_reply(c, m.id, CKR_DEVICE_ERROR);
                        ok = false;
                } else {
                        c->hello = true;
                        c->events = (caps & WIRE_CAP_EVENTS) != 0;
                        log_debug(LOG_SUB_SERVER, "client pid %d (%s) hello, version %u.%u", (int)c->peer.pid,
                                  name ? name : "?", (unsigned)(version >> 16), (unsigned)(version & 0xffff));
                        send_hello_reply(c, m.id, CKR_OK);
                }
                free(name);
        } else { /* PING */
                /* A PING carries nothing; one with a payload is answered
                 * with an error rather than left unanswered. */
                if (wire_msg_read_done(&m) < 0) {
                        send_error(c, m.id, WIRE_OP_PING, CKR_ARGUMENTS_BAD);
                } else {
                        struct wire_msg r;
                        wire_msg_init_write(&r, WIRE_OP_PING, m.id, WIRE_F_REPLY);
                        wire_put_u64(&r, CKR_OK);
                        if (wire_msg_finish(&r) == 0)
                                conn_send(c, r.buf.data, r.buf.len);
                        wire_msg_done(&r);
                }
        }
        wire_msg_done(&m);
        return ok;
}

/* A client may stay idle between frames for as long as it likes, but one
 * that begins a frame and stops sending holds a buffer of up to the frame
 * cap: it gets frame_timeout to finish, then it is dropped.  Loop thread. */
static void conn_set_partial(struct conn *c, bool partial) {
        if (partial == c->partial)
                return;
        c->partial = partial;
        bufferevent_set_timeouts(c->bev, partial ? &c->srv->frame_timeout : NULL, NULL);
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
                        conn_set_partial(c, evbuffer_get_length(in) > 0);
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
                        conn_set_partial(c, true);
                        return;
                }
                uint8_t *frame = malloc(len);
                if (!frame) {
                        conn_close(c);
                        return;
                }
                evbuffer_remove(in, frame, len);
                if (!c->hello && h.op != WIRE_OP_HELLO) {
                        send_error(c, h.id, h.op, CKR_CRYPTOKI_NOT_INITIALIZED);
                        free(frame);
                        continue;
                }
                if (h.op == WIRE_OP_HELLO || h.op == WIRE_OP_PING) {
                        bool ok = handle_inline(c, frame, len, h.op);
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
                pthread_mutex_lock(&s->lock);
                c->refs++;
                pthread_mutex_unlock(&s->lock);
                pthread_mutex_lock(&c->mu);
                c->inflight++;
                pthread_mutex_unlock(&c->mu);
                job_push(s, j);
        }
}

static void write_cb(struct bufferevent *bev, void *arg) {
        struct conn *c = arg;
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
        if (what & BEV_EVENT_TIMEOUT) {
                log_warning("client pid %d began a frame and sent nothing more for %ld ms: dropped",
                            (int)c->peer.pid,
                            (long)c->srv->frame_timeout.tv_sec * 1000 + c->srv->frame_timeout.tv_usec / 1000);
                conn_close(c);
        } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
                conn_close(c);
}

static void fill_peer(int fd, struct core_peer *p, bool *ret_ok) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        memset(p, 0, sizeof *p);
        *ret_ok = false;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return;
        p->pid = cred.pid;
        p->uid = cred.uid;
        p->gid = cred.gid;
        *ret_ok = true;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/exe", (int)cred.pid);
        ssize_t n = readlink(path, p->exe, sizeof p->exe - 1);
        p->exe[n > 0 ? n : 0] = '\0';
        snprintf(path, sizeof path, "/proc/%d/stat", (int)cred.pid);
        FILE *f = fopen(path, "re");
        if (f) {
                char buf[1024];
                size_t m = fread(buf, 1, sizeof buf - 1, f);
                fclose(f);
                buf[m] = '\0';
                char *e = strrchr(buf, ')');
                unsigned long long st = 0;
                /* Fields after "comm)": state is field 3; starttime is 22. */
                if (e && sscanf(e + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                                &st) == 1)
                        p->start_time = st;
        }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int socklen, void *arg) {
        struct server *s = arg;
        struct core_peer peer;
        bool ok;
        fill_peer(fd, &peer, &ok);
        if (!ok || peer.uid != geteuid()) {
                log_warning("refused connection from uid %ld pid %ld (%s): only uid %ld may use this daemon",
                            ok ? (long)peer.uid : -1L, ok ? (long)peer.pid : -1L, peer.exe[0] ? peer.exe : "?",
                            (long)geteuid());
                close(fd);
                return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
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
                close(fd);
                return;
        }
        evutil_make_socket_closeonexec(fd);
        c->bev = bufferevent_socket_new(s->d->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE | BEV_OPT_DEFER_CALLBACKS | BEV_OPT_UNLOCK_CALLBACKS);
        if (!c->bev) {
                core_client_free(c->cl);
                pthread_mutex_destroy(&c->mu);
                free(c);
                close(fd);
                return;
        }
        bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
        bufferevent_setwatermark(c->bev, EV_WRITE, SERVER_MAX_OUTPUT / 2, 0);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        pthread_mutex_lock(&s->lock);
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
        log_debug(LOG_SUB_SERVER, "client pid %d (%s) connected", (int)peer.pid, peer.exe);
}

/* Core events, from any thread: pushed to every client that asked. */
static void on_core_event(void *ud, enum wire_event ev, CK_SLOT_ID slot) {
        struct server *s = ud;
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_EVENT, 0, WIRE_F_EVENT);
        wire_put_u64(&m, ev);
        wire_put_u64(&m, slot);
        wire_put_u64(&m, 0);
        if (wire_msg_finish(&m) == 0) {
                pthread_mutex_lock(&s->lock);
                for (struct conn *c = s->conns; c; c = c->next)
                        if (c->events && c->hello)
                                conn_send(c, m.buf.data, m.buf.len);
                pthread_mutex_unlock(&s->lock);
        }
        wire_msg_done(&m);
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

int server_new(struct netcad *d, int listen_fd, unsigned workers, struct server **ret) {
        struct server *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->d = d;
        unsigned long ms = 10000;
        const char *e = getenv("NETCA_FRAME_TIMEOUT_MS");
        if (e && *e) {
                char *end;
                unsigned long v = strtoul(e, &end, 10);
                if (*end == '\0' && v > 0 && v <= 3600000)
                        ms = v;
                else
                        log_warning("NETCA_FRAME_TIMEOUT_MS=%s is not a number of milliseconds in 1..3600000: "
                                    "using %lu",
                                    e, ms);
        }
        s->frame_timeout.tv_sec = (time_t)(ms / 1000);
        s->frame_timeout.tv_usec = (suseconds_t)(ms % 1000) * 1000;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
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
        s->threads = calloc(workers, sizeof *s->threads);
        if (!s->threads) {
                server_free(s);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < workers; i++) {
                if (pthread_create(&s->threads[i], NULL, worker_main, s) != 0) {
                        server_free(s);
                        return -EAGAIN;
                }
                s->nthreads++;
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
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < s->nthreads; i++)
                pthread_join(s->threads[i], NULL);
        free(s->threads);
        if (s->bound_path && s->d->socket_path)
                (void)unlink(s->d->socket_path);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}
