/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "core.h"

bool peer_stat(pid_t pid, char *ret_state, unsigned long long *ret_start_time) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        size_t m = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[m] = '\0';
        /* "pid (comm) state ...": comm may hold anything, ')' included, so
         * the fields start after the last ')'; state is field 3, starttime
         * field 22. */
        const char *e = strrchr(buf, ')');
        char state = 0;
        unsigned long long st = 0;
        if (!e || sscanf(e + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                         &state, &st) != 2)
                return false;
        if (ret_state)
                *ret_state = state;
        if (ret_start_time)
                *ret_start_time = st;
        return true;
}

bool peer_alive(pid_t pid, unsigned long long start_time) {
        char state = 0;
        unsigned long long st = 0;
        return peer_stat(pid, &state, &st) && state != 'Z' && state != 'X' && st == start_time;
}

bool peer_from_socket(int fd, struct core_peer *p) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        memset(p, 0, sizeof *p);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return false;
        p->pid = cred.pid;
        p->uid = cred.uid;
        p->gid = cred.gid;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/exe", (int)cred.pid);
        ssize_t n = readlink(path, p->exe, sizeof p->exe - 1);
        p->exe[n > 0 ? n : 0] = '\0';
        unsigned long long st = 0;
        if (peer_stat(cred.pid, NULL, &st))
                p->start_time = st;
        return true;
}

void peer_session(pid_t pid, char *buf, size_t cap) {
        char *sess = NULL;
        buf[0] = '\0';
        if (pid <= 0)
                return;
        if (sd_pid_get_session(pid, &sess) >= 0 && sess) {
                snprintf(buf, cap, "%s", sess);
                free(sess);
                return;
        }
        (void)peer_env(pid, "XDG_SESSION_ID", buf, cap);
}

bool peer_env(pid_t pid, const char *name, char *buf, size_t cap) {
        char path[64];
        size_t nl = strlen(name);
        bool found = false;
        buf[0] = '\0';
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        char var[4096];
        size_t n = 0;
        int ch;
        /* NUL-separated NAME=value strings. */
        while ((ch = getc(f)) != EOF) {
                if (ch != '\0') {
                        if (n < sizeof var - 1)
                                var[n++] = (char)ch;
                        continue;
                }
                var[n] = '\0';
                if (strncmp(var, name, nl) == 0 && var[nl] == '=' && var[nl + 1] && strlen(var + nl + 1) < cap) {
                        memcpy(buf, var + nl + 1, strlen(var + nl + 1) + 1);
                        found = true;
                        break;
                }
                n = 0;
        }
        fclose(f);
        return found;
}

bool peer_tty(pid_t pid, char *buf, size_t cap) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/0", (int)pid);
        ssize_t n = readlink(path, buf, cap - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        return strncmp(buf, "/dev/pts/", 9) == 0 || strncmp(buf, "/dev/tty", 8) == 0;
}
