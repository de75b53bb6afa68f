/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static unsigned log_mask;
static bool log_quiet;
static int log_fd = 2;
static int diag_fd = -1;   /* atomic: read without a lock on every message */
static const char *log_prog = "netca";

static const struct {
        const char *name;
        enum log_sub sub;
} subs[] = {
        { "wire", LOG_SUB_WIRE },   { "server", LOG_SUB_SERVER }, { "core", LOG_SUB_CORE },
        { "soft", LOG_SUB_SOFT },   { "module", LOG_SUB_MODULE }, { "mgmt", LOG_SUB_MGMT },
        { "cli", LOG_SUB_CLI },     { "store", LOG_SUB_STORE },   { "usb", LOG_SUB_USB },
        { "piv", LOG_SUB_PIV },     { "ble", LOG_SUB_BLE },       { "mobile", LOG_SUB_MOBILE },
        { "trace", LOG_SUB_TRACE },
};

static void log_init_once(void) {
        const char *d = secure_getenv("NETCA_DEBUG");
        if (d) {
                char buf[256];
                snprintf(buf, sizeof buf, "%s", d);
                char *save = NULL;
                for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                        if (strcmp(t, "all") == 0 || strcmp(t, "1") == 0)
                                log_mask = ~0u;
                        for (size_t i = 0; i < ELEMENTSOF(subs); i++)
                                if (strcmp(t, subs[i].name) == 0)
                                        log_mask |= subs[i].sub;
                }
        }
        const char *f = secure_getenv("NETCA_LOG_FILE");
        if (f && *f) {
                int fd = open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
                if (fd >= 0)
                        log_fd = fd;
        }
}

void log_setup(const char *progname) {
        if (progname)
                log_prog = progname;
        pthread_once(&log_once, log_init_once);
}

void log_set_quiet(bool quiet) {
        log_quiet = quiet;
}

bool log_enabled(enum log_sub sub) {
        pthread_once(&log_once, log_init_once);
        return (log_mask & sub) != 0 || __atomic_load_n(&diag_fd, __ATOMIC_RELAXED) >= 0;
}

/* The diagnostic log always uses the same descriptor number once it has
 * one: a writer that read diag_fd just before a switch then writes to the
 * old file or to /dev/null, never into a descriptor reused for something
 * else. */
static int diag_slot = -1;
static pthread_mutex_t diag_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_diagnostic_fd(int fd) {
        pthread_mutex_lock(&diag_lock);
        if (fd >= 0) {
                if (diag_slot < 0)
                        diag_slot = fd;
                else if (fd != diag_slot) {
                        dup3(fd, diag_slot, O_CLOEXEC);
                        close(fd);
                }
                __atomic_store_n(&diag_fd, diag_slot, __ATOMIC_SEQ_CST);
        } else if (diag_slot >= 0) {
                __atomic_store_n(&diag_fd, -1, __ATOMIC_SEQ_CST);
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (null >= 0) {
                        dup3(null, diag_slot, O_CLOEXEC);
                        close(null);
                }
        }
        pthread_mutex_unlock(&diag_lock);
}

int log_get_diagnostic_fd(void) {
        return __atomic_load_n(&diag_fd, __ATOMIC_RELAXED);
}

/* to_main: also to the main log (stderr or NETCA_LOG_FILE). */
static void log_vwrite(const char *level, bool to_main, const char *fmt, va_list ap) {
        char line[2048];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        localtime_r(&ts.tv_sec, &tm);
        int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s[%d] %s: ", tm.tm_hour, tm.tm_min,
                         tm.tm_sec, ts.tv_nsec / 1000000, log_prog, (int)getpid(), level);
        if (n < 0)
                return;
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        if (m < 0)
                return;
        size_t len = (size_t)n + (size_t)m;
        if (len > sizeof line - 2)
                len = sizeof line - 2;
        line[len++] = '\n';
        ssize_t w;
        if (to_main) {
                w = write(log_fd, line, len);
                (void)w;
        }
        int dfd = __atomic_load_n(&diag_fd, __ATOMIC_RELAXED);
        if (dfd >= 0) {
                w = write(dfd, line, len);
                (void)w;
        }
}

void log_msg(const char *level, const char *fmt, ...) {
        pthread_once(&log_once, log_init_once);
        bool to_main = !(log_quiet && log_mask == 0);
        if (!to_main && __atomic_load_n(&diag_fd, __ATOMIC_RELAXED) < 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        log_vwrite(level, to_main, fmt, ap);
        va_end(ap);
}

void log_debug_sub(enum log_sub sub, const char *fmt, ...) {
        const char *name = "debug";
        for (size_t i = 0; i < ELEMENTSOF(subs); i++)
                if (subs[i].sub == sub)
                        name = subs[i].name;
        va_list ap;
        va_start(ap, fmt);
        log_vwrite(name, (log_mask & sub) != 0, fmt, ap);
        va_end(ap);
}
