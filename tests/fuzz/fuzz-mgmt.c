/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the management JSON (daemon/mgmt.c).
 *
 * The first byte picks the op (one of the MGMT_* ops, or an unknown one);
 * the rest is the request text.  Every input goes through the pure parser
 * mgmt_parse_request(), and through mgmt_handle() on a daemon context with a
 * fresh, empty core and a data directory that does not exist, for every op
 * except create-soft (which would run PBKDF2 and write files): no daemon,
 * no socket, no disk writes.  Replies must always be JSON objects, with
 * "error" exactly when the status is non-zero. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/p11.h"
#include "common/wire.h"
#include "daemon/core.h"
#include "daemon/mgmt.h"
#include "daemon/registry.h"
#include "drivers/soft/soft.h"
#include "daemon/netcad.h"

static const uint16_t ops[] = {
        WIRE_OP_MGMT_STATUS,       WIRE_OP_MGMT_TOKEN_LIST, WIRE_OP_MGMT_TOKEN_CREATE_SOFT,
        WIRE_OP_MGMT_PIN_STATUS,   WIRE_OP_MGMT_TOKEN_DELETE, WIRE_OP_GET_SLOT_LIST,
        WIRE_OP_MGMT_PIN_CACHE_SET, WIRE_OP_MGMT_PIN_CACHE_STATUS, WIRE_OP_MGMT_PIN_CACHE_CLEAR,
        WIRE_OP_MGMT_LOG_SHOW,     WIRE_OP_MGMT_LOG_CLEAR,  WIRE_OP_MGMT_LOG_SET,
        WIRE_OP_MGMT_PINENTRY_SET,
        999,
};

static struct netcad *get_daemon(void) {
        static struct netcad d;
        static bool ready;

        if (!ready) {
                if (core_new(&d.core) < 0)
                        abort();
                d.data_dir = (char *)"/nonexistent/netca-fuzz";
                d.socket_path = (char *)"/nonexistent/netca-fuzz.sock";
                d.started = 1;
                d.pid = 1;
                /* The soft driver, whose data directory does not exist:
                 * create requests reach it and fail there. */
                static const struct driver *const drivers[] = { &soft_driver, NULL };
                if (registry_new(d.core, NULL, d.data_dir, &d.registry) < 0)
                        abort();
                (void)registry_start(d.registry, drivers);
                ready = true;
        }
        return &d;
}

static void check_reply(int status, const char *reply) {
        cJSON *o, *e;

        assert(status >= 0);
        assert(reply);
        o = cJSON_Parse(reply);
        assert(o && cJSON_IsObject(o));
        e = cJSON_GetObjectItemCaseSensitive(o, "error");
        assert((status != 0) == (e != NULL));
        if (e)
                assert(cJSON_IsString(e) && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "errno")));
        cJSON_Delete(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mgmt_request req;
        const char *err = NULL;
        uint16_t op;
        char *json, *reply = NULL;
        int r;

        if (size < 1)
                return 0;
        op = ops[data[0] % (sizeof ops / sizeof ops[0])];
        json = malloc(size);
        if (!json)
                return 0;
        memcpy(json, data + 1, size - 1);
        json[size - 1] = '\0';

        memset(&req, 0, sizeof req);
        r = mgmt_parse_request(op, json, &req, &err);
        if (r == 0) {
                assert(op == req.op);
                if (op == WIRE_OP_MGMT_TOKEN_CREATE_SOFT)
                        assert(req.pin && req.so_pin && req.pin_len >= 4 && req.label[0]);
                mgmt_request_done(&req);
        } else {
                assert(r < 0 && err);
        }

        if (op != WIRE_OP_MGMT_TOKEN_CREATE_SOFT) {
                r = mgmt_handle(get_daemon(), NULL, op, json, &reply);
                check_reply(r, reply);
                free(reply);
        }
        free(json);
        return 0;
}
