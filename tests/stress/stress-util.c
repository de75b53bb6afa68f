/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "stress-util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/buffer.h"
#include "common/wire-client.h"

unsigned stress_scaled(unsigned n, unsigned lo) {
        const char *e = getenv("NETCA_STRESS_SCALE");
        double s = 1.0;
        if (e && *e) {
                char *end;
                s = strtod(e, &end);
                if (*end || s != s)
                        s = 1.0;
        }
        if (s < 0.01)
                s = 0.01;
        if (s > 10)
                s = 10;
        double v = (double)n * s + 0.5;
        unsigned r = (unsigned)v;
        return r < lo ? lo : r;
}

uint64_t stress_seed(void) {
        const char *e = getenv("NETCA_STRESS_SEED");
        uint64_t s;
        if (e && *e)
                s = strtoull(e, NULL, 0);
        else {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                s = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
        }
        if (s == 0)
                s = 1;
        fprintf(stderr, "seed: NETCA_STRESS_SEED=%llu\n", (unsigned long long)s);
        return s;
}

uint64_t stress_rand(uint64_t *state) {
        /* xorshift64* */
        uint64_t x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        return x * 0x2545F4914F6CDD1DULL;
}

void stress_sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

uint64_t stress_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

long proc_fd_count(pid_t pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
        DIR *d = opendir(path);
        if (!d)
                return -1;
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

long proc_rss_kb(pid_t pid) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        long kb = -1;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, "VmRSS:", 6) == 0) {
                        kb = strtol(line + 6, NULL, 10);
                        break;
                }
        fclose(f);
        return kb;
}

int raw_connect(const char *path) {
        int fd = -1;
        int r = wire_connect(path, &fd);
        return r < 0 ? r : fd;
}

int raw_send_all(int fd, const void *p, size_t n) {
        const uint8_t *q = p;
        while (n > 0) {
                struct pollfd pf = { .fd = fd, .events = POLLOUT };
                if (poll(&pf, 1, 20000) <= 0)
                        return -ETIMEDOUT;
                ssize_t k = send(fd, q, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                q += k;
                n -= (size_t)k;
        }
        return 0;
}

int raw_send_msg(int fd, struct wire_msg *m) {
        if (wire_msg_finish(m) < 0)
                return -EBADMSG;
        return raw_send_all(fd, m->buf.data, m->buf.len);
}

int raw_read_frame(int fd, unsigned timeout_ms, uint8_t **ret, size_t *ret_len) {
        return wire_read_frame(fd, (int)timeout_ms, ret, ret_len);
}

int raw_wait_closed(int fd, unsigned timeout_ms) {
        uint64_t deadline = stress_now_ms() + timeout_ms;
        uint8_t buf[4096];
        for (;;) {
                uint64_t now = stress_now_ms();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                int k = poll(&pf, 1, (int)(deadline - now));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -ETIMEDOUT;
                ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                        return 0;
        }
}

int raw_unread(int fd, int *ret) {
        int n = 0;
        if (ioctl(fd, SIOCOUTQ, &n) < 0)
                return -errno;
        *ret = n;
        return 0;
}

int raw_hello(int fd) {
        return wire_hello(fd, 0, "stress", 20000, NULL);
}

int raw_ping(int fd, uint32_t id) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_PING, id, 0);
        int r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        if (r < 0)
                return r;
        uint8_t *frame;
        size_t len;
        r = raw_read_frame(fd, 20000, &frame, &len);
        if (r < 0)
                return r;
        uint64_t rv = 1;
        bool ok = wire_msg_init_read(&m, frame, len) == 0 && m.id == id && m.opnum == WIRE_OP_PING &&
                  !(m.flags & WIRE_F_ERROR) && wire_get_u64(&m, &rv) && rv == CKR_OK;
        wire_msg_done(&m);
        free(frame);
        return ok ? 0 : -EPROTO;
}

int raw_call(int fd, struct wire_msg *m, uint8_t **ret, size_t *ret_len) {
        int r = raw_send_msg(fd, m);
        wire_msg_done(m);
        return r < 0 ? r : raw_read_frame(fd, 20000, ret, ret_len);
}

