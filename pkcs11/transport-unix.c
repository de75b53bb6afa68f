/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Unix socket transport to netcad.
 *
 * One connection, many calls in flight: each call registers a pending entry
 * under a fresh request id, writes its frame (writes are serialized), and
 * sleeps on its own condition variable.  A reader thread reads every frame
 * and hands replies to the pending entry with the same id; events (id 0,
 * WIRE_F_EVENT) go to the event callback.  When the connection breaks, the
 * reader fails every pending call with -ECONNRESET and exits.
 *
 * Without threads (the application said CKF_LIBRARY_CANT_CREATE_OS_THREADS,
 * as GnuTLS does through p11-kit): no reader thread.  A caller waiting for
 * its reply becomes the reader while nobody else reads, hands the frames it
 * reads to their callers (events to the event callback), and passes the
 * reading on to another waiter once its own reply has come.  Events then
 * arrive only while calls are in flight.
 *
 * With threads, the reader thread is started late: a connection begins the
 * threadless way, and start_events (which the module calls once it has
 * answered from what it keeps, and before waiting for a slot event) starts
 * the reader, after taking in what the daemon already sent.  A fresh process
 * that asks for the slot list and a token's info and finalizes (issue 3's
 * "fresh process" latency) never pays for creating and joining a thread;
 * what the module keeps is never used before the reader runs, so it stays
 * exact the same way.
 *
 * A guest in someone else's process: no signal handler is touched (sends use
 * MSG_NOSIGNAL; the reader thread blocks every signal), every fd is
 * O_CLOEXEC, nothing is printed.  After fork() the child only closes its copy
 * of the fd (forget), which leaves the parent's connection alone. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "common/log.h"
#include "common/wire-client.h"
#include "common/util.h"
#include "rpc-client.h"

#define HELLO_TIMEOUT_MS 10000
#define AUTOSTART_WAIT_MS 3000
#define AUTOSTART_RETRY_MS 10000
#define CLIENT_NAME "netca-pkcs11"

struct pending {
        uint32_t id;
        bool done;
        int error;
        uint8_t *frame;
        size_t len;
        pthread_cond_t cond;
        struct pending *next;
};

struct unix_transport {
        struct rpc_transport base;
        char *path;
        bool autostart;
        int64_t last_autostart_ms;   /* a failed start is not retried at once */

        pthread_mutex_t lock;    /* fd state, pending list, next_id */
        pthread_mutex_t wlock;   /* one writer at a time */
        int fd;
        bool dead;               /* reader saw the end, or a write failed */
        bool reader_started;
        bool may_thread;         /* the application lets us create a thread */
        bool threaded;           /* the reader thread runs; false: callers read */
        bool reading;            /* threadless: a caller is reading */
        pthread_t reader;
        uint32_t next_id;
        struct pending *pending;
};

/* With t->lock held. */
static void fail_pending_locked(struct unix_transport *t, int error) {
        for (struct pending *p = t->pending; p; p = p->next) {
                if (p->done)
                        continue;
                p->done = true;
                p->error = error;
                pthread_cond_signal(&p->cond);
        }
}

static void handle_event(struct unix_transport *t, const uint8_t *frame, size_t len) {
        struct wire_msg m;
        uint64_t kind, slot, aux;
        if (wire_msg_init_read(&m, frame, len) < 0 || m.opnum != WIRE_OP_EVENT || !wire_get_u64(&m, &kind) ||
            !wire_get_u64(&m, &slot) || !wire_get_u64(&m, &aux) || wire_msg_read_done(&m) < 0) {
                log_debug(LOG_SUB_MODULE, "malformed event ignored");
                return;
        }
        log_debug(LOG_SUB_MODULE, "event %llu slot %llu", (unsigned long long)kind, (unsigned long long)slot);
        if (t->base.on_event)
                t->base.on_event(t->base.event_userdata, kind, slot, aux);
}

