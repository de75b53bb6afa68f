/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading PINs and passwords: from an option, a file (first line), or the
 * terminal without echo.  Everything lands in secure memory. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "common/secmem.h"

#define PIN_BUF 256

static int read_line_fd(int fd, char *buf, size_t size, size_t *ret_len) {
        size_t n = 0;

        for (;;) {
                char c;
                ssize_t k = read(fd, &c, 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0 || c == '\n')
                        break;
                if (n + 1 >= size)
                        return -EMSGSIZE;
                buf[n++] = c;
        }
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = '\0';
        *ret_len = n;
        return 0;
}

static int read_file_line(const char *file, char **ret) {
        _cleanup_close_ int fd = -1;
        char *buf;
        size_t n = 0;
        int r;

        fd = strcmp(file, "-") == 0 ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        buf = secure_alloc(PIN_BUF);
        if (!buf)
                return -ENOMEM;
        r = read_line_fd(fd, buf, PIN_BUF, &n);
        if (r < 0) {
                secure_free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

static int prompt_tty(const char *prompt, char **ret) {
        _cleanup_close_ int fd = -1;
        struct termios old, raw;
        char *buf;
        size_t n = 0;
        int r;

        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -ENOTTY;
        if (tcgetattr(fd, &old) < 0)
                return -ENOTTY;
        buf = secure_alloc(PIN_BUF);
        if (!buf)
                return -ENOMEM;
        raw = old;
        raw.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        raw.c_lflag |= ICANON;
        (void)!write(fd, prompt, strlen(prompt));
        (void)tcsetattr(fd, TCSAFLUSH, &raw);
        r = read_line_fd(fd, buf, PIN_BUF, &n);
        (void)tcsetattr(fd, TCSAFLUSH, &old);
        (void)!write(fd, "\n", 1);
        if (r < 0) {
                secure_free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

int pin_get(const char *value, const char *file, const char *prompt, bool confirm, char **ret) {
        char *a = NULL, *b = NULL;
        int r;

        if (value) {
                a = secure_strndup(value, strlen(value));
                if (!a)
                        return -ENOMEM;
                *ret = a;
                return 0;
        }
        if (file) {
                r = read_file_line(file, &a);
                if (r < 0)
                        return r;
                *ret = a;
                return 0;
        }
        r = prompt_tty(prompt, &a);
        if (r < 0)
                return r;
        if (confirm) {
                r = prompt_tty("Repeat: ", &b);
                if (r < 0) {
                        secure_free(a);
                        return r;
                }
                if (strcmp(a, b) != 0) {
                        secure_free(a);
                        secure_free(b);
                        return -EILSEQ;
                }
                secure_free(b);
        }
        *ret = a;
        return 0;
}

bool ask_yes_no(const char *question) {
        _cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        char buf[16];
        size_t n = 0;

        if (fd < 0)
                return false;
        (void)!write(fd, question, strlen(question));
        (void)!write(fd, " [y/N] ", 7);
        if (read_line_fd(fd, buf, sizeof buf, &n) < 0)
                return false;
        return buf[0] == 'y' || buf[0] == 'Y';
}