cJSON *raw_mgmt_json(const char *sock, uint16_t op) {
        int fd = raw_connect(sock);
        if (fd < 0)
                return NULL;
        if (raw_hello(fd) < 0) {
                close(fd);
                return NULL;
        }
        struct wire_msg m;
        wire_msg_init_write(&m, op, 2, 0);
        wire_put_json(&m, "{}");
        uint8_t *frame = NULL;
        size_t len;
        int r = raw_call(fd, &m, &frame, &len);
        close(fd);
        if (r < 0)
                return NULL;
        uint64_t status = 1;
        char *json = NULL;
        cJSON *o = NULL;
        if (wire_msg_init_read(&m, frame, len) == 0 && wire_get_u64(&m, &status) && status == 0 &&
            wire_get_json(&m, &json) && json)
                o = cJSON_Parse(json);
        wire_msg_done(&m);
        free(json);
        free(frame);
        return o;
}

double raw_status_number(const char *sock, const char *key) {
        cJSON *o = raw_mgmt_json(sock, WIRE_OP_MGMT_STATUS);
        cJSON *c = cJSON_GetObjectItem(o, key);
        double v = cJSON_IsNumber(c) ? c->valuedouble : -1;
        cJSON_Delete(o);
        return v;
}

int raw_status_clients(const char *sock) {
        double v = raw_status_number(sock, "clients");
        return v < 0 ? -EPROTO : (int)v;
}

int pipe_read_line(int fd, unsigned timeout_ms, char *buf, size_t size) {
        uint64_t deadline = stress_now_ms() + timeout_ms;
        size_t n = 0;
        /* Byte by byte: the rest of the pipe stays for the next call.
         * Lines are written whole (one write under PIPE_BUF), so once a
         * line has begun its end is there too: the deadline only applies
         * to its first byte, and no line is ever cut in two. */
        while (n + 1 < size) {
                if (n == 1)
                        deadline = stress_now_ms() + 10000;
                uint64_t now = stress_now_ms();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                int k = poll(&pf, 1, (int)(deadline - now));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -ETIMEDOUT;
                char c;
                ssize_t r = read(fd, &c, 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -EPIPE;
                if (c == '\n') {
                        buf[n] = '\0';
                        return 0;
                }
                buf[n++] = c;
        }
        return -EMSGSIZE;
}

int pipe_write_line(int fd, const char *fmt, ...) {
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof buf - 1)
                return -EMSGSIZE;
        buf[n++] = '\n';
        /* Under PIPE_BUF: one atomic write. */
        ssize_t w;
        do
                w = write(fd, buf, (size_t)n);
        while (w < 0 && errno == EINTR);
        return w == n ? 0 : -EPIPE;
}

CK_RV stress_gen_p256(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE h, const char *label,
                      CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv) {
        static CK_BYTE p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL tru = CK_TRUE;
        CK_BYTE id = 0x42;
        CK_ATTRIBUTE pub[] = {
                { CKA_EC_PARAMS, p256_oid, sizeof p256_oid },
                { CKA_TOKEN, &tru, sizeof tru },
                { CKA_VERIFY, &tru, sizeof tru },
                { CKA_LABEL, (void *)label, strlen(label) },
                { CKA_ID, &id, 1 },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &tru, sizeof tru },
                { CKA_PRIVATE, &tru, sizeof tru },
                { CKA_SENSITIVE, &tru, sizeof tru },
                { CKA_SIGN, &tru, sizeof tru },
                { CKA_LABEL, (void *)label, strlen(label) },
                { CKA_ID, &id, 1 },
        };
        return f->C_GenerateKeyPair(h, &mech, pub, 5, priv, 6, ret_pub, ret_priv);
}

CK_RV stress_find_one(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label,
                      CK_OBJECT_HANDLE *ret) {
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_LABEL, (void *)label, strlen(label) },
        };
        CK_OBJECT_HANDLE v[2];
        CK_ULONG n = 0;
        CK_RV rv = f->C_FindObjectsInit(h, t, 2);
        if (rv != CKR_OK)
                return rv;
        rv = f->C_FindObjects(h, v, 2, &n);
        CK_RV rv2 = f->C_FindObjectsFinal(h);
        if (rv != CKR_OK)
                return rv;
        if (rv2 != CKR_OK)
                return rv2;
        if (n != 1)
                return CKR_GENERAL_ERROR;
        *ret = v[0];
        return CKR_OK;
}