/* Hands one frame read from the socket to its destination; takes f. */
static void route_frame(struct unix_transport *t, uint8_t *f, size_t len) {
        struct wire_hdr h;
        (void)wire_hdr_parse(f, &h);
        if (h.flags & WIRE_F_EVENT) {
                handle_event(t, f, len);
                free(f);
                return;
        }
        if (!(h.flags & WIRE_F_REPLY)) {
                free(f);
                return;
        }
        pthread_mutex_lock(&t->lock);
        struct pending *p = t->pending;
        while (p && p->id != h.id)
                p = p->next;
        if (p && !p->done) {
                p->frame = f;
                p->len = len;
                p->done = true;
                pthread_cond_signal(&p->cond);
                f = NULL;
        }
        pthread_mutex_unlock(&t->lock);
        if (f) {
                log_debug(LOG_SUB_MODULE, "reply for unknown request id %u dropped", h.id);
                explicit_bzero(f, len);
                free(f);
        }
}

static void connection_ended(struct unix_transport *t, int r) {
        log_debug(LOG_SUB_MODULE, "connection to netcad ended: %s", strerror(-r));
        pthread_mutex_lock(&t->lock);
        t->dead = true;
        fail_pending_locked(t, -ECONNRESET);
        pthread_mutex_unlock(&t->lock);
        if (t->base.on_event)
                t->base.on_event(t->base.event_userdata, RPC_EV_CONNECTION, 0, 0);
}

static void *reader_main(void *userdata) {
        struct unix_transport *t = userdata;
        int fd = t->fd;   /* stable while the reader runs */
        int r;
        for (;;) {
                uint8_t *f = NULL;
                size_t len = 0;
                r = wire_read_frame(fd, -1, &f, &len);
                if (r < 0)
                        break;
                route_frame(t, f, len);
        }
        connection_ended(t, r);
        return NULL;
}

/* Passes the reading on to a caller still waiting for its reply (threadless;
 * t->lock held). */
static void hand_off_reading_locked(struct unix_transport *t, struct pending *except) {
        for (struct pending *o = t->pending; o; o = o->next)
                if (o != except && !o->done) {
                        pthread_cond_signal(&o->cond);
                        break;
                }
}

/* Threadless: wait for p's reply, reading for everybody while nobody else
 * does.  Called and returns with t->lock held. */
static void wait_reading(struct unix_transport *t, struct pending *p, int fd) {
        while (!p->done) {
                if (t->reading || t->dead || t->threaded) {
                        if (t->dead && !t->reading)
                                fail_pending_locked(t, -ECONNRESET);
                        else
                                pthread_cond_wait(&p->cond, &t->lock);
                        continue;
                }
                t->reading = true;
                pthread_mutex_unlock(&t->lock);
                uint8_t *f = NULL;
                size_t len = 0;
                int r = wire_read_frame(fd, -1, &f, &len);
                if (r < 0)
                        connection_ended(t, r);
                else
                        route_frame(t, f, len);
                pthread_mutex_lock(&t->lock);
                t->reading = false;
        }
        /* Pass the reading on to a caller still waiting. */
        hand_off_reading_locked(t, p);
}

/* Threadless: reads what the daemon has already sent (events, and replies
 * for others), without waiting for more, so that what the module keeps is
 * as fresh as the events received.  A no-op with the reader thread, or
 * while another caller reads. */
static int start_reader_locked(struct unix_transport *t);
static void drain(struct unix_transport *t, int fd);

/* Takes in what was sent, then (start) starts the reader thread. */
static void take_in(struct unix_transport *t, bool start) {
        pthread_mutex_lock(&t->lock);
        if (t->threaded || t->reading || t->dead || t->fd < 0 || (start && !t->may_thread)) {
                pthread_mutex_unlock(&t->lock);
                return;
        }
        t->reading = true;
        int fd = t->fd;
        pthread_mutex_unlock(&t->lock);
        drain(t, fd);
        pthread_mutex_lock(&t->lock);
        t->reading = false;
        /* From now on the reader thread reads. */
        if (start && !t->dead && start_reader_locked(t) == 0)
                __atomic_store_n(&t->base.poll_before_use, false, __ATOMIC_RELEASE);
        hand_off_reading_locked(t, NULL);
        pthread_mutex_unlock(&t->lock);
}

