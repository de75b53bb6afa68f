/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Watching logind (org.freedesktop.login1 on the system bus, over sd-bus):
 * when a session is locked (the screen lock's Lock signal), the PIN cache
 * entries of that session are flushed.  The bus connection is driven from
 * the daemon's libevent loop.  Without a system bus or logind nothing is
 * watched (logged once); tests point DBUS_SYSTEM_BUS_ADDRESS at a private
 * bus with a mocked logind. */
#pragma once

struct event_base;
struct core;
struct logind_watch;

/* 0, or -errno when there is no system bus (*ret NULL then). */
int logind_watch_new(struct event_base *base, struct core *core, struct logind_watch **ret);
struct logind_watch *logind_watch_free(struct logind_watch *w);
