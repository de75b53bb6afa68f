/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The management ops (daemon/mgmt.c) in-process, on a real core and soft
 * tokens in a temporary data directory, and the state database
 * (daemon/state.c). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/wire.h"
#include "daemon/core.h"
#include "daemon/mgmt.h"
#include "daemon/registry.h"
#include "drivers/soft/soft.h"
#include "daemon/netcad.h"
#include "daemon/state.h"

#define CHECK(x)                                                                        \
        do {                                                                            \
                if (!(x)) {                                                             \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
                        exit(1);                                                        \
                }                                                                       \
        } while (0)

static char tmpdir[] = "/tmp/netca-test-mgmt.XXXXXX";

/* Runs an op; returns the status and the parsed reply in *ret. */
static int call(struct netcad *d, uint16_t op, const char *json, cJSON **ret) {
        char *out = NULL;
        int st = mgmt_handle(d, NULL, op, json, &out);
        CHECK(st >= 0);
        CHECK(out);
        *ret = cJSON_Parse(out);
        CHECK(*ret && cJSON_IsObject(*ret));
        /* "error" exactly on failure, and never a PIN in any reply. */
        CHECK((st != 0) == (cJSON_GetObjectItem(*ret, "error") != NULL));
        CHECK(!strstr(out, "123456") && !strstr(out, "87654321"));
        free(out);
        return st;
}

static double num(const cJSON *o, const char *name) {
        const cJSON *it = cJSON_GetObjectItem(o, name);
        CHECK(cJSON_IsNumber(it));
        return it->valuedouble;
}

static void test_state(void) {
        struct state_db *s = NULL;
        char *v = NULL;

        CHECK(state_open(tmpdir, &s) == 0);
        CHECK(state_get(s, "missing", &v) == -ENOENT);
        CHECK(state_set(s, "k", "one") == 0);
        CHECK(state_set(s, "k", "two") == 0);
        CHECK(state_get(s, "k", &v) == 0 && strcmp(v, "two") == 0);
        free(v);
        s = state_close(s);
        CHECK(!s);
        /* Persistent, and reopening migrates nothing twice. */
        CHECK(state_open(tmpdir, &s) == 0);
        CHECK(state_get(s, "k", &v) == 0 && strcmp(v, "two") == 0);
        free(v);
        state_close(s);
        CHECK(state_open("/proc/nonexistent-dir", &s) == -EIO);
}

static void test_errors(struct netcad *d) {
        cJSON *r;
        CHECK(call(d, WIRE_OP_MGMT_STATUS, "not json", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_STATUS, "[1]", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_PIN_STATUS, "{}", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_PIN_STATUS, "{\"slot\": -1}", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_PIN_STATUS, "{\"slot\": 1.5}", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_PIN_STATUS, "{\"slot\": 4242}", &r) == ENOENT);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_DELETE, "{\"slot\": 4242}", &r) == ENOENT);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT, "{\"pin\":\"123456\",\"so_pin\":\"87654321\"}", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT, "{\"label\":\"x\",\"pin\":\"12\",\"so_pin\":\"87654321\"}", &r) ==
              EMSGSIZE);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
                   "{\"label\":\"x\",\"pin\":\"123456\",\"so_pin\":\"87654321\",\"max_tries\":0}", &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
                   "{\"label\":\"012345678901234567890123456789012\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
                   &r) == EINVAL);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_GET_SLOT_LIST, "{}", &r) == EOPNOTSUPP);
        cJSON_Delete(r);
}

