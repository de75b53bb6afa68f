/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vpiv-card: runs the virtual PIV card over a transport.
 *
 *   vpiv-card --dir DIR [--delay-ms N] (--vpcd HOST:PORT | --stdio)
 *
 * Both transports carry vpcd messages: a 2-byte big-endian length and a
 * payload; 1-byte payloads are control messages (00 power off, 01 power on,
 * 02 reset, 04 get ATR, answered with the ATR), longer ones APDUs answered
 * with the response APDU (see vpiv_vpcd_message).
 *   --vpcd: connects to vsmartcard's vpcd (the card side; vpcd listens on
 *           localhost:35963 by default) and reconnects when it goes away.
 *   --stdio: stdin/stdout (the umockdev CCID harness); exits at EOF.
 * SIGTERM/SIGINT and stdin EOF save the card's state (vpiv_save) and exit 0. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vpiv.h"

#define MSG_MAX (65536 + 16)

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

/* Reads exactly n bytes; 1 done, 0 EOF before the first byte, -errno
 * (-EINTR when a stop signal arrived, -EPIPE on EOF mid-message). */
static int read_full(int fd, uint8_t *p, size_t n) {
        size_t got = 0;
        while (got < n) {
                if (stop)
                        return -EINTR;
                ssize_t r = read(fd, p + got, n - got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return got ? -EPIPE : 0;
                got += (size_t)r;
        }
        return 1;
}

static int write_full(int fd, const uint8_t *p, size_t n) {
        while (n) {
                ssize_t r = write(fd, p, n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -EIO;
                p += r;
                n -= (size_t)r;
        }
        return 0;
}

static void quickack(int fd, bool sock) {
        if (!sock)
                return;
        int one = 1;
        /* Linux clears TCP_QUICKACK after use: set it again around every read. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

/* Serves messages until EOF (0), a stop signal (0) or an error (-errno). */
static int serve(struct vpiv *card, int in, int out, bool sock, uint8_t *msg, uint8_t *resp) {
        for (;;) {
                uint8_t hdr[2];
                quickack(in, sock);
                int r = read_full(in, hdr, 2);
                if (r <= 0)
                        return r == -EINTR ? 0 : r;
                size_t len = ((size_t)hdr[0] << 8) | hdr[1];
                quickack(in, sock);
                r = read_full(in, msg, len);
                if (r == 0 && len)
                        r = -EPIPE;
                if (r < 0)
                        return r == -EINTR ? 0 : r;
                size_t rlen = 0;
                r = vpiv_vpcd_message(card, msg, len, resp + 2, MSG_MAX - 2, &rlen);
                if (r == -EBADMSG) {
                        fprintf(stderr, "vpiv-card: ignoring unknown control message\n");
                        continue;
                }
                if (r < 0) {
                        fprintf(stderr, "vpiv-card: card error: %s\n", strerror(-r));
                        return r;
                }
                if (len == 1 && msg[0] != 0x04)
                        continue;       /* power on/off/reset: no answer */
                resp[0] = (uint8_t)(rlen >> 8);
                resp[1] = (uint8_t)rlen;
                /* One write for length and payload: no Nagle/delayed-ACK stall. */
                r = write_full(out, resp, rlen + 2);
                if (r < 0)
                        return r;
        }
}

static int connect_to(const char *host, const char *port) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai, *p;
        int r = getaddrinfo(host, port, &hints, &ai);
        if (r != 0)
                return -EHOSTUNREACH;
        int fd = -ECONNREFUSED;
        for (p = ai; p; p = p->ai_next) {
                fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
                if (fd < 0) {
                        fd = -errno;
                        continue;
                }
                if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
                        break;
                int e = -errno;
                close(fd);
                fd = e;
        }
        freeaddrinfo(ai);
        if (fd >= 0) {
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        }
        return fd;
}

static void usage(FILE *f) {
        fprintf(f, "usage: vpiv-card --dir DIR [--delay-ms N] (--vpcd HOST:PORT | --stdio)\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "dir", required_argument, NULL, 'd' },   { "delay-ms", required_argument, NULL, 'D' },
                { "vpcd", required_argument, NULL, 'v' },  { "stdio", no_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },        { 0 },
        };
        const char *dir = NULL, *vpcd = NULL;
        bool use_stdio = false;
        long delay = -1;
        int o;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (o) {
                case 'd': dir = optarg; break;
                case 'v': vpcd = optarg; break;
                case 's': use_stdio = true; break;
                case 'D': {
                        char *end;
                        errno = 0;
                        delay = strtol(optarg, &end, 10);
                        if (errno || *end || end == optarg || delay < 0 || delay > 10000) {
                                fprintf(stderr, "vpiv-card: --delay-ms must be 0-10000\n");
                                return 2;
                        }
                        break;
                }
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!dir || (!vpcd == !use_stdio) || optind != argc) {
                usage(stderr);
                return 2;
        }
        char host[256] = "localhost", port[16] = "35963";
        if (vpcd) {
                const char *colon = strrchr(vpcd, ':');
                if (!colon || colon == vpcd || (size_t)(colon - vpcd) >= sizeof host || strlen(colon + 1) >= sizeof port ||
                    !colon[1]) {
                        fprintf(stderr, "vpiv-card: --vpcd wants HOST:PORT\n");
                        return 2;
                }
                memcpy(host, vpcd, (size_t)(colon - vpcd));
                host[colon - vpcd] = '\0';
                strcpy(port, colon + 1);
        }

        struct vpiv *card;
        char *err = NULL;
        int r = vpiv_new(dir, &card, &err);
        if (r < 0) {
                fprintf(stderr, "vpiv-card: %s\n", err ? err : strerror(-r));
                free(err);
                return 1;
        }
        if (delay >= 0)
                vpiv_set_delay_ms(card, (unsigned)delay);

        struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: a blocked read returns */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        uint8_t *msg = malloc(MSG_MAX), *resp = malloc(MSG_MAX);
        if (!msg || !resp) {
                fprintf(stderr, "vpiv-card: out of memory\n");
                return 1;
        }
        int rc = 0;
        if (use_stdio) {
                r = serve(card, STDIN_FILENO, STDOUT_FILENO, false, msg, resp);
                if (r < 0) {
                        fprintf(stderr, "vpiv-card: stdio: %s\n", strerror(-r));
                        rc = 1;
                }
        } else {
                bool said = false;
                while (!stop) {
                        int fd = connect_to(host, port);
                        if (fd < 0) {
                                if (!said)
                                        fprintf(stderr, "vpiv-card: waiting for vpcd at %s:%s (%s)\n", host, port,
                                                strerror(-fd));
                                said = true;
                                struct timespec ts = { 0, 100 * 1000000L };
                                nanosleep(&ts, NULL);
                                continue;
                        }
                        fprintf(stderr, "vpiv-card: connected to vpcd at %s:%s\n", host, port);
                        said = false;
                        vpiv_reset(card);       /* a new reader connection is a new insertion */
                        r = serve(card, fd, fd, true, msg, resp);
                        close(fd);
                        if (r < 0)
                                fprintf(stderr, "vpiv-card: vpcd connection: %s; reconnecting\n", strerror(-r));
                        else if (!stop)
                                fprintf(stderr, "vpiv-card: vpcd closed the connection; reconnecting\n");
                }
        }
        r = vpiv_save(card);
        if (r < 0) {
                fprintf(stderr, "vpiv-card: saving %s: %s\n", dir, strerror(-r));
                rc = 1;
        }
        vpiv_free(card);
        free(msg);
        free(resp);
        return rc;
}
