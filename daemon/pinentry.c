/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pinentry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secmem.h"
#include "common/util.h"

/* Assuan lines are at most 1000 bytes. */
#define LINE_MAX_BYTES 1002
/* Beyond the user's time, how long the program may take to start and end. */
#define GRACE_MS 3000
/* GPG_ERR_CANCELED and GPG_ERR_TIMEOUT in the low 16 bits of Assuan codes. */
#define GPG_ERR_CANCELED 99
#define GPG_ERR_TIMEOUT 62

int assuan_parse_line(const char *line, size_t n, char *kind, char *out, size_t cap, size_t *len,
                      unsigned long *err) {
        *kind = 0;
        if (n >= 2 && memcmp(line, "OK", 2) == 0 && (n == 2 || line[2] == ' ')) {
                *kind = 'O';
                return 0;
        }
        if (n >= 3 && memcmp(line, "ERR", 3) == 0 && (n == 3 || line[3] == ' ')) {
                *kind = 'E';
                unsigned long code = 0;
                for (size_t i = 4; i < n && line[i] >= '0' && line[i] <= '9'; i++) {
                        code = code * 10 + (unsigned long)(line[i] - '0');
                        if (code > 0xffffffffUL)
                                return -EPROTO;
                }
                *err = code;
                return 0;
        }
        if (n >= 1 && line[0] == '#') {
                *kind = '#';
                return 0;
        }
        if (n >= 1 && line[0] == 'S' && (n == 1 || line[1] == ' ')) {
                *kind = 'S';
                return 0;
        }
        if (n >= 7 && memcmp(line, "INQUIRE", 7) == 0) {
                *kind = 'I';
                return 0;
        }
        if (n >= 2 && line[0] == 'D' && line[1] == ' ') {
                *kind = 'D';
                for (size_t i = 2; i < n; i++) {
                        char c = line[i];
                        if (c == '%') {
                                if (i + 2 >= n)
                                        return -EPROTO;
                                int h = hex_digit_value(line[i + 1]), l = hex_digit_value(line[i + 2]);
                                if (h < 0 || l < 0)
                                        return -EPROTO;
                                c = (char)(h * 16 + l);
                                i += 2;
                        }
                        if (*len >= cap)
                                return -ENOBUFS;
                        out[(*len)++] = c;
                }
                return 0;
        }
        return 0;
}

/* Text for an Assuan command argument: %, CR, LF escaped. */
static void escape(const char *in, char *out, size_t cap) {
        size_t o = 0;
        for (; in && *in && o + 4 < cap; in++) {
                unsigned char c = (unsigned char)*in;
                if (c == '%' || c == '\r' || c == '\n' || c < 0x20) {
                        snprintf(out + o, cap - o, "%%%02X", c);
                        o += 3;
                } else
                        out[o++] = (char)c;
        }
        out[o] = '\0';
}

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct conv {
        int in, out;            /* to the program's stdin, from its stdout */
        char buf[LINE_MAX_BYTES * 2];
        size_t have;
        int64_t deadline;
};

/* Reads one line (without the LF) into line; 0, -ETIMEDOUT, -EIO (EOF or
 * a line too long). */
static int read_line(struct conv *c, char *line, size_t cap, size_t *n) {
        for (;;) {
                char *lf = memchr(c->buf, '\n', c->have);
                if (lf) {
                        size_t len = (size_t)(lf - c->buf);
                        if (len >= cap)
                                return -EIO;
                        memcpy(line, c->buf, len);
                        *n = len;
                        memmove(c->buf, lf + 1, c->have - len - 1);
                        c->have -= len + 1;
                        explicit_bzero(c->buf + c->have, len + 1);
                        return 0;
                }
                if (c->have >= sizeof c->buf)
                        return -EIO;
                int64_t left = c->deadline - mono_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = c->out, .events = POLLIN };
                int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -EIO;
                if (r == 0)
                        continue;
                ssize_t got = read(c->out, c->buf + c->have, sizeof c->buf - c->have);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        return -EIO;
                c->have += (size_t)got;
        }
}

/* Sends a command and waits for its OK: 0, -ECANCELED, -ETIMEDOUT,
 * -EPROTO, -EIO.  With pin: collects the D lines of GETPIN. */
