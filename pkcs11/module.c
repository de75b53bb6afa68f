/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-pkcs11: every PKCS#11 2.40 function, forwarded to netcad.
 *
 * State: one struct module per C_Initialize, reachable through g_mod under
 * g_lock.  Each call "enters" (takes a reference that C_Finalize waits for)
 * and talks to the daemon without any module-wide lock held, so that many
 * threads can have calls in flight.
 *
 * Sessions: the module hands out its own session handles and maps them to
 * (the daemon's handle, the connection generation).  After a daemon restart
 * the module reconnects on the next call, and the old handles answer
 * CKR_SESSION_HANDLE_INVALID: they can never reach a session of the new
 * daemon that happens to have the same number.  Slots keep their ids (the
 * daemon keeps them).
 *
 * Locking: the session table is guarded by the application's mutex
 * callbacks when C_Initialize gets them without CKF_OS_LOCKING_OK, else by a
 * pthread mutex.  The module normally runs a thread of its own (the socket
 * reader); with CKF_LIBRARY_CANT_CREATE_OS_THREADS it runs none: callers
 * read their replies themselves (transport-unix.c), slot events arrive while
 * calls are in flight, and a blocking C_WaitForSlotEvent answers
 * CKR_FUNCTION_NOT_SUPPORTED (CKF_DONT_BLOCK works).
 *
 * fork(): the child sees CKR_CRYPTOKI_NOT_INITIALIZED (pid check, and a
 * pthread_atfork child handler that drops the parent's state without
 * touching the parent's connection) until it calls C_Initialize itself.
 *
 * A guest in the application: never prints (log_set_quiet), never exits,
 * never touches signal handlers.  NETCA_DEBUG=trace logs every call and its
 * CK_RV (never PINs or data). */
#include "module.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "cache.h"
#include "common/log.h"
#include "common/util.h"

#define EXPORT __attribute__((visibility("default")))

#define MODULE_MANUFACTURER "NETCA"
#define MODULE_DESCRIPTION "NETCA PKCS#11 module"
#define EVENT_QUEUE_MAX 64
#define SLOT_LIST_GUESS 32

enum find_state {
        FIND_NONE,
        FIND_LOCAL,                 /* answered from the module's copy */
        FIND_DAEMON,                /* run by the daemon */
};

struct msession {
        CK_SESSION_HANDLE handle;   /* ours */
        CK_SESSION_HANDLE dh;       /* the daemon's */
        uint64_t gen;
        CK_SLOT_ID slot;
        /* C_GetSessionInfo's last answer, valid while its stamp holds. */
        bool info_ok;
        struct mcache_stamp info_st;
        CK_SESSION_INFO info;
        enum find_state find;
        CK_OBJECT_HANDLE *found;    /* FIND_LOCAL */
        size_t nfound, found_pos;
        bool made_objects;          /* may own session objects (gone with it) */
        /* One round trip per signature (see nc_SignInit). */
        bool sign_idle;             /* known: no sign operation active in the daemon */
        bool sign_held;             /* a C_SignInit not sent yet */
        CK_MECHANISM_TYPE held_mech;
        CK_OBJECT_HANDLE held_key;
};

struct module {
        pid_t pid;
        struct rpc_client *rpc;
        unsigned inflight;          /* under g_lock */
        bool finalizing;            /* under g_lock and ev_lock */

        /* Session table lock: the application's or ours. */
        bool app_locking;
        CK_C_INITIALIZE_ARGS app;
        void *app_mutex;
        pthread_mutex_t sess_mutex;
        struct msession *sessions;
        size_t n_sessions, cap_sessions;
        CK_SESSION_HANDLE next_handle;

        /* Slot events for C_WaitForSlotEvent. */
        pthread_mutex_t ev_lock;
        pthread_cond_t ev_cond;
        CK_SLOT_ID ev_queue[EVENT_QUEUE_MAX];
        size_t ev_n;
        unsigned ev_waiters;
        bool no_threads;         /* CKF_LIBRARY_CANT_CREATE_OS_THREADS */
        unsigned cache_hits;     /* answers given from memory (atomic), see cache_served */

        /* What is kept of the daemon's answers (cache.h); NULL: nothing. */
        struct mcache *cache;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* This process's pid, refreshed in a fork child: getpid() is a system call,
 * too dear for every PKCS#11 call. */
static pid_t g_pid;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static struct module *g_mod;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static netca_transport_factory g_factory;
static void *g_factory_userdata;
static bool g_autostart = true;

void netca_module_set_transport_factory(netca_transport_factory f, void *userdata) {
        pthread_mutex_lock(&g_lock);
        g_factory = f;
        g_factory_userdata = userdata;
        pthread_mutex_unlock(&g_lock);
}

void netca_module_set_autostart(bool on) {
        pthread_mutex_lock(&g_lock);
        g_autostart = on;
        pthread_mutex_unlock(&g_lock);
}

/* ---- tracing ---- */

static CK_RV trace(const char *fn, CK_RV rv) {
        /* nc_Sign -> C_Sign */
        if (strncmp(fn, "nc_", 3) == 0)
                log_debug(LOG_SUB_TRACE, "C_%s = 0x%lx", fn + 3, (unsigned long)rv);
        else
                log_debug(LOG_SUB_TRACE, "%s = 0x%lx", fn, (unsigned long)rv);
        return rv;
}

#define RETURN(rv) return trace(__func__, (rv))

/* ---- lifecycle ---- */

static void atfork_child(void) {
        /* Only this thread exists in the child; the locks may have been
         * held by threads that do not.  Abandon the parent's module: its
         * memory is leaked on purpose, its socket fd is closed (the parent's
         * connection is unaffected). */
        if (g_mod) {
                if (g_mod->rpc)
                        rpc_client_forget(g_mod->rpc);
                g_mod = NULL;
        }
        pthread_mutex_init(&g_lock, NULL);
        pthread_cond_init(&g_cond, NULL);
        g_pid = getpid();
}

static void atfork_register(void) {
        pthread_atfork(NULL, NULL, atfork_child);
}

static struct module *enter(void) {
        pthread_mutex_lock(&g_lock);
        struct module *m = g_mod;
        if (m && (m->finalizing || m->pid != g_pid))
                m = NULL;
        if (m)
                m->inflight++;
        pthread_mutex_unlock(&g_lock);
        return m;
}

static void leave(struct module *m) {
        pthread_mutex_lock(&g_lock);
        if (--m->inflight == 0)
                pthread_cond_broadcast(&g_cond);
        pthread_mutex_unlock(&g_lock);
}

static void sess_lock(struct module *m) {
        if (m->app_locking)
                m->app.LockMutex(m->app_mutex);
        else
                pthread_mutex_lock(&m->sess_mutex);
}

static void sess_unlock(struct module *m) {
        if (m->app_locking)
                m->app.UnlockMutex(m->app_mutex);
        else
                pthread_mutex_unlock(&m->sess_mutex);
}

static void on_event(void *userdata, uint64_t kind, uint64_t slot, uint64_t aux) {
        struct module *m = userdata;
        if (m->cache)
                switch (kind) {
                case WIRE_EV_TOKEN_CHANGED:
                        mcache_bump_token(m->cache, (CK_SLOT_ID)slot);
                        break;
                case WIRE_EV_OBJECTS_CHANGED:
                        mcache_bump_objects(m->cache, (CK_SLOT_ID)slot);
                        break;
                default: /* slots come and go, the connection was made or lost,
                          * WIRE_EV_RESYNC: events were left out */
                        mcache_bump_all(m->cache);
                        break;
                }
        if (kind != WIRE_EV_SLOT_ADDED && kind != WIRE_EV_SLOT_REMOVED)
                return;
        pthread_mutex_lock(&m->ev_lock);
        bool queued = false;
        for (size_t i = 0; i < m->ev_n; i++)
                if (m->ev_queue[i] == slot)
                        queued = true;
        if (!queued && m->ev_n < EVENT_QUEUE_MAX)
                m->ev_queue[m->ev_n++] = (CK_SLOT_ID)slot;
        pthread_cond_broadcast(&m->ev_cond);
        pthread_mutex_unlock(&m->ev_lock);
}

static int default_factory(void *userdata, struct rpc_transport **ret) {
        return rpc_transport_unix_new(NULL, *(bool *)userdata, ret);
}

static void module_free(struct module *m) {
        if (!m)
                return;
        rpc_client_free(m->rpc);
        if (m->app_locking)
                m->app.DestroyMutex(m->app_mutex);
        pthread_mutex_destroy(&m->sess_mutex);
        pthread_mutex_destroy(&m->ev_lock);
        pthread_cond_destroy(&m->ev_cond);
        for (size_t i = 0; i < m->n_sessions; i++)
                free(m->sessions[i].found);
        free(m->sessions);
        mcache_free(m->cache);
        free(m);
}

static CK_RV nc_Initialize(CK_VOID_PTR init_args) {
        CK_C_INITIALIZE_ARGS_PTR args = init_args;
        bool app_locking = false;

        log_setup("netca-pkcs11");
        log_set_quiet(true);
        pthread_once(&g_atfork_once, atfork_register);

        if (args) {
                bool all = args->CreateMutex && args->DestroyMutex && args->LockMutex && args->UnlockMutex;
                bool none = !args->CreateMutex && !args->DestroyMutex && !args->LockMutex && !args->UnlockMutex;
                if (args->pReserved || (!all && !none))
                        RETURN(CKR_ARGUMENTS_BAD);
                app_locking = all && !(args->flags & CKF_OS_LOCKING_OK);
        }

        pthread_mutex_lock(&g_lock);
        if (g_mod && g_mod->pid == getpid()) {
                pthread_mutex_unlock(&g_lock);
                RETURN(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
        if (g_mod) {
                /* Left over from before a fork (no atfork handler ran). */
                rpc_client_forget(g_mod->rpc);
                g_mod = NULL;
        }
        netca_transport_factory factory = g_factory;
        void *factory_ud = g_factory_userdata;
        bool autostart = g_autostart;
        pthread_mutex_unlock(&g_lock);

        struct module *m = calloc(1, sizeof *m);
        if (!m)
                RETURN(CKR_HOST_MEMORY);
        m->pid = getpid();
        m->next_handle = 1;
        pthread_mutex_lock(&g_lock);
        g_pid = m->pid;
        pthread_mutex_unlock(&g_lock);
        pthread_mutex_init(&m->sess_mutex, NULL);
        pthread_mutex_init(&m->ev_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->ev_cond, &ca);
        pthread_condattr_destroy(&ca);
        if (app_locking) {
                m->app = *args;
                if (m->app.CreateMutex(&m->app_mutex) != CKR_OK) {
                        m->app_locking = false;
                        module_free(m);
                        RETURN(CKR_CANT_LOCK);
                }
                m->app_locking = true;
        }

        struct rpc_transport *t = NULL;
        int r = factory ? factory(factory_ud, &t) : default_factory(&autostart, &t);
        m->no_threads = args && (args->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS);
        if (r >= 0 && !factory && m->no_threads)
                rpc_transport_unix_set_threaded(t, false);
        if (r >= 0) {
                t->on_event = on_event;
                t->event_userdata = m;
                const char *e = secure_getenv("NETCA_MODULE_CACHE");
                if (t->live_events && !(e && strcmp(e, "0") == 0) && mcache_new(&m->cache) < 0)
                        m->cache = NULL; /* no memory for it: forward everything */
                r = rpc_client_new(t, &m->rpc);
        }
        if (r < 0) {
                module_free(m);
                RETURN(r == -ENOMEM ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR);
        }

        pthread_mutex_lock(&g_lock);
        if (g_mod) {
                /* Lost a race with another C_Initialize. */
                pthread_mutex_unlock(&g_lock);
                module_free(m);
                RETURN(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
        g_mod = m;
        pthread_mutex_unlock(&g_lock);

        /* Connect now (and start the daemon if asked) so that events flow;
         * no daemon is fine: there are just no slots. */
        r = rpc_client_connect(m->rpc);
        if (r < 0)
                log_debug(LOG_SUB_MODULE, "no daemon yet: %s", strerror(-r));
        RETURN(CKR_OK);
}

static CK_RV nc_Finalize(CK_VOID_PTR reserved) {
        if (reserved)
                RETURN(CKR_ARGUMENTS_BAD);
        pthread_mutex_lock(&g_lock);
        struct module *m = g_mod;
        if (!m || m->pid != getpid() || m->finalizing) {
                pthread_mutex_unlock(&g_lock);
                RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        }
        m->finalizing = true;
        g_mod = NULL;
        pthread_mutex_unlock(&g_lock);

        /* Wake C_WaitForSlotEvent waiters. */
        pthread_mutex_lock(&m->ev_lock);
        pthread_cond_broadcast(&m->ev_cond);
        pthread_mutex_unlock(&m->ev_lock);

        /* Let the calls in flight finish, then disconnect. */
        pthread_mutex_lock(&g_lock);
        while (m->inflight > 0)
                pthread_cond_wait(&g_cond, &g_lock);
        pthread_mutex_unlock(&g_lock);
        module_free(m);
        RETURN(CKR_OK);
}

static void version_from_string(const char *s, CK_VERSION *v) {
        unsigned major = 0, minor = 0;
        char *end;
        unsigned long x = strtoul(s, &end, 10);
        if (end != s && x < 256)
                major = (unsigned)x;
        if (*end == '.') {
                const char *p = end + 1;
                x = strtoul(p, &end, 10);
                if (end != p && x < 256)
                        minor = (unsigned)x;
        }
        v->major = (CK_BYTE)major;
        v->minor = (CK_BYTE)minor;
}

static CK_RV nc_GetInfo(CK_INFO_PTR info) {
        struct module *m = enter();
        if (!m)
                RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        leave(m);
        if (!info)
                RETURN(CKR_ARGUMENTS_BAD);
        memset(info, 0, sizeof *info);
        info->cryptokiVersion.major = 2;
        info->cryptokiVersion.minor = 40;
        pad_field(info->manufacturerID, sizeof info->manufacturerID, MODULE_MANUFACTURER);
        pad_field(info->libraryDescription, sizeof info->libraryDescription, MODULE_DESCRIPTION);
        version_from_string(NETCA_VERSION, &info->libraryVersion);
        info->flags = 0;
        RETURN(CKR_OK);
}

static CK_FUNCTION_LIST function_list;

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret) {
        if (!ret)
                RETURN(CKR_ARGUMENTS_BAD);
        *ret = &function_list;
        RETURN(CKR_OK);
}

/* ---- slots and tokens ---- */

#define ENTER(m)                                                        \
        struct module *m = enter();                                     \
        if (!m)                                                         \
                RETURN(CKR_CRYPTOKI_NOT_INITIALIZED)

#define LEAVE_RETURN(m, rv)                                             \
        do {                                                            \
                CK_RV rv_ = (rv);                                       \
                leave(m);                                               \
                RETURN(rv_);                                            \
        } while (0)

/* Before answering from what is kept: without a reader thread, the events
 * the daemon already sent are taken in first (a poll, no waiting). */
static void cache_refresh(struct module *m) {
        if (m->cache)
                rpc_client_poll_events(m->rpc);
}

/* After an answer from what is kept.  Until the reader thread runs, every
 * such answer is preceded by a poll of the socket (cache_refresh), which
 * keeps it exact; after CACHE_HITS_BEFORE_READER of them the application
 * is clearly one that asks again and again, and the reader thread starts
 * (events then arrive as they are sent, no poll needed).  A fresh process
 * that asks each thing once or twice never creates a thread (issue 3's
 * fresh-process latency: creating and joining one cost ~0.3 ms). */
#define CACHE_HITS_BEFORE_READER 16
static CK_RV cache_served(struct module *m, CK_RV rv) {
        if (__atomic_add_fetch(&m->cache_hits, 1, __ATOMIC_RELAXED) >= CACHE_HITS_BEFORE_READER)
                rpc_client_start_events(m->rpc);
        return rv;
}

/* Starts keeping an answer: the stamp to keep it under, taken before the
 * question is sent.  False when nothing may be kept (no cache, or no
 * connection: an answer made without the daemon must not hide it when it
 * comes). */
static bool keep_begin(struct module *m, CK_SLOT_ID slot, uint64_t *ret_gen, struct mcache_stamp *ret) {
        if (!m->cache)
                return false;
        *ret_gen = rpc_client_generation(m->rpc);
        if (*ret_gen == 0)
                return false;
        *ret = mcache_stamp(m->cache, slot);
        return true;
}

/* The answer came over the connection the stamp was taken on. */
static bool keep_ok(struct module *m, uint64_t gen) {
        return rpc_client_generation(m->rpc) == gen;
}

/* With a slot list just fetched: the token info of its slots, fetched in
 * one round trip (applications ask for it right after the list) and kept. */
static void prefetch_token_infos(struct module *m, const CK_SLOT_ID *slots, CK_ULONG n) {
        CK_TOKEN_INFO infos[SLOT_LIST_GUESS];
        CK_RV rvs[SLOT_LIST_GUESS];
        struct mcache_stamp st[SLOT_LIST_GUESS];
        uint64_t gen = 0;
        if (n == 0 || n > SLOT_LIST_GUESS)
                return;
        for (CK_ULONG i = 0; i < n; i++)
                if (!keep_begin(m, slots[i], &gen, &st[i]))
                        return;
        if (rpc_get_token_infos(m->rpc, gen, slots, n, infos, rvs) < 0 || !keep_ok(m, gen))
                return;
        for (CK_ULONG i = 0; i < n; i++)
                if (rvs[i] == CKR_OK)
                        mcache_put_token_info(m->cache, slots[i], &st[i], &infos[i]);
}

/* Fills the caller's list from a whole list, with C_GetSlotList's rules. */
static CK_RV answer_slot_list(const CK_SLOT_ID *all, CK_ULONG n, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
        CK_RV rv = CKR_OK;
        if (list) {
                if (*count < n)
                        rv = CKR_BUFFER_TOO_SMALL;
                else if (n)
                        memcpy(list, all, n * sizeof *list);
        }
        *count = n;
        return rv;
}

static CK_RV nc_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
        ENTER(m);
        if (!count)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CK_RV rv;
        cache_refresh(m);
        if (m->cache && mcache_get_slot_list(m->cache, present, list, count, &rv))
                LEAVE_RETURN(m, cache_served(m, rv));
        uint64_t gen;
        struct mcache_stamp st;
        if (!keep_begin(m, 0, &gen, &st))
                LEAVE_RETURN(m, rpc_get_slot_list(m->rpc, present, list, count));
        /* Fetch the whole list to keep it, whatever the caller asked: in
         * one round trip when it has at most SLOT_LIST_GUESS slots (a fresh
         * process's first call is on the clock), else in two. */
        CK_ULONG got = SLOT_LIST_GUESS;
        CK_SLOT_ID *all = calloc(got, sizeof *all);
        if (!all)
                LEAVE_RETURN(m, CKR_HOST_MEMORY);
        rv = rpc_get_slot_list(m->rpc, present, all, &got);
        if (rv == CKR_BUFFER_TOO_SMALL) {
                CK_SLOT_ID *more = realloc(all, (got + 1) * sizeof *all);
                if (!more) {
                        free(all);
                        LEAVE_RETURN(m, CKR_HOST_MEMORY);
                }
                all = more;
                got += 1;
                rv = rpc_get_slot_list(m->rpc, present, all, &got);
        }
        if (rv == CKR_OK) {
                if (keep_ok(m, gen)) {
                        mcache_put_slot_list(m->cache, &st, present, all, got);
                        if (present)
                                prefetch_token_infos(m, all, got);
                }
                rv = answer_slot_list(all, got, list, count);
        } else if (rv == CKR_BUFFER_TOO_SMALL) {
                /* Slots came while asking: just ask for the caller. */
                rv = rpc_get_slot_list(m->rpc, present, list, count);
        }
        free(all);
        LEAVE_RETURN(m, rv);
}

/* GetSlotInfo (si) or GetTokenInfo (ti; si NULL): from the cache while it
 * holds, else from the daemon, kept for next time when nothing changed
 * meanwhile. */
static CK_RV cached_info(struct module *m, CK_SLOT_ID slot, CK_SLOT_INFO_PTR si, CK_TOKEN_INFO_PTR ti) {
        cache_refresh(m);
        if (m->cache && (si ? mcache_get_slot_info(m->cache, slot, si) : mcache_get_token_info(m->cache, slot, ti)))
                return cache_served(m, CKR_OK);
        uint64_t gen = 0;
        struct mcache_stamp st;
        bool keep = keep_begin(m, slot, &gen, &st);
        CK_RV rv = si ? rpc_get_slot_info(m->rpc, slot, si) : rpc_get_token_info(m->rpc, slot, ti);
        if (rv == CKR_OK && keep && keep_ok(m, gen)) {
                if (si)
                        mcache_put_slot_info(m->cache, slot, &st, si);
                else
                        mcache_put_token_info(m->cache, slot, &st, ti);
        }
        return rv;
}

static CK_RV nc_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
        ENTER(m);
        if (!info)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        LEAVE_RETURN(m, cached_info(m, slot, info, NULL));
}

static CK_RV nc_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
        ENTER(m);
        if (!info)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        LEAVE_RETURN(m, cached_info(m, slot, NULL, info));
}

/* After a call of this process that may have changed the slot's state. */
static void changed_slot(struct module *m, CK_SLOT_ID slot) {
        if (m->cache)
                mcache_bump_slot(m->cache, slot);
}

static CK_RV nc_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
        ENTER(m);
        if (!count)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        LEAVE_RETURN(m, rpc_get_mechanism_list(m->rpc, slot, list, count));
}

static CK_RV nc_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info) {
        ENTER(m);
        if (!info)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        LEAVE_RETURN(m, rpc_get_mechanism_info(m->rpc, slot, type, info));
}

static CK_RV nc_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label) {
        ENTER(m);
        if (!label)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CK_RV rv = rpc_init_token(m->rpc, slot, pin, pin_len, label);
        changed_slot(m, slot);
        LEAVE_RETURN(m, rv);
}