static void test_tokens(struct netcad *d) {
        cJSON *r, *tokens, *t, *user;
        char req[128], path[512];
        double slot;

        CHECK(call(d, WIRE_OP_MGMT_STATUS, "", &r) == 0);
        CHECK(num(r, "tokens") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(r, "version")->valuestring, NETCA_VERSION) == 0);
        CHECK(strcmp(cJSON_GetObjectItem(r, "data_dir")->valuestring, tmpdir) == 0);
        CHECK(num(r, "pid") == getpid());
        cJSON_Delete(r);

        CHECK(call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
                   "{\"label\":\"demo\",\"pin\":\"123456\",\"so_pin\":\"87654321\",\"max_tries\":4}", &r) == 0);
        slot = num(r, "slot");
        snprintf(path, sizeof path, "%s", cJSON_GetObjectItem(r, "path")->valuestring);
        CHECK(strncmp(path, tmpdir, strlen(tmpdir)) == 0);
        CHECK(access(path, F_OK) == 0);
        cJSON_Delete(r);

        CHECK(call(d, WIRE_OP_MGMT_TOKEN_LIST, "{}", &r) == 0);
        tokens = cJSON_GetObjectItem(r, "tokens");
        CHECK(cJSON_GetArraySize(tokens) == 1);
        t = cJSON_GetArrayItem(tokens, 0);
        CHECK(num(t, "slot") == slot);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t, "present")));
        CHECK(strcmp(cJSON_GetObjectItem(t, "label")->valuestring, "demo") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(t, "kind")->valuestring, "soft") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(t, "path")->valuestring, path) == 0);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t, "login_required")));
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t, "pin_initialized")));
        CHECK(num(t, "user_tries_max") == 4);
        cJSON_Delete(r);

        snprintf(req, sizeof req, "{\"slot\": %.0f}", slot);
        CHECK(call(d, WIRE_OP_MGMT_PIN_STATUS, req, &r) == 0);
        user = cJSON_GetObjectItem(r, "user");
        CHECK(num(user, "tries_left") == 4 && num(user, "tries_max") == 4);
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(user, "locked")));
        CHECK(cJSON_IsObject(cJSON_GetObjectItem(r, "so")));
        cJSON_Delete(r);

        CHECK(call(d, WIRE_OP_MGMT_STATUS, "{}", &r) == 0);
        CHECK(num(r, "tokens") == 1);
        cJSON_Delete(r);

        CHECK(call(d, WIRE_OP_MGMT_TOKEN_DELETE, req, &r) == 0);
        cJSON_Delete(r);
        CHECK(access(path, F_OK) < 0 && errno == ENOENT);
        CHECK(call(d, WIRE_OP_MGMT_PIN_STATUS, req, &r) != 0);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_DELETE, req, &r) == ENOENT);
        cJSON_Delete(r);
        CHECK(call(d, WIRE_OP_MGMT_STATUS, "{}", &r) == 0);
        CHECK(num(r, "tokens") == 0);
        cJSON_Delete(r);
}

/* Issue 23 item 9: a PIN holding \u0000 (cJSON would cut it) and labels
 * that are not clean UTF-8 are refused; a clean non-ASCII label is not. */
static void test_names(struct netcad *d) {
        static const char *const bad[] = {
                "{\"label\":\"n\",\"pin\":\"1234\\u0000abcd\",\"so_pin\":\"87654321\"}",
                "{\"label\":\"n\",\"pin\":\"123456\",\"so_pin\":\"8765\\u0000\"}",
                "{\"label\":\"a\\u001b]0;x\\u0007\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
                "{\"label\":\"\xff\xfe\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
                "{\"label\":\"\xc2\x9b" "31m\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
                "{\"label\":\"\xc0\xaf\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
        };
        cJSON *r;
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                int st = call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT, bad[i], &r);
                if (st != EINVAL)
                        fprintf(stderr, "request %zu: status %d, expected EINVAL\n", i, st);
                CHECK(st == EINVAL);
                cJSON_Delete(r);
        }
        CHECK(call(d, WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
                   "{\"label\":\"\xe7\xbd\x91\xe8\xaf\x81 \\\\ ok\",\"pin\":\"123456\",\"so_pin\":\"87654321\"}",
                   &r) == 0);
        cJSON_Delete(r);
}

int main(void) {
        struct netcad d = {};
        char cmd[128];

        CHECK(mkdtemp(tmpdir));
        test_state();

        CHECK(core_new(&d.core) == 0);
        d.data_dir = tmpdir;
        d.socket_path = (char *)"/nonexistent.sock";
        d.started = time(NULL);
        d.pid = getpid();
        static const struct driver *const drivers[] = { &soft_driver, NULL };
        CHECK(registry_new(d.core, NULL, d.data_dir, &d.registry) == 0);
        CHECK(registry_start(d.registry, drivers) == 1);
        test_errors(&d);
        test_tokens(&d);
        test_names(&d);
        registry_stop(d.registry);
        core_free(d.core);
        registry_free(d.registry);

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        CHECK(system(cmd) == 0);
        printf("ok\n");
        return 0;
}
