/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver registry (daemon/registry.c) in-process, with the soft driver,
 * the example driver (example/) and a probe driver defined here that keeps
 * its host so the test can call each host service:
 *   - start: every driver of the table; one turned off (-ECANCELED) and one
 *     that fails are left out, the others serve;
 *   - the management ops reach the driver that added the token: listing
 *     members from describe (soft "path", example "example"), create only
 *     where the driver has it (-EPERM, -ENOENT), delete only where it has
 *     it (EPERM through mgmt), the soft driver's delete removing the token
 *     file and SQLite's side files;
 *   - token_changed posts WIRE_EV_TOKEN_CHANGED for the token's slot,
 *     token_removed empties the slot (WIRE_EV_SLOT_REMOVED);
 *   - settings live in the state database under "<driver>.<key>". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/wire.h"
#include "daemon/core.h"
#include "daemon/mgmt.h"
#include "daemon/netcad.h"
#include "daemon/registry.h"
#include "daemon/state.h"
#include "drivers/soft/soft.h"

#define CHECK(x)                                                                        \
        do {                                                                            \
                if (!(x)) {                                                             \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
                        exit(1);                                                        \
                }                                                                       \
        } while (0)

extern const struct driver example_driver;

/* ---- the probe driver: one token, its host kept for the test */
static struct driver_host *probe_host;
static struct token *probe_token;
static CK_SLOT_ID probe_slot;

struct token {
        int unused;
};

static int probe_get_info(struct token *t, struct token_desc *ret) {
        memset(ret, 0, sizeof *ret);
        snprintf(ret->label, sizeof ret->label, "probe");
        ret->kind = "probe";
        ret->flags = CKF_TOKEN_INITIALIZED;
        ret->user_tries_left = ret->user_tries_max = ret->so_tries_left = ret->so_tries_max = -1;
        return 0;
}