static CK_RV nc_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved) {
        ENTER(m);
        if (!slot || reserved)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CK_RV rv;
        /* Slot events already sent; with threads, the reader that will
         * deliver the next ones. */
        rpc_client_poll_events(m->rpc);
        rpc_client_start_events(m->rpc);
        pthread_mutex_lock(&m->ev_lock);
        m->ev_waiters++;
        for (;;) {
                if (m->finalizing) {
                        rv = CKR_CRYPTOKI_NOT_INITIALIZED;
                        break;
                }
                if (m->ev_n > 0) {
                        *slot = m->ev_queue[0];
                        memmove(m->ev_queue, m->ev_queue + 1, (m->ev_n - 1) * sizeof m->ev_queue[0]);
                        m->ev_n--;
                        rv = CKR_OK;
                        break;
                }
                if (flags & CKF_DONT_BLOCK) {
                        rv = CKR_NO_EVENT;
                        break;
                }
                if (m->no_threads) {
                        rv = CKR_FUNCTION_NOT_SUPPORTED; /* nothing would read the event */
                        break;
                }
                pthread_cond_wait(&m->ev_cond, &m->ev_lock);
        }
        m->ev_waiters--;
        pthread_mutex_unlock(&m->ev_lock);
        LEAVE_RETURN(m, rv);
}

