/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The socket server: accepts clients on the Unix socket (refusing any uid
 * but the daemon's, by SO_PEERCRED), reads frames, answers HELLO and PING on
 * the loop, runs PKCS#11 and management ops on worker threads, writes
 * replies, and pushes the core's events to every client.
 *
 * Workers come in lanes (server.c, "Scheduling"): `workers` general threads
 * for calls that touch no device, one lane per token for calls into its
 * driver (threads on demand: 1, or max(2, CPUs) for a driver that signs in
 * parallel), and a small lane for releasing departed clients; so a slow token
 * delays only its own calls.  Calls on one session run in the order they
 * arrived.
 *
 * Limits (netcad(8), LIMITS): a frame over WIRE_FRAME_MAX or with a
 * malformed header drops the client, and so does a frame not complete
 * within NETCA_FRAME_TIMEOUT_MS of its first byte, or one that would take
 * the bytes of all clients' incomplete frames over NETCA_MAX_INCOMPLETE_KB;
 * a client with SERVER_MAX_INFLIGHT requests in progress is not read from
 * until some have finished; one with more than NETCA_MAX_OUTPUT_KB of
 * output it has not read is not read from, and none of its requests runs,
 * until it has read half of it; an event subscriber with more than
 * NETCA_MAX_EVENT_OUTPUT_KB unsent is sent no more events but one RESYNC
 * once it has read, or is dropped (NETCA_EVENT_OVERFLOW=drop).
 * Connections: NETCA_MAX_CONNECTIONS in all and
 * NETCA_MAX_CONNECTIONS_PER_PROCESS; when out of fds, waiting clients are
 * accepted with a spare fd and closed, and accepting pauses. */
#pragma once

#include <stdbool.h>

struct netcad;
struct server;

#define SERVER_MAX_INFLIGHT 128

/* listen_fd >= 0: an already listening socket (systemd activation); else
 * the server binds d->socket_path itself (the directory must exist).
 * Returns 0 or -errno (-EADDRINUSE: another daemon answers there). */
int server_new(struct netcad *d, int listen_fd, unsigned workers, struct server **ret);
/* Closes every client (their sessions closed, logins dropped), stops the
 * workers, unlinks the socket if it bound it.  NULL ok. */
struct server *server_free(struct server *s);
unsigned server_clients(struct server *s);
/* Clients released so far (their sessions and buffers freed). */
unsigned long server_released(struct server *s);