static void ut_poll_events(struct rpc_transport *base) {
        take_in((struct unix_transport *)base, false);
}

static void ut_start_events(struct rpc_transport *base) {
        take_in((struct unix_transport *)base, true);
}

/* Reads the frames the daemon has already sent, without waiting for more
 * (t->reading set by the caller). */
static void drain(struct unix_transport *t, int fd) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 0) <= 0)
                        break;
                uint8_t *f = NULL;
                size_t len = 0;
                /* A frame begun is finished quickly; a stall is a failure. */
                int r = wire_read_frame(fd, 1000, &f, &len);
                if (r < 0) {
                        connection_ended(t, r);
                        break;
                }
                route_frame(t, f, len);
        }
}

static int hello(int fd) {
        struct wire_hello_info info;
        int r = wire_hello(fd, WIRE_CAP_EVENTS, CLIENT_NAME, HELLO_TIMEOUT_MS, &info);
        if (r == 0)
                log_debug(LOG_SUB_MODULE, "netcad %s: protocol %llu.%llu caps 0x%llx", info.name,
                          (unsigned long long)(info.version >> 16), (unsigned long long)(info.version & 0xffff),
                          (unsigned long long)info.caps);
        else
                log_debug(LOG_SUB_MODULE, "HELLO (module protocol %u.%u): %s", WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR,
                          strerror(-r));
        return r;
}

static bool autostart_enabled(const struct unix_transport *t) {
        const char *e = secure_getenv("NETCA_AUTOSTART");
        if (e && (strcmp(e, "0") == 0 || strcmp(e, "no") == 0 || strcmp(e, "false") == 0))
                return false;
        return t->autostart;
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts netcad detached (double fork, new session, stdio on /dev/null).
 * Only async-signal-safe calls between fork and exec. */
static int spawn_daemon(const char *sock_path) {
        const char *daemon = secure_getenv("NETCA_DAEMON");
        if (!daemon || !*daemon)
                daemon = NETCA_BINDIR "/netcad";
        if (access(daemon, X_OK) < 0) {
                log_debug(LOG_SUB_MODULE, "autostart: %s: %s", daemon, strerror(errno));
                return -errno;
        }
        const char *data_dir = secure_getenv("NETCA_DATA_DIR");
        const char *argv[8];
        size_t i = 0;
        argv[i++] = daemon;
        argv[i++] = "--foreground";
        argv[i++] = "--socket";
        argv[i++] = sock_path;
        if (data_dir && *data_dir) {
                argv[i++] = "--data-dir";
                argv[i++] = data_dir;
        }
        argv[i] = NULL;

        /* The socket directory, private to the user. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", sock_path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                (void)mkdir(dir, 0700);
        }

        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(devnull);
                return r;
        }
        if (pid == 0) {
                sigset_t none;
                struct sigaction dfl = { .sa_handler = SIG_DFL };
                (void)setsid();
                pid_t pid2 = fork();
                if (pid2 != 0)
                        _exit(pid2 < 0 ? 1 : 0);
                /* The daemon starts with a clean signal state, not the
                 * application's. */
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                sigaction(SIGTERM, &dfl, NULL);
                sigaction(SIGINT, &dfl, NULL);
                sigaction(SIGHUP, &dfl, NULL);
                dup2(devnull, 0);
                dup2(devnull, 1);
                dup2(devnull, 2);
                close_range(3, ~0U, 0);
                execv(daemon, (char *const *)argv);
                _exit(127);
        }
        close(devnull);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        log_debug(LOG_SUB_MODULE, "autostart: started %s --socket %s", daemon, sock_path);
        return 0;
}

