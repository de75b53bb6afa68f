/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool log show|export|clear|enable|disable: the usage records
 * (使用记录) the daemon keeps, and its diagnostic log. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* "2026-12-01", "2026-12-01 14:30", "2026-12-01T14:30:05" (local time), or
 * a time ago: "90m", "2h", "7d".  Milliseconds since 1970, or -EINVAL. */
static int parse_when(const char *s, int64_t *ret) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *formats[] = { "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
                                  "%Y-%m-%d" };
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
                memset(&tm, 0, sizeof tm);
                const char *end = strptime(s, formats[i], &tm);
                if (end && *end == '\0') {
                        tm.tm_isdst = -1;
                        time_t t = mktime(&tm);
                        if (t == (time_t)-1)
                                return -EINVAL;
                        *ret = (int64_t)t * 1000;
                        return 0;
                }
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || v > 100000)
                return -EINVAL;
        unsigned long long mult = strcmp(end, "s") == 0 ? 1 : strcmp(end, "m") == 0 ? 60
                                : strcmp(end, "h") == 0 ? 3600 : strcmp(end, "d") == 0 ? 86400 : 0;
        if (!mult)
                return -EINVAL;
        *ret = (int64_t)time(NULL) * 1000 - (int64_t)(v * mult) * 1000;
        return 0;
}

static cJSON *filter_request(int *ret_exit) {
        cJSON *req = cJSON_CreateObject();
        *ret_exit = CLI_EXIT_OK;
        if (!req) {
                *ret_exit = CLI_EXIT_OTHER;
                return NULL;
        }
        int64_t t;
        if (arg.since) {
                if (parse_when(arg.since, &t) < 0)
                        goto bad;
                cJSON_AddNumberToObject(req, "since", (double)t);
        }
        if (arg.until) {
                if (parse_when(arg.until, &t) < 0)
                        goto bad;
                cJSON_AddNumberToObject(req, "until", (double)t);
        }
        if (arg.token)
                cJSON_AddStringToObject(req, "token", arg.token);
        if (arg.failed)
                cJSON_AddBoolToObject(req, "failed", true);
        return req;
bad:
        cli_error("--since/--until take a date (2026-12-01, \"2026-12-01 14:30\") or a time ago (90m, 2h, 7d)");
        cJSON_Delete(req);
        *ret_exit = CLI_EXIT_USAGE;
        return NULL;
}

static void fmt_time(double ms, char *buf, size_t cap) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

/* One record as a line; colour: red for failures on a terminal. */
static void print_record(FILE *f, const cJSON *r, bool colour) {
        char when[32];
        fmt_time(jnum(r, "time", 0), when, sizeof when);
        bool failed = strcmp(jstr(r, "result"), "ok") != 0;
        const char *exe = strrchr(jstr(r, "exe"), '/');
        exe = exe ? exe + 1 : jstr(r, "exe");
        if (colour && failed)
                fputs("\033[31m", f);
        fprintf(f, "%s  %-13s %-6s token \"%s\"", when, jstr(r, "op"), failed ? "FAILED" : "ok", shown(jstr(r, "label")));
        if (*jstr(r, "object"))
                fprintf(f, "  object \"%s\"", shown(jstr(r, "object")));
        fprintf(f, "  by %s[%.0f]", *exe ? exe : "?", jnum(r, "pid", 0));
        if (*jstr(r, "reason"))
                fprintf(f, "  (%s)", jstr(r, "reason"));
        if (colour && failed)
                fputs("\033[0m", f);
        fputc('\n', f);
}

/* The usage records the filter options (--since, --until, --token,
 * --failed) select: an exit code, *ret_reply on CLI_EXIT_OK. */
static int fetch_records(cJSON **ret_reply) {
        int r;
        cJSON *req = filter_request(&r);
        if (!req)
                return r;
        r = mgmt_call_checked(WIRE_OP_MGMT_LOG_SHOW, req, ret_reply);
        cJSON_Delete(req);
        return r;
}

int cmd_log_show(void) {
        cJSON *reply = NULL;
        int r = fetch_records(&reply);
        if (r != CLI_EXIT_OK)
                return r;
        cJSON *records = cJSON_GetObjectItemCaseSensitive(reply, "records");
        const cJSON *rec;
        if (arg.json)
                print_json(records);
        else {
                bool colour = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
                cJSON_ArrayForEach(rec, records)
                        print_record(stdout, rec, colour);
                if (cJSON_GetArraySize(records) == 0)
                        printf("No usage records%s.\n", arg.since || arg.until || arg.token || arg.failed
                                                                ? " match" : "");
        }
        cJSON_Delete(reply);
        return CLI_EXIT_OK;
}

static void print_cleared(const cJSON *reply) {
        printf("%.0f usage record%s deleted.\n", jnum(reply, "cleared", 0), jnum(reply, "cleared", 0) == 1 ? "" : "s");
}

