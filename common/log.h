/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging.
 *
 * Executables log errors and notices to stderr (the daemon's stderr is the
 * journal under systemd).  Debug messages are per subsystem and switched on by
 * NETCA_DEBUG=sub1,sub2 (or "all"); NETCA_LOG_FILE redirects all output to a
 * file (appending).  The PKCS#11 module calls log_set_quiet(true): it then
 * writes nothing unless NETCA_DEBUG asks for it.
 *
 * Never pass a PIN, a key or data being signed to any of these. */
#pragma once

#include <stdbool.h>
#include "util.h"

enum log_sub {
        LOG_SUB_WIRE = 1 << 0,
        LOG_SUB_SERVER = 1 << 1,
        LOG_SUB_CORE = 1 << 2,
        LOG_SUB_SOFT = 1 << 3,
        LOG_SUB_MODULE = 1 << 4,
        LOG_SUB_MGMT = 1 << 5,
        LOG_SUB_CLI = 1 << 6,
        LOG_SUB_STORE = 1 << 7,
        LOG_SUB_USB = 1 << 8,
        LOG_SUB_PIV = 1 << 9,
        LOG_SUB_BLE = 1 << 10,
        LOG_SUB_MOBILE = 1 << 11,
        LOG_SUB_TRACE = 1 << 12, /* PKCS#11 call trace in the module */
};

/* Reads NETCA_DEBUG / NETCA_LOG_FILE once; safe to call repeatedly. */
void log_setup(const char *progname);
void log_set_quiet(bool quiet);
bool log_enabled(enum log_sub sub);
/* The diagnostic log (netca-tool log enable): every message, debug ones of
 * all subsystems included, is also written to fd (taken over; -1 stops and
 * closes it).  Same rule as everywhere: never a PIN, key or signed data. */
void log_set_diagnostic_fd(int fd);
int log_get_diagnostic_fd(void);

void log_msg(const char *level, const char *fmt, ...) _printf_(2, 3);
void log_debug_sub(enum log_sub sub, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg("error", __VA_ARGS__)
#define log_warning(...) log_msg("warning", __VA_ARGS__)
#define log_notice(...) log_msg("notice", __VA_ARGS__)
#define log_debug(sub, ...)                                     \
        do {                                                    \
                if (log_enabled(sub))                           \
                        log_debug_sub(sub, __VA_ARGS__);        \
        } while (0)
