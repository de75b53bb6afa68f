/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netcad: the per-user NETCA token daemon.  See netcad(8). */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secmem.h"
#include "common/util.h"
#include "common/wire-client.h"
#include "core.h"
#include "drivers/table.h"
#include "netcad.h"
#include "audit.h"
#include "logind.h"
#include "mgmt.h"
#include "registry.h"
#include "server.h"
#include "state.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: netcad [OPTIONS]\n"
                "The per-user NETCA token daemon: serves USB keys, soft tokens and paired\n"
                "phones to netca-pkcs11.so and netca-tool over a Unix socket.\n\n"
                "  -f, --foreground       stay in the foreground (default: detach once ready)\n"
                "  -s, --socket PATH      socket path (env NETCA_SOCKET;\n"
                "                         default $XDG_RUNTIME_DIR/netca/netcad.sock)\n"
                "  -d, --data-dir DIR     tokens and state (env NETCA_DATA_DIR;\n"
                "                         default $XDG_DATA_HOME/netca or ~/.local/share/netca)\n"
                "  -w, --workers N        worker threads (default 8)\n"
                "  -h, --help             this help\n"
                "  -V, --version          print the version\n");
}

/* mkdir -p with mode for every component created. */
static int mkdir_p(const char *path, mode_t mode) {
        char buf[PATH_MAX];
        if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static char *default_socket(void) {
        return wire_socket_path(); /* the clients' default, common/wire-client.h */
}

static char *default_data_dir(void) {
        const char *e = secure_getenv("NETCA_DATA_DIR");
        char *r = NULL;
        if (e && *e)
                return strdup(e);
        const char *x = secure_getenv("XDG_DATA_HOME");
        if (x && *x) {
                if (asprintf(&r, "%s/netca", x) < 0)
                        return NULL;
                return r;
        }
        const char *home = secure_getenv("HOME");
        if (!home || !*home)
                return NULL;
        if (asprintf(&r, "%s/.local/share/netca", home) < 0)
                return NULL;
        return r;
}

/* libevent's buffers carry request frames, some with PINs: its memory is
 * wiped when freed or moved. */
static void *ev_malloc(size_t n) {
        return malloc(n);
}

static void ev_free(void *p) {
        if (p)
                explicit_bzero(p, malloc_usable_size(p));
        free(p);
}

static void *ev_realloc(void *p, size_t n) {
        if (!p)
                return malloc(n);
        size_t old = malloc_usable_size(p);
        void *q = malloc(n ? n : 1);
        if (!q)
                return NULL;
        memcpy(q, p, old < n ? old : n);
        ev_free(p);
        return q;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
        struct event_base *base = arg;
        log_notice("signal %d: shutting down", (int)sig);
        event_base_loopexit(base, NULL);
}

#define SWEEP_SECONDS 2

static void on_audit(void *userdata, const struct audit_event *e) {
        audit_log(userdata, e);
}

static void sweep_cb(evutil_socket_t fd, short what, void *userdata) {
        struct netcad *d = userdata;
        (void)fd;
        (void)what;
        core_sweep(d->core);
        /* Clients went away since the last sweep: give the memory their
         * sessions, objects and buffers used back to the system, also from
         * the middle of the heap and from the other arena (free() only
         * trims the main heap's top).  A long-running daemon then returns
         * to its idle size after a burst (issue 3: RSS idle, and back to
         * the start level after load).  Costs a walk over the free chunks:
         * microseconds for this daemon's heap. */
        static unsigned long trimmed_at;
        unsigned long released = d->server ? server_released(d->server) : 0;
        if (released != trimmed_at) {
                trimmed_at = released;
                (void)malloc_trim(0);
                __atomic_add_fetch(&d->memory_trims, 1, __ATOMIC_RELAXED);
        }
}

/* Without --foreground: fork, and let the parent exit once the child is
 * serving (or report its failure). */
static int detach(int *ret_notify_fd) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0) {
                close(p[1]);
                char c = 1;
                ssize_t n = read(p[0], &c, 1);
                _exit(n == 1 && c == 0 ? 0 : 1);
        }
        close(p[0]);
        setsid();
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                if (!getenv("NETCA_LOG_FILE"))
                        dup2(null, 2);
                if (null > 2)
                        close(null);
        }
        *ret_notify_fd = p[1];
        return 0;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "foreground", no_argument, NULL, 'f' }, { "socket", required_argument, NULL, 's' },
                { "data-dir", required_argument, NULL, 'd' }, { "workers", required_argument, NULL, 'w' },
                { "help", no_argument, NULL, 'h' },       { "version", no_argument, NULL, 'V' },
                {}
        };
        bool foreground = false;
        char *socket_path = NULL, *data_dir = NULL;
        unsigned workers = 8;
        int c;
        while ((c = getopt_long(argc, argv, "fs:d:w:hV", opts, NULL)) >= 0) {
                switch (c) {
                case 'f': foreground = true; break;
                case 's': free(socket_path); socket_path = strdup(optarg); break;
                case 'd': free(data_dir); data_dir = strdup(optarg); break;
                case 'w': {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*end || v < 1 || v > 256) {
                                fprintf(stderr, "netcad: --workers wants a number from 1 to 256\n");
                                goto usage_error;
                        }
                        workers = (unsigned)v;
                        break;
                }
                case 'h': usage(stdout); free(socket_path); free(data_dir); return 0;
                case 'V': printf("netcad %s\n", NETCA_VERSION); free(socket_path); free(data_dir); return 0;
                default: usage(stderr); goto usage_error;
                }
        }
        if (optind < argc) {
                usage(stderr);
        usage_error:
                /* Freed for LeakSanitizer: a usage error is an exit status 2,
                 * not a leak report's 1 (daemon-version, daemon-workers). */
                free(socket_path);
                free(data_dir);
                return 2;
        }
        log_setup("netcad");
        int r = secure_harden_process();
        if (r < 0)
                log_warning("cannot disable core dumps: %s", strerror(-r));
        /* RSS (issue 3): SQLite's default bulk-allocates and touches 20 page
         * slots (~87 kB) per open database; pages come one by one instead.
         * Must precede any SQLite use. */
        (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)NULL, 0, 0);
        /* malloc keeps its default arenas (8 per CPU).  Limiting them (2 were
         * tried, to save their high-water marks, ~40-130 kB each) made the
         * threads that sign share an arena: mbedTLS allocates hundreds of
         * times per signature, and two signers then spent their time in the
         * arena's lock (86 futex calls per ECDSA signature instead of 10,
         * 1,720 signatures/s with 2 threads instead of 2,100-2,400).  The
         * memory the arenas hold after a burst goes back at the sweep
         * (malloc_trim, sweep_cb). */

        struct netcad d = { .pid = getpid(), .started = time(NULL) };
        d.socket_path = socket_path ? socket_path : default_socket();
        d.data_dir = data_dir ? data_dir : default_data_dir();
        if (!d.socket_path || !d.data_dir) {
                fprintf(stderr, "netcad: no socket path or data directory (set HOME, or use --socket and --data-dir)\n");
                return 1;
        }
        int listen_fd = -1;
        if (sd_listen_fds(1) == 1)
                listen_fd = SD_LISTEN_FDS_START;
        else {
                char *dir = strdup(d.socket_path);
                char *slash = dir ? strrchr(dir, '/') : NULL;
                if (slash && slash != dir) {
                        *slash = '\0';
                        if ((r = mkdir_p(dir, 0700)) < 0) {
                                fprintf(stderr, "netcad: cannot create %s: %s\n", dir, strerror(-r));
                                free(dir);
                                return 1;
                        }
                }
                free(dir);
        }
        if ((r = mkdir_p(d.data_dir, 0700)) < 0) {
                fprintf(stderr, "netcad: cannot create data directory %s: %s\n", d.data_dir, strerror(-r));
                return 1;
        }
        int notify_fd = -1;
        if (!foreground && (r = detach(&notify_fd)) < 0) {
                fprintf(stderr, "netcad: cannot detach: %s\n", strerror(-r));
                return 1;
        }
        d.pid = getpid(); /* the detached child's, for daemon status */
        event_set_mem_functions(ev_malloc, ev_realloc, ev_free);
        evthread_use_pthreads();
        signal(SIGPIPE, SIG_IGN);
        d.base = event_base_new();
        if (!d.base) {
                log_error("cannot create the event loop");
                return 1;
        }
        if ((r = state_open(d.data_dir, &d.state)) < 0) {
                log_error("cannot open the state database in %s: %s", d.data_dir, strerror(-r));
                return 1;
        }
        if ((r = core_new(&d.core)) < 0) {
                log_error("out of memory");
                return 1;
        }
        if ((r = audit_open(d.data_dir, &d.audit)) < 0)
                log_warning("usage records are not kept: %s", strerror(-r));
        else
                core_set_audit_sink(d.core, on_audit, d.audit);
        (void)mgmt_apply_settings(&d);
        /* Screen locks clear the PIN cache of their session. */
        struct logind_watch *logind = NULL;
        if ((r = logind_watch_new(d.base, d.core, &logind)) < 0)
                log_notice("no system bus (%s): screen locks will not clear the PIN cache", strerror(-r));
        /* What belongs to processes that are gone (their cached PINs) is
         * dropped within SWEEP_SECONDS. */
        struct timeval sweep_tv = { SWEEP_SECONDS, 0 };
        struct event *sweep = event_new(d.base, -1, EV_PERSIST, sweep_cb, &d);
        if (sweep)
                event_add(sweep, &sweep_tv);
        if ((r = registry_new(d.core, d.state, d.data_dir, &d.registry)) < 0) {
                log_error("out of memory");
                return 1;
        }
        struct server *srv = NULL;
        if ((r = server_new(&d, listen_fd, workers, &srv)) < 0) {
                if (r == -EADDRINUSE)
                        log_error("another netcad is already serving %s", d.socket_path);
                else
                        log_error("cannot listen on %s: %s", d.socket_path, strerror(-r));
                registry_free(d.registry);
                core_free(d.core);
                state_close(d.state);
                return 1;
        }
        d.server = srv;
        /* The drivers (drivers/table.c): soft tokens, then USB keys and
         * readers (NETCA_USB=0 turns those off). */
        (void)registry_start(d.registry, netcad_drivers);
        struct event *sigterm = evsignal_new(d.base, SIGTERM, on_signal, d.base);
        struct event *sigint = evsignal_new(d.base, SIGINT, on_signal, d.base);
        event_add(sigterm, NULL);
        event_add(sigint, NULL);
        log_notice("serving %s (data %s)", d.socket_path, d.data_dir);
        if (notify_fd >= 0) {
                char ok = 0;
                ssize_t w = write(notify_fd, &ok, 1);
                (void)w;
                close(notify_fd);
        }
        (void)sd_notify(0, "READY=1");

        event_base_dispatch(d.base);

        (void)sd_notify(0, "STOPPING=1");
        registry_stop(d.registry);   /* no token arrives or leaves from here on */
        d.server = NULL;
        server_free(srv);            /* clients' sessions closed, logins dropped */
        logind = logind_watch_free(logind);
        d.core = core_free(d.core);  /* soft tokens flushed and closed */
        d.audit = audit_close(d.audit); /* queued usage records written */
        d.registry = registry_free(d.registry); /* after the tokens: their transports hold readers */
        d.state = state_close(d.state);
        event_free(sigterm);
        event_free(sigint);
        if (sweep)
                event_free(sweep);
        event_base_free(d.base);
        free(d.socket_path);
        free(d.data_dir);
        log_notice("stopped");
        return 0;
}
