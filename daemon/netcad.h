/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's shared context, handed to the server, the management ops and
 * the drivers' hosts.  Created in main.c; lives for the whole process. */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct core;
struct event_base;
struct state_db;
struct audit;
struct registry;

struct netcad {
        struct core *core;
        struct event_base *base;     /* the one libevent loop */
        struct state_db *state;      /* daemon state database (daemon/state.h) */
        struct audit *audit;         /* usage records (daemon/audit.h), NULL when unavailable */
        struct server *server;       /* the socket's clients (daemon/server.h), once serving */
        struct registry *registry;   /* the drivers (daemon/registry.h) */
        char *data_dir;              /* soft tokens and state.db live here (0700) */
        char *socket_path;
        time_t started;              /* wall-clock start time */
        pid_t pid;
        unsigned long memory_trims;  /* sweeps that gave memory back (atomic; MGMT_STATUS) */
};