/* ---- sessions ---- */

static CK_RV sess_add(struct module *m, CK_SESSION_HANDLE dh, uint64_t gen, CK_SLOT_ID slot,
                      CK_SESSION_HANDLE *ret) {
        CK_RV rv = CKR_OK;
        sess_lock(m);
        if (m->n_sessions == m->cap_sessions) {
                size_t nc = m->cap_sessions ? m->cap_sessions * 2 : 16;
                struct msession *v = realloc(m->sessions, nc * sizeof *v);
                if (!v) {
                        rv = CKR_HOST_MEMORY;
                        goto out;
                }
                m->sessions = v;
                m->cap_sessions = nc;
        }
        struct msession *s = &m->sessions[m->n_sessions++];
        memset(s, 0, sizeof *s);
        s->handle = m->next_handle++;
        s->dh = dh;
        s->gen = gen;
        s->slot = slot;
        s->sign_idle = true;
        *ret = s->handle;
out:
        sess_unlock(m);
        return rv;
}

/* Finds our handle: false when unknown. */
static bool sess_find(struct module *m, CK_SESSION_HANDLE h, CK_SESSION_HANDLE *ret_dh, uint64_t *ret_gen,
                      CK_SLOT_ID *ret_slot) {
        bool found = false;
        sess_lock(m);
        for (size_t i = 0; i < m->n_sessions; i++)
                if (m->sessions[i].handle == h) {
                        *ret_dh = m->sessions[i].dh;
                        *ret_gen = m->sessions[i].gen;
                        if (ret_slot)
                                *ret_slot = m->sessions[i].slot;
                        found = true;
                        break;
                }
        sess_unlock(m);
        return found;
}