int cmd_log_clear(void) {
        if (!arg.yes && !ask_yes_no("Delete every usage record?")) {
                cli_error("not cleared (use --yes to skip the question)");
                return CLI_EXIT_USAGE;
        }
        return mgmt_request_print(WIRE_OP_MGMT_LOG_CLEAR, NULL, print_cleared);
}

static void print_settings(const cJSON *reply) {
        printf("Diagnostic log %s; the newest %.0f usage records are kept.\n",
               jbool(reply, "diagnostic") ? "on" : "off", jnum(reply, "max_records", 0));
}

int cmd_log_settings(int diagnostic) {
        cJSON *req = cJSON_CreateObject();
        if (!req || (diagnostic >= 0 && !cJSON_AddBoolToObject(req, "diagnostic", diagnostic == 1)) ||
            (arg.max_records > 0 && !cJSON_AddNumberToObject(req, "max_records", (double)arg.max_records))) {
                cJSON_Delete(req);
                return CLI_EXIT_OTHER;
        }
        if (!req->child) {
                cJSON_Delete(req);
                cli_error("log set needs --max-records N");
                return CLI_EXIT_USAGE;
        }
        return mgmt_request_print(WIRE_OP_MGMT_LOG_SET, req, print_settings);
}

static int write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        if (!f)
                return -errno;
        fputs(text, f);
        return fclose(f) == 0 ? 0 : -EIO;
}

static int copy_file(const char *from, const char *to) {
        int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, r = 0;
        if (in < 0)
                return -errno;
        out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0) {
                r = -errno;
                close(in);
                return r;
        }
        char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
                if (write(out, buf, (size_t)n) != n) {
                        r = -EIO;
                        break;
                }
        if (n < 0)
                r = -errno;
        close(in);
        if (close(out) < 0 && r == 0)
                r = -EIO;
        return r;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

/* tar -czf FILE -C dir . (tar and gzip are on every Debian system). */
static int run_tar(const char *file, const char *dir) {
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                execlp("tar", "tar", "-czf", file, "-C", dir, ".", (char *)NULL);
                _exit(127);
        }
        int st;
        if (waitpid(pid, &st, 0) < 0)
                return -errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

int cmd_log_export(const char *file) {
        cJSON *reply = NULL, *status = NULL;
        int r = fetch_records(&reply);
        if (r != CLI_EXIT_OK)
                return r;
        (void)mgmt_call_checked(WIRE_OP_MGMT_STATUS, NULL, &status);
        char tmpl[] = "/tmp/netca-log-export-XXXXXX";
        char *dir = mkdtemp(tmpl);
        char *p = NULL;
        int rc = CLI_EXIT_OTHER;
        if (!dir) {
                cli_error("cannot make a temporary directory: %s", strerror(errno));
                goto out;
        }
        /* The records twice: for people (text) and for programs (JSON). */
        char *json = cJSON_Print(cJSON_GetObjectItemCaseSensitive(reply, "records"));
        char *stat = status ? cJSON_Print(status) : NULL;
        FILE *txt = NULL;
        if (asprintf(&p, "%s/records.txt", dir) >= 0 && (txt = fopen(p, "we"))) {
                const cJSON *rec;
                cJSON_ArrayForEach(rec, cJSON_GetObjectItemCaseSensitive(reply, "records"))
                        print_record(txt, rec, false);
                fclose(txt);
        }
        free(p);
        p = NULL;
        if (!json || asprintf(&p, "%s/records.json", dir) < 0 || write_file(p, json) < 0) {
                cli_error("cannot write the records");
                free(json);
                free(stat);
                goto cleanup;
        }
        free(p);
        p = NULL;
        free(json);
        if (stat && asprintf(&p, "%s/daemon-status.json", dir) >= 0)
                (void)write_file(p, stat);
        free(stat);
        free(p);
        p = NULL;
        const char *diag = jstr(reply, "diagnostic_log");
        if (*diag && access(diag, R_OK) == 0 && asprintf(&p, "%s/diagnostic.log", dir) >= 0 &&
            copy_file(diag, p) < 0)
                cli_error("warning: the diagnostic log could not be copied");
        free(p);
        p = NULL;
        if (run_tar(file, dir) < 0) {
                cli_error("cannot write %s (tar failed)", file);
                goto cleanup;
        }
        printf("Wrote %s: %d usage record%s%s.\n", file,
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(reply, "records")),
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(reply, "records")) == 1 ? "" : "s",
               *diag && access(diag, R_OK) == 0 ? " and the diagnostic log" : "");
        rc = CLI_EXIT_OK;
cleanup:
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
out:
        cJSON_Delete(reply);
        cJSON_Delete(status);
        return rc;
}
