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
#include "common/wire.h"

#define MGMT_TIMEOUT_MS 30000  /* create-soft runs PBKDF2 twice: well under this */

char *cli_socket_path(void) {
        const char *e;
        char *p = NULL;

        if (arg.socket)
                return strdup(arg.socket);
        e = secure_getenv("NETCA_SOCKET");
        if (e && *e)
                return strdup(e);
        e = secure_getenv("XDG_RUNTIME_DIR");
        if (e && *e) {
                if (asprintf(&p, "%s/netca/netcad.sock", e) < 0)
                        return NULL;
                return p;
        }
        if (asprintf(&p, "/run/user/%u/netca/netcad.sock", (unsigned)getuid()) < 0)
                return NULL;
        return p;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
        while (n > 0) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int r = poll(&pfd, 1, MGMT_TIMEOUT_MS);
                ssize_t k;

                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                k = read(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Reads one frame; *ret malloc'd (whole frame), length checked before
 * allocating. */
static int read_frame(int fd, uint8_t **ret, size_t *ret_len) {
        uint8_t hdr[WIRE_HDR_SIZE];
        struct wire_hdr h;
        uint8_t *f;
        size_t total;
        int r;

        r = read_all(fd, hdr, sizeof hdr);
        if (r < 0)
                return r;
        r = wire_hdr_parse(hdr, &h);
        if (r < 0)
                return -EPROTO;
        total = (size_t)h.len + 4;
        f = malloc(total);
        if (!f)
                return -ENOMEM;
        memcpy(f, hdr, sizeof hdr);
        r = read_all(fd, f + sizeof hdr, total - sizeof hdr);
        if (r < 0) {
                free(f);
                return r;
        }
        *ret = f;
        *ret_len = total;
        return 0;
}

/* Sends m and waits for the reply with the same id. */
static int roundtrip(int fd, struct wire_msg *req, uint8_t **ret_frame, size_t *ret_len) {
        int r;

        r = wire_msg_finish(req);
        if (r < 0)
                return r;
        r = write_all(fd, req->buf.data, req->buf.len);
        if (r < 0)
                return r;
        for (;;) {
                uint8_t *f = NULL;
                size_t n = 0;
                struct wire_hdr h;

                r = read_frame(fd, &f, &n);
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
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        if (!path)
                return -ENOMEM;
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int hello(int fd) {
        struct wire_msg m, rep;
        uint8_t *f = NULL;
        size_t n = 0;
        uint64_t rv = 1, version = 0, caps = 0;
        char *name = NULL;
        int r;

        wire_msg_init_write(&m, WIRE_OP_HELLO, 1, 0);
        wire_put_u64(&m, WIRE_VERSION);
        wire_put_u64(&m, WIRE_CAP_MGMT);
        wire_put_string(&m, "netca-tool");
        r = roundtrip(fd, &m, &f, &n);
        wire_msg_done(&m);
        if (r < 0)
                return r;
        r = wire_msg_init_read(&rep, f, n);
        if (r == 0 && (rep.flags & WIRE_F_ERROR)) {
                r = -EPROTO;
        } else if (r == 0) {
                if (!wire_get_u64(&rep, &rv) || !wire_get_u64(&rep, &version) || !wire_get_u64(&rep, &caps) ||
                    !wire_get_string(&rep, &name) || wire_msg_read_done(&rep) < 0)
                        r = -EPROTO;
        } else {
                r = -EPROTO;
        }
        wire_msg_done(&rep);
        free(f);
        if (r == 0 && rv != 0)
                r = -EPROTONOSUPPORT;
        if (r == 0 && (version >> 16) != WIRE_VERSION_MAJOR)
                r = -EPROTONOSUPPORT;
        if (r == 0 && !(caps & WIRE_CAP_MGMT))
                r = -EOPNOTSUPP;
        log_debug(LOG_SUB_CLI, "hello: daemon %s, wire %llu.%llu, caps 0x%llx", name ? name : "?",
                  (unsigned long long)(version >> 16), (unsigned long long)(version & 0xffff),
                  (unsigned long long)caps);
        free(name);
        return r;
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

void print_json(const cJSON *o) {
        char *s = cJSON_Print(o);
        if (s) {
                puts(s);
                free(s);
        }
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