/* Session lock held. */
static struct msession *sess_get_locked(struct module *m, CK_SESSION_HANDLE h) {
        for (size_t i = 0; i < m->n_sessions; i++)
                if (m->sessions[i].handle == h)
                        return &m->sessions[i];
        return NULL;
}

/* The session creates objects (perhaps session objects, which go with it). */
static void mark_made_objects(struct module *m, CK_SESSION_HANDLE h) {
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        if (s)
                s->made_objects = true;
        sess_unlock(m);
}

static void sess_drop_locked(struct module *m, size_t i) {
        free(m->sessions[i].found);
        m->sessions[i] = m->sessions[--m->n_sessions];
}

static void sess_remove(struct module *m, CK_SESSION_HANDLE h) {
        sess_lock(m);
        for (size_t i = 0; i < m->n_sessions; i++)
                if (m->sessions[i].handle == h) {
                        sess_drop_locked(m, i);
                        break;
                }
        sess_unlock(m);
}

static void sess_remove_slot(struct module *m, CK_SLOT_ID slot) {
        sess_lock(m);
        for (size_t i = 0; i < m->n_sessions;)
                if (m->sessions[i].slot == slot)
                        sess_drop_locked(m, i);
                else
                        i++;
        sess_unlock(m);
}

/* Resolve a session handle: declares dh_, gen_ and slot_ in the caller. */
#define SESSION(m, h)                                                           \
        CK_SESSION_HANDLE dh_;                                                  \
        uint64_t gen_;                                                          \
        CK_SLOT_ID slot_;                                                       \
        if (!sess_find(m, h, &dh_, &gen_, &slot_))                              \
                LEAVE_RETURN(m, CKR_SESSION_HANDLE_INVALID)

/* A session the daemon no longer knows is dropped from the table; a token
 * gone or a session lost means what is kept of the slot is stale. */
static CK_RV sess_check(struct module *m, CK_SESSION_HANDLE h, CK_SLOT_ID slot, CK_RV rv) {
        if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
                sess_remove(m, h);
                changed_slot(m, slot);
        } else if (rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT)
                changed_slot(m, slot);
        return rv;
}

#define SESSION_RETURN(m, h, rv) LEAVE_RETURN(m, sess_check(m, h, slot_, (rv)))

/* For calls that may change the token's state (login, objects, PINs). */
#define CHANGING_RETURN(m, h, rv)                                               \
        do {                                                                    \
                CK_RV crv_ = (rv);                                              \
                changed_slot(m, slot_);                                         \
                SESSION_RETURN(m, h, crv_);                                     \
        } while (0)

static CK_RV nc_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                            CK_SESSION_HANDLE_PTR ret) {
        ENTER(m);
        if (!ret)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        if (!(flags & CKF_SERIAL_SESSION))
                LEAVE_RETURN(m, CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        CK_SESSION_HANDLE dh;
        uint64_t gen = 0;
        CK_RV rv = rpc_open_session(m->rpc, slot, flags, &dh, &gen);
        if (rv == CKR_OK) {
                rv = sess_add(m, dh, gen, slot, ret);
                if (rv != CKR_OK)
                        (void)rpc_close_session(m->rpc, gen, dh);
        }
        /* The token's session counts changed (its objects did not). */
        if (m->cache)
                mcache_bump_token(m->cache, slot);
        LEAVE_RETURN(m, rv);
}

static CK_RV nc_CloseSession(CK_SESSION_HANDLE h) {
        ENTER(m);
        SESSION(m, h);
        /* Closing changes the session counts; the objects only when the
         * session may have owned session objects, or when it was the last
         * on the slot (which logs the process out: private objects hide). */
        bool objects = false;
        sess_lock(m);
        struct msession *ms = sess_get_locked(m, h);
        if (ms)
                objects = ms->made_objects;
        size_t on_slot = 0;
        for (size_t i = 0; i < m->n_sessions; i++)
                on_slot += m->sessions[i].slot == slot_;
        sess_unlock(m);
        if (on_slot <= 1)
                objects = true;
        CK_RV rv = rpc_close_session(m->rpc, gen_, dh_);
        if (rv == CKR_OK)
                sess_remove(m, h);
        if (m->cache) {
                if (objects)
                        mcache_bump_slot(m->cache, slot_);
                else
                        mcache_bump_token(m->cache, slot_);
        }
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_CloseAllSessions(CK_SLOT_ID slot) {
        ENTER(m);
        CK_RV rv = rpc_close_all_sessions(m->rpc, slot);
        if (rv == CKR_OK)
                sess_remove_slot(m, slot);
        changed_slot(m, slot);
        LEAVE_RETURN(m, rv);
}

static CK_RV nc_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info) {
        ENTER(m);
        if (!info)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        if (m->cache) {
                bool hit = false;
                cache_refresh(m);
                sess_lock(m);
                struct msession *s = sess_get_locked(m, h);
                if (s && s->info_ok && mcache_stamp_valid(m->cache, s->slot, &s->info_st)) {
                        *info = s->info;
                        hit = true;
                }
                sess_unlock(m);
                if (hit)
                        LEAVE_RETURN(m, cache_served(m, CKR_OK));
        }
        SESSION(m, h);
        uint64_t gen;
        struct mcache_stamp st;
        bool keep = keep_begin(m, slot_, &gen, &st) && gen == gen_;
        CK_RV rv = rpc_get_session_info(m->rpc, gen_, dh_, info);
        if (rv == CKR_OK && keep && keep_ok(m, gen)) {
                sess_lock(m);
                struct msession *s = sess_get_locked(m, h);
                if (s && mcache_stamp_valid(m->cache, slot_, &st)) {
                        s->info = *info;
                        s->info_st = st;
                        s->info_ok = true;
                }
                sess_unlock(m);
        }
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
        ENTER(m);
        SESSION(m, h);
        if (!pin && len)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CHANGING_RETURN(m, h, rpc_init_pin(m->rpc, gen_, dh_, pin, len));
}

static CK_RV nc_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin,
                       CK_ULONG new_len) {
        ENTER(m);
        SESSION(m, h);
        if ((!old_pin && old_len) || (!new_pin && new_len))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CHANGING_RETURN(m, h, rpc_set_pin(m->rpc, gen_, dh_, old_pin, old_len, new_pin, new_len));
}

/* Held C_SignInits go first (see nc_SignInit). */
static void sign_flush_slot(struct module *m, CK_SLOT_ID slot);

static CK_RV nc_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
        ENTER(m);
        SESSION(m, h);
        if (!pin && len)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        sign_flush_slot(m, slot_);
        CHANGING_RETURN(m, h, rpc_login(m->rpc, gen_, dh_, user, pin, len));
}