static int probe_get_mechanisms(struct token *t, const struct driver_mech **ret, size_t *ret_n) {
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static int probe_load_objects(struct token *t, struct dobj **ret, size_t *ret_n) {
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static int probe_login(struct token *t, CK_USER_TYPE u, const char *pin, size_t len) {
        return -EACCES;
}

static int probe_logout(struct token *t) {
        return 0;
}

static void probe_free(struct token *t) {
        free(t);
}

static const struct driver_ops probe_ops = {
        .name = "probe",
        .get_info = probe_get_info,
        .get_mechanisms = probe_get_mechanisms,
        .load_objects = probe_load_objects,
        .login = probe_login,
        .logout = probe_logout,
        .free = probe_free,
};

static int probe_start(struct driver_host *h) {
        probe_host = h;
        probe_token = calloc(1, sizeof *probe_token);
        CHECK(probe_token);
        return h->token_added(h, &probe_ops, probe_token, "probe:1", &probe_slot);
}

static int probe_stopped;
static void probe_stop(struct driver_host *h) {
        probe_stopped++;
}

static const struct driver probe_driver = { .name = "probe", .start = probe_start, .stop = probe_stop };

static int failing_start(struct driver_host *h) {
        return -EIO;
}
static const struct driver failing_driver = { .name = "failing", .start = failing_start };

static int off_start(struct driver_host *h) {
        return -ECANCELED;
}
static const struct driver off_driver = { .name = "off", .start = off_start };

/* ---- events */
static unsigned ev_changed, ev_removed;
static CK_SLOT_ID ev_slot;

static void on_event(void *userdata, enum wire_event ev, CK_SLOT_ID slot) {
        if (ev == WIRE_EV_TOKEN_CHANGED)
                ev_changed++;
        if (ev == WIRE_EV_SLOT_REMOVED)
                ev_removed++;
        ev_slot = slot;
}

/* ---- helpers */
static int call(struct netcad *d, uint16_t op, const char *json, cJSON **ret) {
        char *out = NULL;
        int st = mgmt_handle(d, NULL, op, json, &out);
        CHECK(st >= 0 && out);
        *ret = cJSON_Parse(out);
        CHECK(*ret);
        free(out);
        return st;
}

static const cJSON *token_labelled(const cJSON *list, const char *label) {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(list, "tokens")) {
                const cJSON *l = cJSON_GetObjectItemCaseSensitive(t, "label");
                if (cJSON_IsString(l) && strcmp(l->valuestring, label) == 0)
                        return t;
        }
        return NULL;
}

static const char *str(const cJSON *o, const char *name) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool exists(const char *path, const char *suffix) {
        char p[1024];
        snprintf(p, sizeof p, "%s%s", path, suffix);
        return access(p, F_OK) == 0;
}

static void touch(const char *path, const char *suffix) {
        char p[1024];
        snprintf(p, sizeof p, "%s%s", path, suffix);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        close(fd);
}

int main(void) {
        char tmpdir[] = "/tmp/netca-test-registry.XXXXXX";
        struct netcad d = {};
        cJSON *r;
        char *v = NULL;

        CHECK(mkdtemp(tmpdir));
        CHECK(core_new(&d.core) == 0);
        core_set_event_sink(d.core, on_event, NULL);
        CHECK(state_open(tmpdir, &d.state) == 0);
        d.data_dir = tmpdir;
        d.socket_path = (char *)"/nonexistent.sock";
        d.started = time(NULL);
        d.pid = getpid();
        CHECK(registry_new(d.core, d.state, d.data_dir, &d.registry) == 0);

        /* Start: the failing and the turned-off drivers are left out. */
        unsetenv("NETCA_EXAMPLE");
        static const struct driver *const table[] = { &soft_driver, &failing_driver, &example_driver,
                                                      &off_driver, &probe_driver, NULL };
        CHECK(registry_start(d.registry, table) == 3);
        CHECK(probe_host && probe_host->driver == &probe_driver && probe_host->data_dir &&
              strcmp(probe_host->data_dir, tmpdir) == 0);

        /* Listing: each token with what its own driver describes. */
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_LIST, "{}", &r) == 0);
        const cJSON *ex = token_labelled(r, "example"), *pr = token_labelled(r, "probe");
        CHECK(ex && pr);
        CHECK(str(ex, "kind") && strcmp(str(ex, "kind"), "example") == 0);
        CHECK(str(ex, "example") && strcmp(str(ex, "example"), "described by the example driver") == 0);
        CHECK(!str(ex, "path") && !str(pr, "path") && !str(pr, "example"));
        cJSON_Delete(r);

        /* Create: only a started driver that has create. */
        struct driver_create_args a = { .label = "x", .pin = "123456", .pin_len = 6, .so_pin = "87654321", .so_pin_len = 8 };
        CK_SLOT_ID slot;
        char *where = NULL;
        CHECK(registry_create(d.registry, "example", &a, &slot, &where) == -EPERM && !where);
        CHECK(registry_create(d.registry, "off", &a, &slot, &where) == -ENOENT && !where);
        CHECK(registry_create(d.registry, "nonexistent", &a, &slot, &where) == -ENOENT && !where);

        /* A soft token through mgmt; its listing has its file. */
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT, "{\"label\":\"soft1\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
                   &r) == 0);
        char path[1024];
        snprintf(path, sizeof path, "%s", str(r, "path"));
        double soft_slot = cJSON_GetObjectItemCaseSensitive(r, "slot")->valuedouble;
        cJSON_Delete(r);
        CHECK(exists(path, ""));
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_LIST, "{}", &r) == 0);
        CHECK(str(token_labelled(r, "soft1"), "path") && strcmp(str(token_labelled(r, "soft1"), "path"), path) == 0);
        cJSON_Delete(r);

        /* Delete: the example driver has none (EPERM, its token stays)... */
        char req[64];
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_LIST, "{}", &r) == 0);
        snprintf(req, sizeof req, "{\"slot\":%.0f}", cJSON_GetObjectItemCaseSensitive(token_labelled(r, "example"), "slot")->valuedouble);
        cJSON_Delete(r);
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_DELETE, req, &r) == EPERM);
        CHECK(strstr(str(r, "error"), "cannot be deleted"));
        cJSON_Delete(r);
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_LIST, "{}", &r) == 0);
        CHECK(token_labelled(r, "example"));
        cJSON_Delete(r);
        /* ... the soft driver removes the token, its file and SQLite's side
         * files (left by a crash: made here). */
        touch(path, "-journal");
        touch(path, "-wal");
        touch(path, "-shm");
        snprintf(req, sizeof req, "{\"slot\":%.0f}", soft_slot);
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_DELETE, req, &r) == 0);
        CHECK(strcmp(str(r, "path"), path) == 0);
        cJSON_Delete(r);
        CHECK(!exists(path, "") && !exists(path, "-wal") && !exists(path, "-shm") && !exists(path, "-journal"));
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_DELETE, req, &r) == ENOENT);
        cJSON_Delete(r);

        /* Settings: "<driver>.<key>" in the state database. */
        CHECK(probe_host->setting_get(probe_host, "k", &v) == -ENOENT);
        CHECK(probe_host->setting_set(probe_host, "k", "v1") == 0);
        CHECK(probe_host->setting_get(probe_host, "k", &v) == 0 && strcmp(v, "v1") == 0);
        free(v);
        CHECK(state_get(d.state, "probe.k", &v) == 0 && strcmp(v, "v1") == 0);
        free(v);
        CHECK(state_get(d.state, "k", &v) == -ENOENT);

        /* token_changed: an event for the probe's slot. */
        ev_changed = 0;
        probe_host->token_changed(probe_host, probe_token);
        CHECK(ev_changed == 1 && ev_slot == probe_slot);
        /* An unknown token: nothing. */
        struct token stranger;
        probe_host->token_changed(probe_host, &stranger);
        CHECK(ev_changed == 1);

        /* token_removed: the slot empties, once. */
        ev_removed = 0;
        probe_host->token_removed(probe_host, probe_token);
        CHECK(ev_removed == 1 && ev_slot == probe_slot);
        probe_host->token_removed(probe_host, probe_token);
        CHECK(ev_removed == 1);
        CHECK(call(&d, WIRE_OP_MGMT_TOKEN_LIST, "{}", &r) == 0);
        CHECK(!token_labelled(r, "probe"));
        cJSON_Delete(r);

        /* Stop, once per started driver that has stop. */
        registry_stop(d.registry);
        CHECK(probe_stopped == 1);
        core_free(d.core);
        registry_free(d.registry);
        CHECK(probe_stopped == 1); /* registry_free does not stop twice */
        state_close(d.state);

        /* NETCA_EXAMPLE=0 turns the example driver off. */
        CHECK(core_new(&d.core) == 0);
        CHECK(registry_new(d.core, NULL, tmpdir, &d.registry) == 0);
        setenv("NETCA_EXAMPLE", "0", 1);
        static const struct driver *const table2[] = { &example_driver, NULL };
        CHECK(registry_start(d.registry, table2) == 0);
        core_free(d.core);
        registry_free(d.registry);

        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        CHECK(system(cmd) == 0);
        printf("ok\n");
        return 0;
}
