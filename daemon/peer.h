/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What netcad learns of a client process, all in one place: its
 * credentials from the socket (SO_PEERCRED), and from /proc (executable,
 * start time, liveness, terminal, environment) and logind (its login
 * session).  Reads only what the kernel lets our own uid read; every
 * function copes with a process that has gone. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct core_peer;

/* The peer of a connected Unix socket: pid, uid, gid (SO_PEERCRED), the
 * executable and the start time.  False when the kernel gave no
 * credentials (the caller drops the connection); exe and start time stay
 * empty/0 when /proc does not tell. */
bool peer_from_socket(int fd, struct core_peer *ret);

/* /proc/<pid>/stat: the state letter and the start time (field 22, clock
 * ticks since boot).  False when the process is gone or the file is not as
 * expected. */
bool peer_stat(pid_t pid, char *ret_state, unsigned long long *ret_start_time);

/* The process pid is the one that started at start_time and has not ended
 * (not a zombie): what a PIN cached "for this process" checks. */
bool peer_alive(pid_t pid, unsigned long long start_time);

/* The login session of pid: logind's, else the XDG_SESSION_ID of its
 * environment.  "" when neither says. */
void peer_session(pid_t pid, char *buf, size_t cap);

/* A variable of the environment pid was started with: true and its value
 * in buf when set, non-empty and fitting. */
bool peer_env(pid_t pid, const char *name, char *buf, size_t cap);

/* The terminal of pid (its stdin, when a /dev/pts or /dev/tty device). */
bool peer_tty(pid_t pid, char *buf, size_t cap);