static CK_RV nc_Logout(CK_SESSION_HANDLE h) {
        ENTER(m);
        SESSION(m, h);
        sign_flush_slot(m, slot_);
        CHANGING_RETURN(m, h, rpc_logout(m->rpc, gen_, dh_));
}

/* ---- objects ---- */

static bool template_ok(CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        if (n && !t)
                return false;
        for (CK_ULONG i = 0; i < n; i++)
                if (!t[i].pValue && t[i].ulValueLen)
                        return false;
        return true;
}

static CK_RV nc_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret) {
        ENTER(m);
        SESSION(m, h);
        if (!ret || !template_ok(t, n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        mark_made_objects(m, h);
        CHANGING_RETURN(m, h, rpc_create_object(m->rpc, gen_, dh_, t, n, ret));
}

static CK_RV nc_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                           CK_OBJECT_HANDLE_PTR ret) {
        ENTER(m);
        SESSION(m, h);
        if (!ret || !template_ok(t, n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        mark_made_objects(m, h);
        CHANGING_RETURN(m, h, rpc_copy_object(m->rpc, gen_, dh_, obj, t, n, ret));
}

static CK_RV nc_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj) {
        ENTER(m);
        SESSION(m, h);
        CHANGING_RETURN(m, h, rpc_destroy_object(m->rpc, gen_, dh_, obj));
}

/* Fetches the module's copy of the slot's objects through session dh (of
 * connection gen).  CKR_OK also when the copy could not be kept (the caller
 * asks again and then goes to the daemon); the session's errors else. */
static CK_RV fetch_objects(struct module *m, CK_SLOT_ID slot, uint64_t gen, CK_SESSION_HANDLE dh) {
        uint64_t g;
        struct mcache_stamp st;
        if (!keep_begin(m, slot, &g, &st) || g != gen)
                return CKR_OK;
        uint8_t *list = NULL;
        size_t len = 0;
        CK_RV rv = rpc_get_objects(m->rpc, gen, dh, &list, &len);
        if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
            rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR || rv == CKR_HOST_MEMORY) {
                free(list);
                return rv;
        }
        if (keep_ok(m, gen))
                mcache_put_objects(m->cache, slot, &st, rv, list, len);
        if (list) {
                explicit_bzero(list, len);
                free(list);
        }
        return CKR_OK;
}

/* A question for the module's copy of a slot's objects: a search (find)
 * or C_GetAttributeValue on obj. */
struct copy_query {
        bool find;
        CK_OBJECT_HANDLE obj;
        CK_ATTRIBUTE *t;
        CK_ULONG n;
        CK_RV arv;                  /* C_GetAttributeValue's answer */
        CK_OBJECT_HANDLE *found;    /* the search's (malloc'd) */
        size_t nfound;
};

static enum mcache_answer ask_once(struct module *m, CK_SLOT_ID slot, struct copy_query *q) {
        if (q->find)
                return mcache_find(m->cache, slot, q->t, q->n, &q->found, &q->nfound);
        return mcache_get_attributes(m->cache, slot, q->obj, q->t, q->n, &q->arv);
}

/* Asks the copy, fetching it once if needed.  MCACHE_HIT: answered; else
 * the daemon must be asked (*rv CKR_OK), or fetching failed with *rv. */
static enum mcache_answer ask_copy(struct module *m, CK_SLOT_ID slot, uint64_t gen, CK_SESSION_HANDLE dh,
                                   struct copy_query *q, CK_RV *rv) {
        *rv = CKR_OK;
        cache_refresh(m);
        if (!m->cache || rpc_client_generation(m->rpc) != gen)
                return MCACHE_DAEMON;
        enum mcache_answer a = ask_once(m, slot, q);
        if (a == MCACHE_MISS) {
                *rv = fetch_objects(m, slot, gen, dh);
                a = *rv == CKR_OK ? ask_once(m, slot, q) : MCACHE_DAEMON;
        }
        if (a == MCACHE_HIT)
                (void)cache_served(m, CKR_OK);
        return a == MCACHE_MISS ? MCACHE_DAEMON : a;
}

static CK_RV nc_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        ENTER(m);
        SESSION(m, h);
        if (n && !t)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CK_RV rv;
        struct copy_query q = { .obj = obj, .t = t, .n = n };
        if (ask_copy(m, slot_, gen_, dh_, &q, &rv) == MCACHE_HIT)
                LEAVE_RETURN(m, q.arv);
        if (rv != CKR_OK)
                SESSION_RETURN(m, h, rv);
        SESSION_RETURN(m, h, rpc_get_attribute_value(m->rpc, gen_, dh_, obj, t, n));
}

