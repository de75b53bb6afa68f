/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small, synchronous client for netcad's management ops: one connection
 * per call, HELLO first, then one request and its reply (events pushed by
 * the daemon in between are skipped). */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/text-json.h"
#include "common/text.h"
#include "common/wire.h"
#include "common/wire-client.h"

#define MGMT_TIMEOUT_MS 30000  /* create-soft runs PBKDF2 twice: well under this */

char *cli_socket_path(void) {
        return arg.socket ? strdup(arg.socket) : wire_socket_path();
}

/* Sends m and waits for the reply with the same id. */
static int roundtrip(int fd, struct wire_msg *req, uint8_t **ret_frame, size_t *ret_len) {
        int r;

        r = wire_msg_finish(req);
        if (r < 0)
                return r;
        r = wire_write_all(fd, req->buf.data, req->buf.len);
        if (r < 0)
                return r;
        for (;;) {
                uint8_t *f = NULL;
                size_t n = 0;
                struct wire_hdr h;

                r = wire_read_frame(fd, MGMT_TIMEOUT_MS, &f, &n);
                if (r < 0)
                        return r;
                (void)wire_hdr_parse(f, &h);
                if (!(h.flags & WIRE_F_REPLY) || h.id != req->id) {
                        free(f); /* an event, or noise: skip */
                        continue;
                }
                *ret_frame = f;
                *ret_len = n;
                return 0;
        }
}

static int connect_daemon(int *ret_fd) {
        _cleanup_free_ char *path = cli_socket_path();
        if (!path)
                return -ENOMEM;
        return wire_connect(path, ret_fd);
}

static int hello(int fd) {
        struct wire_hello_info info;
        int r = wire_hello(fd, WIRE_CAP_MGMT, "netca-tool", MGMT_TIMEOUT_MS, &info);
        if (r < 0)
                return r;
        log_debug(LOG_SUB_CLI, "hello: daemon %s, wire %llu.%llu, caps 0x%llx", info.name,
                  (unsigned long long)(info.version >> 16), (unsigned long long)(info.version & 0xffff),
                  (unsigned long long)info.caps);
        return info.caps & WIRE_CAP_MGMT ? 0 : -EOPNOTSUPP;
}

void cjson_delete_wiped(cJSON *o) {
        for (cJSON *it = o ? o->child : NULL; it; it = it->next)
                if (cJSON_IsString(it) && it->valuestring)
                        secure_wipe(it->valuestring, strlen(it->valuestring));
        cJSON_Delete(o);
}

int mgmt_call(uint16_t op, cJSON *request, int *ret_status, cJSON **ret_reply) {
        _cleanup_close_ int fd = -1;
        struct wire_msg m, rep;
        char *text = NULL, *json = NULL;
        uint8_t *f = NULL;
        size_t n = 0;
        uint64_t status = 0;
        cJSON *reply;
        int r;

        r = connect_daemon(&fd);
        if (r < 0)
                return r;
        r = hello(fd);
        if (r < 0)
                return r;

        text = request ? cJSON_PrintUnformatted(request) : strdup("{}");
        if (!text)
                return -ENOMEM;
        wire_msg_init_write(&m, op, 2, 0);
        m.buf.secure = true; /* may carry PINs */
        wire_put_json(&m, text);
        secure_wipe(text, strlen(text));
        free(text);
        r = roundtrip(fd, &m, &f, &n);
        wire_msg_done(&m);
        if (r < 0)
                return r;

        r = wire_msg_init_read(&rep, f, n);
        if (r == 0 && (rep.flags & WIRE_F_ERROR)) {
                r = -EOPNOTSUPP;
        } else if (r == 0) {
                if (!wire_get_u64(&rep, &status) || !wire_get_json(&rep, &json) || wire_msg_read_done(&rep) < 0)
                        r = -EPROTO;
        } else {
                r = -EPROTO;
        }
        wire_msg_done(&rep);
        free(f);
        if (r < 0) {
                free(json);
                return r;
        }
        reply = json ? cJSON_Parse(json) : cJSON_CreateObject();
        free(json);
        if (!reply || !cJSON_IsObject(reply)) {
                cJSON_Delete(reply);
                return -EPROTO;
        }
        *ret_status = status > 0x7fffffff ? EIO : (int)status;
        *ret_reply = reply;
        return 0;
}

int exit_from_errno(int err) {
        if (err < 0)
                err = -err;
        switch (err) {
        case 0:
                return CLI_EXIT_OK;
        case ENOENT:
        case ENODEV:
                return CLI_EXIT_NOT_FOUND;
        case EACCES:
        case EKEYREVOKED:
                return CLI_EXIT_PIN;
        case EINVAL:
        case EMSGSIZE:
                return CLI_EXIT_USAGE;
        default:
                return CLI_EXIT_OTHER;
        }
}

void print_json(cJSON *o) {
        /* Labels from a device or a file may be anything: valid JSON still. */
        char *s = text_json_sanitize(o) ? cJSON_Print(o) : NULL;
        if (s) {
                puts(s);
                free(s);
        }
}

const char *shown(const char *s) {
        /* A few at a time, for one printf: each is freed when its slot comes round again. */
        static char *ring[8];
        static unsigned next;
        char **slot = &ring[next++ % ELEMENTSOF(ring)];
        free(*slot);
        *slot = text_escape(s ? s : "", (size_t)-1, TEXT_ESCAPE_TERMINAL);
        return *slot ? *slot : "?";
}

const char *jstr(const cJSON *o, const char *name) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsString(it) && it->valuestring ? it->valuestring : "";
}

double jnum(const cJSON *o, const char *name, double dflt) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

bool jbool(const cJSON *o, const char *name) {
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

int mgmt_call_checked(uint16_t op, cJSON *request, cJSON **ret_reply) {
        cJSON *reply = NULL;
        int status = 0, r;

        r = mgmt_call(op, request, &status, &reply);
        if (r < 0) {
                _cleanup_free_ char *path = cli_socket_path();
                if (r == -EPROTONOSUPPORT || r == -EPROTO)
                        cli_error("netcad at %s speaks another protocol version: %s", path ? path : "?",
                                  strerror(-r));
                else if (r == -EOPNOTSUPP)
                        cli_error("netcad at %s does not support this operation", path ? path : "?");
                else
                        cli_error("cannot reach netcad at %s: %s (is the daemon running?)", path ? path : "?",
                                  strerror(-r));
                return CLI_EXIT_DAEMON;
        }
        if (status != 0) {
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
                cli_error("%s", cJSON_IsString(e) ? e->valuestring : strerror(status));
                cJSON_Delete(reply);
                return exit_from_errno(status);
        }
        *ret_reply = reply;
        return CLI_EXIT_OK;
}

int mgmt_request(uint16_t op, cJSON *request, cJSON **ret_reply) {
        int r = mgmt_call_checked(op, request, ret_reply);
        cJSON_Delete(request);
        if (r == CLI_EXIT_OK && arg.json)
                print_json(*ret_reply);
        return r;
}

int mgmt_request_print(uint16_t op, cJSON *request, void (*print_text)(const cJSON *reply)) {
        cJSON *reply = NULL;
        int r = mgmt_request(op, request, &reply);
        if (r != CLI_EXIT_OK)
                return r;
        if (!arg.json)
                print_text(reply);
        cJSON_Delete(reply);
        return CLI_EXIT_OK;
}