bool raw_reply_read(int fd, uint16_t op, struct wire_msg *m, uint8_t **frame) {
        size_t len;
        *frame = NULL;
        if (raw_read_frame(fd, 20000, frame, &len) < 0)
                return false;
        if (wire_msg_init_read(m, *frame, len) < 0)
                return false;
        return m->opnum == op && (m->flags & WIRE_F_REPLY) && !(m->flags & WIRE_F_ERROR);
}

CK_RV raw_reply_rv(int fd, uint16_t op, uint64_t *ret_u) {
        struct wire_msg m;
        uint8_t *frame;
        uint64_t rv = CKR_GENERAL_ERROR, u = 0;
        if (!raw_reply_read(fd, op, &m, &frame) || !wire_get_u64(&m, &rv) || (ret_u && !wire_get_u64(&m, &u)))
                rv = CKR_GENERAL_ERROR;
        if (ret_u)
                *ret_u = u;
        wire_msg_done(&m);
        free(frame);
        return (CK_RV)rv;
}

CK_RV raw_open_session(int fd, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_OPEN_SESSION, 1, 0);
        wire_put_u64(&m, slot);
        wire_put_u64(&m, CKF_SERIAL_SESSION | CKF_RW_SESSION);
        int r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        if (r < 0)
                return CKR_GENERAL_ERROR;
        uint64_t h = 0;
        CK_RV rv = raw_reply_rv(fd, WIRE_OP_OPEN_SESSION, &h);
        *ret = (CK_SESSION_HANDLE)h;
        return rv;
}

CK_RV raw_create_costly_key(int fd, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *ret) {
        static CK_BYTE n[512];
        memset(n, 0xc5, sizeof n);
        const CK_BYTE e[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
        CK_KEY_TYPE kt = CKK_RSA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls }, { CKA_KEY_TYPE, &kt, sizeof kt }, { CKA_TOKEN, &no, sizeof no },
                { CKA_VERIFY, &yes, sizeof yes }, { CKA_MODULUS, n, sizeof n }, { CKA_PUBLIC_EXPONENT, (void *)e, sizeof e },
        };
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_CREATE_OBJECT, 3, 0);
        wire_put_u64(&m, h);
        wire_put_attrs(&m, t, sizeof t / sizeof t[0]);
        int r = raw_send_msg(fd, &m);
        wire_msg_done(&m);
        uint64_t o = 0;
        CK_RV rv = r < 0 ? CKR_GENERAL_ERROR : raw_reply_rv(fd, WIRE_OP_CREATE_OBJECT, &o);
        *ret = (CK_OBJECT_HANDLE)o;
        return rv;
}

void raw_put_verify(struct nbuf *all, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key) {
        static const CK_BYTE data[512], sig[512] = { [511] = 2 };
        CK_MECHANISM mech = { CKM_RSA_X_509, NULL, 0 };
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_VERIFY_INIT, 4, 0);
        wire_put_u64(&m, h);
        wire_put_mechanism(&m, &mech);
        wire_put_u64(&m, key);
        if (wire_msg_finish(&m) == 0)
                nbuf_put_raw(all, m.buf.data, m.buf.len);
        wire_msg_done(&m);
        wire_msg_init_write(&m, WIRE_OP_VERIFY, 5, 0);
        wire_put_u64(&m, h);
        wire_put_blob(&m, data, sizeof data);
        wire_put_blob(&m, sig, sizeof sig);
        if (wire_msg_finish(&m) == 0)
                nbuf_put_raw(all, m.buf.data, m.buf.len);
        wire_msg_done(&m);
}

int raw_big_frame(size_t n, struct wire_msg *m) {
        static uint8_t blob[WIRE_FRAME_MAX];
        wire_msg_init_write(m, WIRE_OP_DIGEST_UPDATE, 77, 0);
        wire_put_u64(m, 1);
        wire_put_blob(m, blob, n - 64);
        return wire_msg_finish(m);
}