static int command(struct conv *c, const char *cmd, char *pin, size_t cap, size_t *pin_len) {
        size_t n = strlen(cmd);
        if (write(c->in, cmd, n) != (ssize_t)n || write(c->in, "\n", 1) != 1)
                return -EIO;
        char *line = secure_alloc(LINE_MAX_BYTES);
        if (!line)
                return -ENOMEM;
        int r;
        for (;;) {
                size_t len;
                if ((r = read_line(c, line, LINE_MAX_BYTES, &len)) < 0)
                        break;
                char kind;
                unsigned long err = 0;
                size_t dummy = 0;
                r = assuan_parse_line(line, len, &kind, pin ? pin : line, pin ? cap : 0, pin ? pin_len : &dummy,
                                      &err);
                if (r < 0)
                        break;
                if (kind == 'O') {
                        r = 0;
                        break;
                }
                if (kind == 'E') {
                        unsigned code = (unsigned)(err & 0xffff);
                        r = code == GPG_ERR_CANCELED ? -ECANCELED : code == GPG_ERR_TIMEOUT ? -ETIMEDOUT : -EPROTO;
                        /* An OPTION the program does not know is not fatal. */
                        if (r == -EPROTO && strncmp(cmd, "OPTION", 6) == 0)
                                r = 0;
                        break;
                }
                if (kind == 'I') {
                        r = -EPROTO; /* we never answer inquiries */
                        break;
                }
                /* S, #, D (without a PIN to fill: ignored) and unknown lines. */
        }
        secure_free(line);
        return r;
}

int pinentry_ask(const struct pinentry_request *req, char *pin, size_t cap, size_t *ret_len) {
        if (!req->program || !*req->program)
                return -ENOENT;
        if (access(req->program, X_OK) < 0)
                return -ENOENT;
        int to_child[2], from_child[2];
        if (pipe2(to_child, O_CLOEXEC) < 0)
                return -EIO;
        if (pipe2(from_child, O_CLOEXEC) < 0) {
                close(to_child[0]);
                close(to_child[1]);
                return -EIO;
        }
        pid_t pid = fork();
        if (pid < 0) {
                close(to_child[0]);
                close(to_child[1]);
                close(from_child[0]);
                close(from_child[1]);
                return -EIO;
        }
        if (pid == 0) {
                dup2(to_child[0], 0);
                dup2(from_child[1], 1);
                int devnull = open("/dev/null", O_WRONLY);
                if (devnull >= 0)
                        dup2(devnull, 2);
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (req->display)
                        setenv("DISPLAY", req->display, 1);
                execl(req->program, req->program, (char *)NULL);
                _exit(127);
        }
        close(to_child[0]);
        close(from_child[1]);
        struct conv *c = secure_alloc(sizeof *c);
        if (!c) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                close(to_child[1]);
                close(from_child[0]);
                return -ENOMEM;
        }
        c->in = to_child[1];
        c->out = from_child[0];
        c->deadline = mono_ms() + GRACE_MS + (int64_t)req->timeout_s * 1000;
        /* Writes to a program that died are errors, not SIGPIPE. */
        sigset_t pipe_set, old;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);

        char line[LINE_MAX_BYTES], arg[LINE_MAX_BYTES - 32];
        size_t n;
        int r = read_line(c, line, sizeof line, &n);
        char kind = 0;
        unsigned long err;
        size_t dummy = 0;
        if (r == 0 && (assuan_parse_line(line, n, &kind, line, 0, &dummy, &err) < 0 || kind != 'O'))
                r = -EPROTO;
        const struct {
                const char *fmt;
                const char *value;
        } setup[] = {
                { "OPTION ttyname=%s", req->ttyname }, { "OPTION ttytype=%s", req->ttytype },
                { "OPTION display=%s", req->display }, { "SETTITLE %s", req->title },
                { "SETDESC %s", req->description },    { "SETPROMPT %s", req->prompt },
        };
        for (size_t i = 0; r == 0 && i < sizeof setup / sizeof setup[0]; i++) {
                if (!setup[i].value || !*setup[i].value)
                        continue;
                escape(setup[i].value, arg, sizeof arg);
                snprintf(line, sizeof line, setup[i].fmt, arg);
                r = command(c, line, NULL, 0, NULL);
        }
        if (r == 0 && req->timeout_s) {
                snprintf(line, sizeof line, "SETTIMEOUT %u", req->timeout_s);
                r = command(c, line, NULL, 0, NULL);
        }
        size_t len = 0;
        if (r == 0)
                r = command(c, "GETPIN", pin, cap, &len);
        if (r == 0 && len == 0)
                r = -ECANCELED; /* an empty answer is no PIN */
        if (write(c->in, "BYE\n", 4) < 0) {
                /* gone already */
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(c->in);
        close(c->out);
        secure_free(c);
        /* It ends after BYE; one that does not is ended. */
        int st;
        int64_t until = mono_ms() + 1000;
        while (waitpid(pid, &st, WNOHANG) == 0) {
                if (mono_ms() > until) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &st, 0);
                        break;
                }
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        if (r < 0) {
                secure_wipe(pin, cap);
                if (r == -EIO && len == 0)
                        log_debug(LOG_SUB_CORE, "pinentry %s: no usable answer", req->program);
                return r;
        }
        *ret_len = len;
        return 0;
}