static CK_RV nc_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        ENTER(m);
        SESSION(m, h);
        if (!template_ok(t, n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        CHANGING_RETURN(m, h, rpc_set_attribute_value(m->rpc, gen_, dh_, obj, t, n));
}

/* The session's search state; FIND_NONE for an unknown session. */
static enum find_state find_state(struct module *m, CK_SESSION_HANDLE h) {
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        enum find_state f = s ? s->find : FIND_NONE;
        sess_unlock(m);
        return f;
}

static void set_find(struct module *m, CK_SESSION_HANDLE h, enum find_state f, CK_OBJECT_HANDLE *found,
                     size_t n) {
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        if (s) {
                free(s->found);
                s->find = f;
                s->found = found;
                s->nfound = n;
                s->found_pos = 0;
                found = NULL;
        }
        sess_unlock(m);
        free(found);
}

/* Searches run in the module when its copy of the objects can answer them
 * (the daemon's session then never sees the search), else in the daemon. */
static CK_RV nc_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        ENTER(m);
        SESSION(m, h);
        if (!template_ok(t, n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        if (find_state(m, h) != FIND_NONE)
                LEAVE_RETURN(m, CKR_OPERATION_ACTIVE);
        CK_RV rv;
        struct copy_query q = { .find = true, .t = t, .n = n };
        if (ask_copy(m, slot_, gen_, dh_, &q, &rv) == MCACHE_HIT) {
                set_find(m, h, FIND_LOCAL, q.found, q.nfound);
                LEAVE_RETURN(m, CKR_OK);
        }
        if (rv != CKR_OK)
                SESSION_RETURN(m, h, rv);
        rv = rpc_find_objects_init(m->rpc, gen_, dh_, t, n);
        if (rv == CKR_OK)
                set_find(m, h, FIND_DAEMON, NULL, 0);
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR ret, CK_ULONG max, CK_ULONG_PTR count) {
        ENTER(m);
        SESSION(m, h);
        if (!count || (!ret && max))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        bool local = false;
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        if (s && s->find == FIND_LOCAL && s->gen == gen_) {
                CK_ULONG k = 0;
                while (k < max && s->found_pos < s->nfound)
                        ret[k++] = s->found[s->found_pos++];
                *count = k;
                local = true;
        }
        sess_unlock(m);
        if (local && rpc_client_generation(m->rpc) == gen_)
                LEAVE_RETURN(m, CKR_OK);
        SESSION_RETURN(m, h, rpc_find_objects(m->rpc, gen_, dh_, ret, max, count));
}

static CK_RV nc_FindObjectsFinal(CK_SESSION_HANDLE h) {
        ENTER(m);
        SESSION(m, h);
        enum find_state f = find_state(m, h);
        set_find(m, h, FIND_NONE, NULL, 0);
        if (f == FIND_LOCAL && rpc_client_generation(m->rpc) == gen_)
                LEAVE_RETURN(m, CKR_OK);
        SESSION_RETURN(m, h, rpc_find_objects_final(m->rpc, gen_, dh_));
}

/* ---- crypto ---- */

static bool sign_take(struct module *m, CK_SESSION_HANDLE h, CK_MECHANISM *ret_mech, CK_OBJECT_HANDLE *ret_key);
static void sign_ended(struct module *m, CK_SESSION_HANDLE h, bool ended);

/* The C_*Init that begins the operation a call of op uses; 0 for none. */
static uint16_t init_op_of(uint16_t op) {
        switch (op) {
        case WIRE_OP_SIGN: case WIRE_OP_SIGN_UPDATE: case WIRE_OP_SIGN_FINAL:
                return WIRE_OP_SIGN_INIT;
        case WIRE_OP_VERIFY: case WIRE_OP_VERIFY_UPDATE: case WIRE_OP_VERIFY_FINAL:
                return WIRE_OP_VERIFY_INIT;
        case WIRE_OP_ENCRYPT: case WIRE_OP_ENCRYPT_UPDATE: case WIRE_OP_ENCRYPT_FINAL:
                return WIRE_OP_ENCRYPT_INIT;
        case WIRE_OP_DECRYPT: case WIRE_OP_DECRYPT_UPDATE: case WIRE_OP_DECRYPT_FINAL:
                return WIRE_OP_DECRYPT_INIT;
        case WIRE_OP_DIGEST: case WIRE_OP_DIGEST_UPDATE: case WIRE_OP_DIGEST_FINAL:
                return WIRE_OP_DIGEST_INIT;
        case WIRE_OP_SIGN_RECOVER:
                return WIRE_OP_SIGN_RECOVER_INIT;
        case WIRE_OP_VERIFY_RECOVER:
                return WIRE_OP_VERIFY_RECOVER_INIT;
        default:
                return 0;
        }
}

/* A call of op whose arguments the module refuses itself: PKCS#11 has that
 * error end the operation as any other does (issue 13 item 2), so the
 * daemon's operation is ended too (a sign init still held here is simply
 * dropped).  Returns CKR_ARGUMENTS_BAD. */
static CK_RV op_bad_args(struct module *m, CK_SESSION_HANDLE h, uint64_t gen, CK_SESSION_HANDLE dh, uint16_t op) {
        uint16_t init = init_op_of(op);
        CK_MECHANISM mech;
        CK_OBJECT_HANDLE key;
        bool held = init == WIRE_OP_SIGN_INIT && sign_take(m, h, &mech, &key); /* never sent */
        if (init && !held)
                (void)rpc_op_end(m->rpc, gen, dh, init);
        if (init == WIRE_OP_SIGN_INIT)
                sign_ended(m, h, true);
        return CKR_ARGUMENTS_BAD;
}
#define OP_BAD_ARGS_RETURN(m, h, op) SESSION_RETURN(m, h, op_bad_args(m, h, gen_, dh_, (op)))

static CK_RV crypt_init(uint16_t op, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        ENTER(m);
        SESSION(m, h);
        if (!mech)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        SESSION_RETURN(m, h, rpc_crypt_init(m->rpc, op, gen_, dh_, mech, key));
}

static CK_RV data_out(uint16_t op, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len) {
        ENTER(m);
        SESSION(m, h);
        if (!out_len || (!data && len))
                OP_BAD_ARGS_RETURN(m, h, op);
        SESSION_RETURN(m, h, rpc_data_out(m->rpc, op, gen_, dh_, data, len, out, out_len));
}

static CK_RV final_out(uint16_t op, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        ENTER(m);
        SESSION(m, h);
        if (!out_len)
                OP_BAD_ARGS_RETURN(m, h, op);
        SESSION_RETURN(m, h, rpc_final_out(m->rpc, op, gen_, dh_, out, out_len));
}

static CK_RV data_in(uint16_t op, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len) {
        ENTER(m);
        SESSION(m, h);
        if (!data && len)
                OP_BAD_ARGS_RETURN(m, h, op);
        SESSION_RETURN(m, h, rpc_data_in(m->rpc, op, gen_, dh_, data, len));
}

static CK_RV nc_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return crypt_init(WIRE_OP_ENCRYPT_INIT, h, mech, key);
}

static CK_RV nc_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return data_out(WIRE_OP_ENCRYPT, h, data, len, out, out_len);
}

static CK_RV nc_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                              CK_ULONG_PTR out_len) {
        return data_out(WIRE_OP_ENCRYPT_UPDATE, h, data, len, out, out_len);
}

static CK_RV nc_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return final_out(WIRE_OP_ENCRYPT_FINAL, h, out, out_len);
}

static CK_RV nc_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return crypt_init(WIRE_OP_DECRYPT_INIT, h, mech, key);
}

static CK_RV nc_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return data_out(WIRE_OP_DECRYPT, h, data, len, out, out_len);
}

static CK_RV nc_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                              CK_ULONG_PTR out_len) {
        return data_out(WIRE_OP_DECRYPT_UPDATE, h, data, len, out, out_len);
}

static CK_RV nc_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return final_out(WIRE_OP_DECRYPT_FINAL, h, out, out_len);
}

static CK_RV nc_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech) {
        ENTER(m);
        SESSION(m, h);
        if (!mech)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        SESSION_RETURN(m, h, rpc_digest_init(m->rpc, gen_, dh_, mech));
}

static CK_RV nc_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return data_out(WIRE_OP_DIGEST, h, data, len, out, out_len);
}

static CK_RV nc_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len) {
        return data_in(WIRE_OP_DIGEST_UPDATE, h, data, len);
}

static CK_RV nc_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return final_out(WIRE_OP_DIGEST_FINAL, h, out, out_len);
}

static CK_RV nc_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key) {
        ENTER(m);
        SESSION(m, h);
        SESSION_RETURN(m, h, rpc_digest_key(m->rpc, gen_, dh_, key));
}

static CK_RV nc_SignRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return crypt_init(WIRE_OP_SIGN_RECOVER_INIT, h, mech, key);
}

static CK_RV nc_SignRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                            CK_ULONG_PTR sig_len) {
        return data_out(WIRE_OP_SIGN_RECOVER, h, data, len, sig, sig_len);
}

static CK_RV nc_VerifyRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return crypt_init(WIRE_OP_VERIFY_RECOVER_INIT, h, mech, key);
}

static CK_RV nc_VerifyRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len, CK_BYTE_PTR data,
                              CK_ULONG_PTR len) {
        return data_out(WIRE_OP_VERIFY_RECOVER, h, sig, sig_len, data, len);
}

/* ---- signatures: one round trip each ----
 *
 * A C_SignInit that the module can check from what it already holds waits
 * for the call that follows it: C_Sign sends both in one frame
 * (WIRE_OP_SIGN_ONCE), C_SignUpdate too (WIRE_OP_SIGN_INIT_UPDATE).  It
 * waits only when every check the daemon makes at C_SignInit is known to
 * pass, so that a client probing mechanisms with C_SignInit sees each
 * error at C_SignInit:
 * - no sign operation is active on the session (the module saw the last
 *   one end: a C_Sign or C_SignFinal that returned a signature; a new
 *   session has none);
 * - the mechanism takes no parameter, is one whose key type the module
 *   knows (ECDSA, RSA PKCS#1 v1.5 and X.509, with or without a hash), and
 *   a C_SignInit of this connection already succeeded with it on the same
 *   token;
 * - the key is in the module's copy of the objects (so this connection
 *   sees it), a private key of that type, CKA_SIGN not false, and not
 *   CKA_ALWAYS_AUTHENTICATE (its C_Login(CKU_CONTEXT_SPECIFIC) must find
 *   the operation started).
 * Anything else goes to the daemon at once.  A held init is sent on its own
 * before any other call that would see the operation (C_SignFinal, another
 * C_SignInit, C_Login and C_Logout on the token), so that those answer as
 * if it had been sent at C_SignInit.  What remains different: when the
 * key's state changes between the two calls (destroyed, or the token gone),
 * the error the daemon gives for the init is C_Sign's. */

static bool sign_mech_key_type(CK_MECHANISM_TYPE mech, CK_KEY_TYPE *ret) {
        switch (mech) {
        case CKM_ECDSA:
        case CKM_ECDSA_SHA1:
        case CKM_ECDSA_SHA224:
        case CKM_ECDSA_SHA256:
        case CKM_ECDSA_SHA384:
        case CKM_ECDSA_SHA512:
                *ret = CKK_EC;
                return true;
        case CKM_RSA_PKCS:
        case CKM_RSA_X_509:
        case CKM_SHA1_RSA_PKCS:
        case CKM_SHA224_RSA_PKCS:
        case CKM_SHA256_RSA_PKCS:
        case CKM_SHA384_RSA_PKCS:
        case CKM_SHA512_RSA_PKCS:
                *ret = CKK_RSA;
                return true;
        default:
                return false;
        }
}