static int ut_connect(struct rpc_transport *base) {
        struct unix_transport *t = (struct unix_transport *)base;
        int fd = -1, r;

        r = wire_connect(t->path, &fd);
        if ((r == -ENOENT || r == -ECONNREFUSED) && autostart_enabled(t) &&
            (t->last_autostart_ms == 0 || now_ms() - t->last_autostart_ms > AUTOSTART_RETRY_MS)) {
                t->last_autostart_ms = now_ms();
                if (spawn_daemon(t->path) == 0) {
                        int64_t end = now_ms() + AUTOSTART_WAIT_MS;
                        do {
                                struct timespec ts = { 0, 50 * 1000 * 1000 };
                                nanosleep(&ts, NULL);
                                r = wire_connect(t->path, &fd);
                        } while ((r == -ENOENT || r == -ECONNREFUSED) && now_ms() < end);
                }
        }
        if (r < 0)
                return r;

        r = hello(fd);
        if (r < 0) {
                close(fd);
                return r;
        }

        pthread_mutex_lock(&t->lock);
        t->fd = fd;
        t->dead = false;
        t->reading = false;
        t->threaded = false;  /* callers read until poll_events starts the reader */
        pthread_mutex_unlock(&t->lock);
        __atomic_store_n(&t->base.poll_before_use, true, __ATOMIC_RELEASE);
        return 0;
}

/* Starts the reader thread (t->lock held, nobody reading).  On failure the
 * callers go on reading for themselves. */
static int start_reader_locked(struct unix_transport *t) {
        if (t->reader_started) /* ut_close joins it before a new connection */
                return -EALREADY;
        /* The reader takes no signal meant for the application. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int r = -pthread_create(&t->reader, NULL, reader_main, t);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                log_debug(LOG_SUB_MODULE, "cannot start the reader thread: %s", strerror(-r));
                return r;
        }
        t->reader_started = true;
        t->threaded = true;
        return 0;
}

/* Sends n finished request frames in one write, then waits for their n
 * replies (ret[i], ret_len[i]).  On failure nothing is returned. */
static int ut_call_many(struct rpc_transport *base, struct nbuf **frames, size_t n, uint8_t **ret,
                        size_t *ret_len) {
        struct unix_transport *t = (struct unix_transport *)base;
        struct pending one, *p = &one;
        if (n == 0)
                return 0;
        if (n > 1 && !(p = calloc(n, sizeof *p)))
                return -ENOMEM;
        if (n == 1)
                memset(&one, 0, sizeof one);
        for (size_t i = 0; i < n; i++)
                pthread_cond_init(&p[i].cond, NULL);

        int r = 0;
        pthread_mutex_lock(&t->lock);
        if (t->fd < 0 || t->dead) {
                pthread_mutex_unlock(&t->lock);
                r = -ENOTCONN;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                do
                        p[i].id = ++t->next_id;
                while (p[i].id == 0);
                p[i].next = t->pending;
                t->pending = &p[i];
        }
        int fd = t->fd;
        pthread_mutex_unlock(&t->lock);

        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
                nbuf_set_u32_at(frames[i], 4, p[i].id);
                total += frames[i]->len;
        }
        /* Several frames: one write (one wake-up of the daemon). */
        uint8_t *all = n > 1 ? malloc(total) : NULL;
        if (all) {
                size_t off = 0;
                for (size_t i = 0; i < n; i++) {
                        memcpy(all + off, frames[i]->data, frames[i]->len);
                        off += frames[i]->len;
                }
        }
        pthread_mutex_lock(&t->wlock);
        if (all)
                r = wire_write_all(fd, all, total);
        else
                for (size_t i = 0; i < n && r == 0; i++)
                        r = wire_write_all(fd, frames[i]->data, frames[i]->len);
        pthread_mutex_unlock(&t->wlock);
        if (all) {
                explicit_bzero(all, total); /* a request may hold a PIN */
                free(all);
        }

        pthread_mutex_lock(&t->lock);
        if (r < 0) {
                /* The peer is gone: wake the reader so that it fails the
                 * others and exits. */
                log_debug(LOG_SUB_MODULE, "send failed: %s", strerror(-r));
                t->dead = true;
                shutdown(fd, SHUT_RDWR);
                r = -ENOTCONN;
        } else
                for (size_t i = 0; i < n; i++) {
                        if (t->threaded)
                                while (!p[i].done)
                                        pthread_cond_wait(&p[i].cond, &t->lock);
                        else
                                wait_reading(t, &p[i], fd);
                        if (r == 0)
                                r = p[i].error;
                }
        /* Unlink. */
        for (size_t i = 0; i < n; i++)
                for (struct pending **pp = &t->pending; *pp; pp = &(*pp)->next)
                        if (*pp == &p[i]) {
                                *pp = p[i].next;
                                break;
                        }
        pthread_mutex_unlock(&t->lock);
out:
        for (size_t i = 0; i < n; i++) {
                pthread_cond_destroy(&p[i].cond);
                if (r < 0 && p[i].frame) {
                        explicit_bzero(p[i].frame, p[i].len);
                        free(p[i].frame);
                } else if (r == 0) {
                        ret[i] = p[i].frame;
                        ret_len[i] = p[i].len;
                }
        }
        if (p != &one)
                free(p);
        return r;
}

