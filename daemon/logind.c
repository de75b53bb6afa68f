/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "logind.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "common/log.h"
#include "core.h"
#include "pincache.h"

#define SESSION_PATH_PREFIX "/org/freedesktop/login1/session"

struct logind_watch {
        sd_bus *bus;
        sd_bus_slot *match;
        struct event *ev;
        struct core *core;
};

static int on_lock(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct logind_watch *w = userdata;
        (void)ret_error;
        const char *path = sd_bus_message_get_path(m);
        char *id = NULL;
        /* /org/freedesktop/login1/session/_31 is session "1". */
        if (!path || sd_bus_path_decode(path, SESSION_PATH_PREFIX, &id) <= 0 || !id || !*id) {
                free(id);
                return 0;
        }
        unsigned n = pincache_flush_session(core_pin_cache(w->core), id);
        log_notice("login session %s locked: %u cached PIN%s dropped", id, n, n == 1 ? "" : "s");
        free(id);
        return 0;
}

static void process(struct logind_watch *w) {
        int r;
        while ((r = sd_bus_process(w->bus, NULL)) > 0)
                ;
        if (r < 0 && w->ev) {
                log_warning("lost the system bus (%s): screen locks no longer clear the PIN cache", strerror(-r));
                event_del(w->ev);
        }
}

static void on_readable(evutil_socket_t fd, short what, void *userdata) {
        (void)fd;
        (void)what;
        process(userdata);
}

int logind_watch_new(struct event_base *base, struct core *core, struct logind_watch **ret) {
        struct logind_watch *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->core = core;
        int r = sd_bus_open_system(&w->bus);
        if (r >= 0)
                r = sd_bus_match_signal(w->bus, &w->match, NULL, NULL, "org.freedesktop.login1.Session", "Lock",
                                        on_lock, w);
        if (r >= 0) {
                w->ev = event_new(base, sd_bus_get_fd(w->bus), EV_READ | EV_PERSIST, on_readable, w);
                if (!w->ev || event_add(w->ev, NULL) < 0)
                        r = -ENOMEM;
        }
        if (r < 0) {
                logind_watch_free(w);
                *ret = NULL;
                return r;
        }
        /* What arrived while setting up. */
        process(w);
        *ret = w;
        return 0;
}

struct logind_watch *logind_watch_free(struct logind_watch *w) {
        if (!w)
                return NULL;
        if (w->ev)
                event_free(w->ev);
        sd_bus_slot_unref(w->match);
        sd_bus_flush_close_unref(w->bus);
        free(w);
        return NULL;
}