/* The checks above, from the module's copies only. */
static bool sign_init_checkable(struct module *m, CK_SLOT_ID slot, const CK_MECHANISM *mech, CK_OBJECT_HANDLE key) {
        CK_KEY_TYPE want;
        if (!m->cache || mech->ulParameterLen || !sign_mech_key_type(mech->mechanism, &want))
                return false;
        cache_refresh(m);
        if (!mcache_sign_mech_known(m->cache, slot, mech->mechanism))
                return false;
        CK_OBJECT_CLASS cls = 0;
        CK_KEY_TYPE kt = 0;
        CK_BBOOL sign = CK_TRUE, always = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls },
                             { CKA_KEY_TYPE, &kt, sizeof kt },
                             { CKA_SIGN, &sign, sizeof sign },
                             { CKA_ALWAYS_AUTHENTICATE, &always, sizeof always } };
        CK_RV rv;
        if (mcache_get_attributes(m->cache, slot, key, t, ELEMENTSOF(t), &rv) != MCACHE_HIT)
                return false;
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
                return false;
        /* An absent CKA_SIGN is true and an absent CKA_ALWAYS_AUTHENTICATE
         * false, as the daemon reads them. */
        if (t[0].ulValueLen != sizeof cls || t[1].ulValueLen != sizeof kt)
                return false;
        if (t[2].ulValueLen == CK_UNAVAILABLE_INFORMATION)
                sign = CK_TRUE;
        if (t[3].ulValueLen == CK_UNAVAILABLE_INFORMATION)
                always = CK_FALSE;
        return cls == CKO_PRIVATE_KEY && kt == want && sign && !always;
}

/* Holds the init back when the session allows it (lock taken here). */
static bool sign_hold(struct module *m, CK_SESSION_HANDLE h, const CK_MECHANISM *mech, CK_OBJECT_HANDLE key) {
        bool held = false;
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        if (s && s->sign_idle && !s->sign_held) {
                s->sign_held = true;
                s->sign_idle = false;
                s->held_mech = mech->mechanism;
                s->held_key = key;
                held = true;
        }
        sess_unlock(m);
        return held;
}

/* Takes the session's held init, if any: true and its mechanism and key. */
static bool sign_take(struct module *m, CK_SESSION_HANDLE h, CK_MECHANISM *ret_mech, CK_OBJECT_HANDLE *ret_key) {
        bool held = false;
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        if (s && s->sign_held) {
                s->sign_held = false;
                *ret_mech = (CK_MECHANISM){ s->held_mech, NULL, 0 };
                *ret_key = s->held_key;
                held = true;
        }
        sess_unlock(m);
        return held;
}

/* After a call that may have ended the operation: it ended when a
 * signature came back, and there was none when the daemon says so;
 * otherwise (a length query, a short buffer, another error) the module no
 * longer knows. */
static void sign_ended(struct module *m, CK_SESSION_HANDLE h, bool ended) {
        sess_lock(m);
        struct msession *s = sess_get_locked(m, h);
        if (s)
                s->sign_idle = ended;
        sess_unlock(m);
}

/* Sends the session's held init on its own; CKR_OK when there was none. */
static CK_RV sign_flush(struct module *m, CK_SESSION_HANDLE h, uint64_t gen, CK_SESSION_HANDLE dh) {
        CK_MECHANISM mech;
        CK_OBJECT_HANDLE key;
        if (!sign_take(m, h, &mech, &key))
                return CKR_OK;
        return rpc_crypt_init(m->rpc, WIRE_OP_SIGN_INIT, gen, dh, &mech, key);
}

/* The same for every session on a slot (before a login or logout, which
 * change what the token lets this process do). */
static void sign_flush_slot(struct module *m, CK_SLOT_ID slot) {
        for (;;) {
                CK_SESSION_HANDLE h = 0, dh = 0;
                uint64_t gen = 0;
                sess_lock(m);
                for (size_t i = 0; i < m->n_sessions && !h; i++)
                        if (m->sessions[i].slot == slot && m->sessions[i].sign_held) {
                                h = m->sessions[i].handle;
                                dh = m->sessions[i].dh;
                                gen = m->sessions[i].gen;
                        }
                sess_unlock(m);
                if (!h)
                        return;
                (void)sign_flush(m, h, gen, dh);
        }
}

static CK_RV nc_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        ENTER(m);
        SESSION(m, h);
        if (!mech)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        /* A held init first: the daemon then answers this one as it would
         * have (CKR_OPERATION_ACTIVE). */
        CK_RV rv = sign_flush(m, h, gen_, dh_);
        if (rv == CKR_OK && sign_init_checkable(m, slot_, mech, key) && sign_hold(m, h, mech, key))
                LEAVE_RETURN(m, cache_served(m, CKR_OK));
        uint64_t kgen;
        struct mcache_stamp st;
        bool keep = keep_begin(m, slot_, &kgen, &st);
        rv = rpc_crypt_init(m->rpc, WIRE_OP_SIGN_INIT, gen_, dh_, mech, key);
        if (rv == CKR_OK) {
                sign_ended(m, h, false);
                CK_KEY_TYPE kt;
                if (keep && keep_ok(m, kgen) && !mech->ulParameterLen && sign_mech_key_type(mech->mechanism, &kt))
                        mcache_put_sign_mech(m->cache, slot_, &st, mech->mechanism);
        } else if (rv == CKR_OPERATION_ACTIVE)
                sign_ended(m, h, false);
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
        ENTER(m);
        SESSION(m, h);
        if (!sig_len || (!data && len))
                OP_BAD_ARGS_RETURN(m, h, WIRE_OP_SIGN);
        CK_MECHANISM mech;
        CK_OBJECT_HANDLE key;
        CK_RV rv = sign_take(m, h, &mech, &key) ?
                rpc_sign_once(m->rpc, gen_, dh_, &mech, key, data, len, sig, sig_len) :
                rpc_data_out(m->rpc, WIRE_OP_SIGN, gen_, dh_, data, len, sig, sig_len);
        sign_ended(m, h, (rv == CKR_OK && sig) || rv == CKR_OPERATION_NOT_INITIALIZED);
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len) {
        ENTER(m);
        SESSION(m, h);
        if (!data && len)
                OP_BAD_ARGS_RETURN(m, h, WIRE_OP_SIGN_UPDATE);
        CK_MECHANISM mech;
        CK_OBJECT_HANDLE key;
        CK_RV rv = sign_take(m, h, &mech, &key) ?
                rpc_sign_init_update(m->rpc, gen_, dh_, &mech, key, data, len) :
                rpc_data_in(m->rpc, WIRE_OP_SIGN_UPDATE, gen_, dh_, data, len);
        sign_ended(m, h, false);
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
        ENTER(m);
        SESSION(m, h);
        if (!sig_len)
                OP_BAD_ARGS_RETURN(m, h, WIRE_OP_SIGN_FINAL);
        CK_RV rv = sign_flush(m, h, gen_, dh_);
        if (rv == CKR_OK)
                rv = rpc_final_out(m->rpc, WIRE_OP_SIGN_FINAL, gen_, dh_, sig, sig_len);
        sign_ended(m, h, (rv == CKR_OK && sig) || rv == CKR_OPERATION_NOT_INITIALIZED);
        SESSION_RETURN(m, h, rv);
}

static CK_RV nc_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return crypt_init(WIRE_OP_VERIFY_INIT, h, mech, key);
}

static CK_RV nc_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG sig_len) {
        ENTER(m);
        SESSION(m, h);
        if ((!data && len) || (!sig && sig_len))
                OP_BAD_ARGS_RETURN(m, h, WIRE_OP_VERIFY);
        SESSION_RETURN(m, h, rpc_verify(m->rpc, gen_, dh_, data, len, sig, sig_len));
}

static CK_RV nc_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len) {
        return data_in(WIRE_OP_VERIFY_UPDATE, h, data, len);
}