static int ut_call(struct rpc_transport *base, struct nbuf *frame, uint8_t **ret, size_t *ret_len) {
        return ut_call_many(base, &frame, 1, ret, ret_len);
}

static void ut_close(struct rpc_transport *base) {
        struct unix_transport *t = (struct unix_transport *)base;
        pthread_mutex_lock(&t->lock);
        int fd = t->fd;
        if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
        t->dead = true;
        pthread_mutex_unlock(&t->lock);
        if (t->reader_started) {
                pthread_join(t->reader, NULL);
                t->reader_started = false;
        }
        pthread_mutex_lock(&t->lock);
        fail_pending_locked(t, -ECONNRESET);
        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
        pthread_mutex_unlock(&t->lock);
}

static void ut_forget(struct rpc_transport *base) {
        struct unix_transport *t = (struct unix_transport *)base;
        /* In the child: the reader thread does not exist here, the locks may
         * be held by threads that do not exist either. */
        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
}

static void ut_free(struct rpc_transport *base) {
        struct unix_transport *t = (struct unix_transport *)base;
        if (!t)
                return;
        ut_close(base);
        pthread_mutex_destroy(&t->lock);
        pthread_mutex_destroy(&t->wlock);
        free(t->path);
        free(t);
}

static const struct rpc_transport_ops unix_ops = {
        .poll_events = ut_poll_events,
        .start_events = ut_start_events,
        .connect = ut_connect,
        .call = ut_call,
        .call_many = ut_call_many,
        .close = ut_close,
        .forget = ut_forget,
        .free = ut_free,
};

int rpc_transport_unix_new(const char *path, bool autostart, struct rpc_transport **ret) {
        struct unix_transport *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->path = path ? strdup(path) : wire_socket_path();
        if (!t->path) {
                free(t);
                return -ENOMEM;
        }
        t->base.ops = &unix_ops;
        t->autostart = autostart;
        t->may_thread = true;
        t->base.live_events = true;
        t->base.poll_before_use = true;
        t->fd = -1;
        t->dead = true;
        pthread_mutex_init(&t->lock, NULL);
        pthread_mutex_init(&t->wlock, NULL);
        *ret = &t->base;
        return 0;
}

void rpc_transport_unix_set_threaded(struct rpc_transport *base, bool threaded) {
        struct unix_transport *t = (struct unix_transport *)base;
        t->may_thread = threaded;
        /* Without a reader, events are read while a call is, and by
         * poll_events before an answer is given from what is kept. */
        t->base.live_events = true;
        t->base.poll_before_use = true;
}