static CK_RV nc_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len) {
        return data_in(WIRE_OP_VERIFY_FINAL, h, sig, sig_len);
}

static CK_RV nc_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub, CK_ULONG pub_n,
                                CK_ATTRIBUTE_PTR priv, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR ret_pub,
                                CK_OBJECT_HANDLE_PTR ret_priv) {
        ENTER(m);
        SESSION(m, h);
        if (!mech || !ret_pub || !ret_priv || !template_ok(pub, pub_n) || !template_ok(priv, priv_n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        mark_made_objects(m, h);
        CHANGING_RETURN(m, h,
                        rpc_generate_key_pair(m->rpc, gen_, dh_, mech, pub, pub_n, priv, priv_n, ret_pub, ret_priv));
}

static CK_RV nc_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                            CK_OBJECT_HANDLE_PTR key) {
        ENTER(m);
        SESSION(m, h);
        if (!mech || !key || !template_ok(t, n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        mark_made_objects(m, h);
        CHANGING_RETURN(m, h, rpc_generate_key(m->rpc, gen_, dh_, mech, t, n, key));
}

static CK_RV nc_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey, CK_OBJECT_HANDLE key,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        ENTER(m);
        SESSION(m, h);
        if (!mech || !out_len)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        SESSION_RETURN(m, h, rpc_wrap_key(m->rpc, gen_, dh_, mech, wkey, key, out, out_len));
}

static CK_RV nc_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in,
                          CK_ULONG in_len, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key) {
        ENTER(m);
        SESSION(m, h);
        if (!mech || !key || (!in && in_len) || !template_ok(t, n))
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        mark_made_objects(m, h);
        CHANGING_RETURN(m, h, rpc_unwrap_key(m->rpc, gen_, dh_, mech, ukey, in, in_len, t, n, key));
}

static CK_RV nc_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len) {
        return data_in(WIRE_OP_SEED_RANDOM, h, seed, len);
}

static CK_RV nc_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len) {
        ENTER(m);
        SESSION(m, h);
        if (!out && len)
                LEAVE_RETURN(m, CKR_ARGUMENTS_BAD);
        SESSION_RETURN(m, h, rpc_generate_random(m->rpc, gen_, dh_, out, len));
}

/* ---- not supported ---- */

/* Checks initialization, then answers rv: a function of the 2.40 list the
 * module does not implement. */
static CK_RV unsupported(const char *fn, CK_RV rv) {
        struct module *m = enter();
        if (!m)
                return trace(fn, CKR_CRYPTOKI_NOT_INITIALIZED);
        leave(m);
        return trace(fn, rv);
}

#define UNSUPPORTED() return unsupported(__func__, CKR_FUNCTION_NOT_SUPPORTED)

static CK_RV nc_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG_PTR len) {
        UNSUPPORTED();
}

static CK_RV nc_SetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG len, CK_OBJECT_HANDLE ekey,
                                  CK_OBJECT_HANDLE akey) {
        UNSUPPORTED();
}

static CK_RV nc_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ULONG_PTR size) {
        UNSUPPORTED();
}

static CK_RV nc_DigestEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                    CK_ULONG_PTR out_len) {
        UNSUPPORTED();
}

static CK_RV nc_DecryptDigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                    CK_ULONG_PTR out_len) {
        UNSUPPORTED();
}

static CK_RV nc_SignEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                  CK_ULONG_PTR out_len) {
        UNSUPPORTED();
}

static CK_RV nc_DecryptVerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                    CK_ULONG_PTR out_len) {
        UNSUPPORTED();
}

static CK_RV nc_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t,
                          CK_ULONG n, CK_OBJECT_HANDLE_PTR key) {
        UNSUPPORTED();
}

static CK_RV nc_GetFunctionStatus(CK_SESSION_HANDLE h) {
        return unsupported(__func__, CKR_FUNCTION_NOT_PARALLEL);
}

static CK_RV nc_CancelFunction(CK_SESSION_HANDLE h) {
        return unsupported(__func__, CKR_FUNCTION_NOT_PARALLEL);
}

static CK_FUNCTION_LIST function_list = {
        .version = { 2, 40 },
        .C_Initialize = nc_Initialize,
        .C_Finalize = nc_Finalize,
        .C_GetInfo = nc_GetInfo,
        .C_GetFunctionList = C_GetFunctionList,
        .C_GetSlotList = nc_GetSlotList,
        .C_GetSlotInfo = nc_GetSlotInfo,
        .C_GetTokenInfo = nc_GetTokenInfo,
        .C_GetMechanismList = nc_GetMechanismList,
        .C_GetMechanismInfo = nc_GetMechanismInfo,
        .C_InitToken = nc_InitToken,
        .C_InitPIN = nc_InitPIN,
        .C_SetPIN = nc_SetPIN,
        .C_OpenSession = nc_OpenSession,
        .C_CloseSession = nc_CloseSession,
        .C_CloseAllSessions = nc_CloseAllSessions,
        .C_GetSessionInfo = nc_GetSessionInfo,
        .C_GetOperationState = nc_GetOperationState,
        .C_SetOperationState = nc_SetOperationState,
        .C_Login = nc_Login,
        .C_Logout = nc_Logout,
        .C_CreateObject = nc_CreateObject,
        .C_CopyObject = nc_CopyObject,
        .C_DestroyObject = nc_DestroyObject,
        .C_GetObjectSize = nc_GetObjectSize,
        .C_GetAttributeValue = nc_GetAttributeValue,
        .C_SetAttributeValue = nc_SetAttributeValue,
        .C_FindObjectsInit = nc_FindObjectsInit,
        .C_FindObjects = nc_FindObjects,
        .C_FindObjectsFinal = nc_FindObjectsFinal,
        .C_EncryptInit = nc_EncryptInit,
        .C_Encrypt = nc_Encrypt,
        .C_EncryptUpdate = nc_EncryptUpdate,
        .C_EncryptFinal = nc_EncryptFinal,
        .C_DecryptInit = nc_DecryptInit,
        .C_Decrypt = nc_Decrypt,
        .C_DecryptUpdate = nc_DecryptUpdate,
        .C_DecryptFinal = nc_DecryptFinal,
        .C_DigestInit = nc_DigestInit,
        .C_Digest = nc_Digest,
        .C_DigestUpdate = nc_DigestUpdate,
        .C_DigestKey = nc_DigestKey,
        .C_DigestFinal = nc_DigestFinal,
        .C_SignInit = nc_SignInit,
        .C_Sign = nc_Sign,
        .C_SignUpdate = nc_SignUpdate,
        .C_SignFinal = nc_SignFinal,
        .C_SignRecoverInit = nc_SignRecoverInit,
        .C_SignRecover = nc_SignRecover,
        .C_VerifyInit = nc_VerifyInit,
        .C_Verify = nc_Verify,
        .C_VerifyUpdate = nc_VerifyUpdate,
        .C_VerifyFinal = nc_VerifyFinal,
        .C_VerifyRecoverInit = nc_VerifyRecoverInit,
        .C_VerifyRecover = nc_VerifyRecover,
        .C_DigestEncryptUpdate = nc_DigestEncryptUpdate,
        .C_DecryptDigestUpdate = nc_DecryptDigestUpdate,
        .C_SignEncryptUpdate = nc_SignEncryptUpdate,
        .C_DecryptVerifyUpdate = nc_DecryptVerifyUpdate,
        .C_GenerateKey = nc_GenerateKey,
        .C_GenerateKeyPair = nc_GenerateKeyPair,
        .C_WrapKey = nc_WrapKey,
        .C_UnwrapKey = nc_UnwrapKey,
        .C_DeriveKey = nc_DeriveKey,
        .C_SeedRandom = nc_SeedRandom,
        .C_GenerateRandom = nc_GenerateRandom,
        .C_GetFunctionStatus = nc_GetFunctionStatus,
        .C_CancelFunction = nc_CancelFunction,
        .C_WaitForSlotEvent = nc_WaitForSlotEvent,
};
