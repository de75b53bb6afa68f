/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool browser register|unregister|status: adds netca-pkcs11.so to the
 * NSS databases that Firefox (each profile of ~/.mozilla/firefox/profiles.ini)
 * and Chromium (~/.pki/nssdb) load their PKCS#11 modules from, the way
 * OpenSC's pkcs11-register does.
 *
 * Writes go through NSS's own modutil (libnss3-tools), never by editing
 * pkcs11.txt: NSS owns that file's format.  Reads (status, "already there?")
 * parse pkcs11.txt, which is plain "key=value" blocks.  A database in use by a
 * running browser is reported and left alone: Firefox holds a "lock" symlink
 * (and .parentlock) in its profile while it runs; Chromium is detected by a
 * running process of ours whose executable is chromium. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#define NSS_MODULE_NAME "NETCA Token"

/* Copies src into dst (capacity cap), cut to fit. */
static void set_str(char *dst, size_t cap, const char *src) {
        size_t n = strnlen(src, cap - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

enum browser { BROWSER_FIREFOX = 1, BROWSER_CHROMIUM = 2 };

struct nssdb {
        enum browser browser;
        char name[256];         /* profile name, or "default" */
        char dir[PATH_MAX];
        bool in_use;            /* the browser runs on it */
};

/* The module registered: --module, else the installed one (absolute path:
 * NSS resolves a relative libfile against the process's cwd). */
static char *browser_module_path(void) {
        char *p = NULL;
        if (arg.module)
                return realpath(arg.module, NULL);
        if (asprintf(&p, "%s/pkcs11/netca-pkcs11.so", NETCA_LIBDIR) < 0)
                return NULL;
        return p;
}

/* Runs argv (stdin /dev/null), its output into a pipe returned in *out
 * (malloc'd, may be NULL).  Exit status, or a negative errno. */
static int run_tool(char *const argv[], char **out) {
        int pfd[2];
        if (pipe(pfd) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(pfd[0]);
                close(pfd[1]);
                return -e;
        }
        if (pid == 0) {
                int nul = open("/dev/null", O_RDONLY);
                if (nul >= 0)
                        dup2(nul, 0);
                dup2(pfd[1], 1);
                dup2(pfd[1], 2);
                close(pfd[0]);
                close(pfd[1]);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(pfd[1]);
        size_t len = 0, cap = 0;
        char *buf = NULL;
        for (;;) {
                if (len + 4096 + 1 > cap) {
                        char *nb = realloc(buf, cap = len + 8192);
                        if (!nb)
                                break;
                        buf = nb;
                }
                ssize_t n = read(pfd[0], buf + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        close(pfd[0]);
        if (buf)
                buf[len] = '\0';
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR) {
                        free(buf);
                        return -errno;
                }
        if (out)
                *out = buf;
        else
                free(buf);
        if (WIFEXITED(st))
                return WEXITSTATUS(st) == 127 ? -ENOENT : WEXITSTATUS(st);
        return -EINTR;
}

/* The library path of our module registered in dir's pkcs11.txt (any module
 * whose library is a netca-pkcs11.so, or named NSS_MODULE_NAME), and its
 * name.  0 found, -ENOENT not, or an errno. */
static int nssdb_find(const char *dir, char *lib, size_t lib_cap, char *name, size_t name_cap) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/pkcs11.txt", dir);
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        char line[4096], cur_lib[PATH_MAX] = "", cur_name[256] = "";
        int r = -ENOENT;
        bool eof = false;
        while (!eof) {
                eof = !fgets(line, sizeof line, f);
                line[strcspn(line, "\r\n")] = '\0';
                if (eof || line[0] == '\0') {
                        /* End of a block: is it ours? */
                        const char *base = strrchr(cur_lib, '/');
                        base = base ? base + 1 : cur_lib;
                        if (strcmp(base, "netca-pkcs11.so") == 0 || strcmp(cur_name, NSS_MODULE_NAME) == 0) {
                                snprintf(lib, lib_cap, "%s", cur_lib);
                                snprintf(name, name_cap, "%s", cur_name);
                                r = 0;
                                break;
                        }
                        cur_lib[0] = cur_name[0] = '\0';
                } else if (strncmp(line, "library=", 8) == 0)
                        snprintf(cur_lib, sizeof cur_lib, "%s", line + 8);
                else if (strncmp(line, "name=", 5) == 0) {
                        /* name="..." or name=... */
                        const char *v = line + 5;
                        size_t n = strlen(v);
                        if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
                                snprintf(cur_name, sizeof cur_name, "%.*s", (int)(n - 2), v + 1);
                        else
                                set_str(cur_name, sizeof cur_name, v);
                }
        }
        fclose(f);
        return r;
}

static bool path_exists(const char *dir, const char *file) {
        char p[PATH_MAX + 64];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, file);
        return lstat(p, &st) == 0;
}

/* Firefox keeps a "lock" symlink (target ip:+pid) in a profile while it runs;
 * a stale one (pid gone) does not count. */
static bool firefox_running(const char *dir) {
        char p[PATH_MAX + 16], target[256];
        snprintf(p, sizeof p, "%s/lock", dir);
        ssize_t n = readlink(p, target, sizeof target - 1);
        if (n <= 0)
                return path_exists(dir, "lock"); /* a plain file: assume in use */
        target[n] = '\0';
        const char *plus = strrchr(target, '+');
        if (!plus)
                return true;
        long pid = strtol(plus + 1, NULL, 10);
        if (pid <= 0)
                return true;
        return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* A chromium process of this user runs (it keeps ~/.pki/nssdb open). */
static bool chromium_running(void) {
        DIR *d = opendir("/proc");
        if (!d)
                return false;
        struct dirent *de;
        bool found = false;
        uid_t me = getuid();
        while (!found && (de = readdir(d))) {
                char p[300], exe[PATH_MAX];
                struct stat st;
                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                snprintf(p, sizeof p, "/proc/%s", de->d_name);
                if (stat(p, &st) < 0 || st.st_uid != me)
                        continue;
                snprintf(p, sizeof p, "/proc/%s/exe", de->d_name);
                ssize_t n = readlink(p, exe, sizeof exe - 1);
                if (n <= 0)
                        continue;
                exe[n] = '\0';
                const char *base = strrchr(exe, '/');
                base = base ? base + 1 : exe;
                if (strcmp(base, "chromium") == 0 || strcmp(base, "chrome") == 0)
                        found = true;
        }
        closedir(d);
        return found;
}

/* Profiles of ~/.mozilla/firefox/profiles.ini.  Appends to *v. */
static int firefox_dbs(const char *home, struct nssdb **v, size_t *n) {
        char base[PATH_MAX], ini[PATH_MAX + 32];
        snprintf(base, sizeof base, "%s/.mozilla/firefox", home);
        snprintf(ini, sizeof ini, "%s/profiles.ini", base);
        FILE *f = fopen(ini, "re");
        if (!f)
                return errno == ENOENT ? 0 : -errno;
        char line[PATH_MAX + 64], name[256] = "", path[PATH_MAX] = "";
        bool in_profile = false, relative = true, eof = false;
        while (!eof) {
                eof = !fgets(line, sizeof line, f);
                line[strcspn(line, "\r\n")] = '\0';
                if (eof || line[0] == '[') {
                        if (in_profile && path[0]) {
                                struct nssdb *nv = realloc(*v, (*n + 1) * sizeof **v);
                                if (!nv) {
                                        fclose(f);
                                        return -ENOMEM;
                                }
                                *v = nv;
                                struct nssdb *db = &nv[(*n)++];
                                memset(db, 0, sizeof *db);
                                db->browser = BROWSER_FIREFOX;
                                set_str(db->name, sizeof db->name, name[0] ? name : path);
                                if (!relative)
                                        set_str(db->dir, sizeof db->dir, path);
                                else if (snprintf(db->dir, sizeof db->dir, "%s/%s", base, path) >=
                                         (int)sizeof db->dir)
                                        (*n)--; /* a path too long to be real */
                                db->in_use = firefox_running(db->dir);
                        }
                        in_profile = strncmp(line, "[Profile", 8) == 0;
                        name[0] = path[0] = '\0';
                        relative = true;
                } else if (in_profile && strncmp(line, "Name=", 5) == 0)
                        set_str(name, sizeof name, line + 5);
                else if (in_profile && strncmp(line, "Path=", 5) == 0)
                        set_str(path, sizeof path, line + 5);
                else if (in_profile && strncmp(line, "IsRelative=", 11) == 0)
                        relative = line[11] != '0';
        }
        fclose(f);
        return 0;
}

static int chromium_db(const char *home, struct nssdb **v, size_t *n) {
        struct nssdb *nv = realloc(*v, (*n + 1) * sizeof **v);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        struct nssdb *db = &nv[(*n)++];
        memset(db, 0, sizeof *db);
        db->browser = BROWSER_CHROMIUM;
        snprintf(db->name, sizeof db->name, "default");
        snprintf(db->dir, sizeof db->dir, "%s/.pki/nssdb", home);
        db->in_use = chromium_running();
        return 0;
}

static const char *browser_name(enum browser b) {
        return b == BROWSER_FIREFOX ? "firefox" : "chromium";
}

static int mkdir_p(const char *path, mode_t mode) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s", path);
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(p, mode) < 0 && errno != EEXIST)
                                return -errno;
                        *s = '/';
                }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Reports a failed modutil/certutil with its output. */
static int tool_failed(const char *what, const struct nssdb *db, int r, const char *out) {
        if (r == -ENOENT)
                cli_error("%s is not installed (Debian package libnss3-tools)", what);
        else
                cli_error("%s failed on %s (%s): %s", what, db->dir, r < 0 ? strerror(-r) : "exit status",
                          out ? out : "");
        return CLI_EXIT_OTHER;
}

/* Runs an NSS tool (what: its name for messages) on db: CLI_EXIT_OK, or its
 * failure reported (tool_failed). */
static int run_nss_tool(const char *what, const struct nssdb *db, char *const argv[]) {
        char *out = NULL;
        int r = run_tool(argv, &out);
        int ret = r == 0 ? CLI_EXIT_OK : tool_failed(what, db, r, out);
        free(out);
        return ret;
}

/* Removes the module named name from db (dbarg: "sql:" and its dir). */
static int modutil_delete(const struct nssdb *db, char *dbarg, char *name) {
        char *del[] = { "modutil", "-dbdir", dbarg, "-delete", name, "-force", NULL };
        return run_nss_tool("modutil -delete", db, del);
}

/* Makes sure db has an NSS (sql:) database, creating an empty one (no
 * password, as Firefox and Chromium do) where none exists. */
static int nssdb_ensure(const struct nssdb *db) {
        if (path_exists(db->dir, "cert9.db") && path_exists(db->dir, "pkcs11.txt"))
                return 0;
        int r = mkdir_p(db->dir, 0700);
        if (r < 0) {
                cli_error("cannot create %s: %s", db->dir, strerror(-r));
                return CLI_EXIT_OTHER;
        }
        char dbarg[PATH_MAX + 8];
        snprintf(dbarg, sizeof dbarg, "sql:%s", db->dir);
        char *argv[] = { "certutil", "-N", "-d", dbarg, "--empty-password", NULL };
        return run_nss_tool("certutil -N", db, argv);
}

/* A JSON object naming db: its browser, profile and directory. */
static cJSON *db_json(const struct nssdb *db) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "browser", browser_name(db->browser));
        cJSON_AddStringToObject(o, "profile", db->name);
        cJSON_AddStringToObject(o, "dir", db->dir);
        return o;
}

/* One line (or JSON object) per database: what register/unregister did. */
static void report_result(const struct nssdb *db, const char *result, cJSON *jarr) {
        if (jarr) {
                cJSON *o = db_json(db);
                cJSON_AddStringToObject(o, "result", result);
                cJSON_AddItemToArray(jarr, o);
        } else
                printf("%-8s %-20s %s: %s\n", browser_name(db->browser), db->name, db->dir, result);
}

static int do_register(struct nssdb *db, const char *module, cJSON *jarr) {
        char lib[PATH_MAX], name[256], dbarg[PATH_MAX + 8];
        const char *result;
        int ret = CLI_EXIT_OK;

        int found = nssdb_find(db->dir, lib, sizeof lib, name, sizeof name);
        if (found == 0 && strcmp(lib, module) == 0)
                result = "already registered";
        else if (db->in_use) {
                result = "skipped: the browser is running (close it and try again)";
                ret = CLI_EXIT_OTHER;
        } else {
                if ((ret = nssdb_ensure(db)) != CLI_EXIT_OK)
                        return ret;
                snprintf(dbarg, sizeof dbarg, "sql:%s", db->dir);
                /* An old path: replaced. */
                if (found == 0 && (ret = modutil_delete(db, dbarg, name)) != CLI_EXIT_OK)
                        return ret;
                char *add[] = { "modutil", "-dbdir", dbarg, "-add", NSS_MODULE_NAME, "-libfile", (char *)module,
                                "-force", NULL };
                if ((ret = run_nss_tool("modutil -add", db, add)) != CLI_EXIT_OK)
                        return ret;
                result = found == 0 ? "updated" : "registered";
        }
        report_result(db, result, jarr);
        return ret;
}

static int do_unregister(struct nssdb *db, cJSON *jarr) {
        char lib[PATH_MAX], name[256], dbarg[PATH_MAX + 8];
        const char *result;
        int ret = CLI_EXIT_OK;

        int found = nssdb_find(db->dir, lib, sizeof lib, name, sizeof name);
        if (found != 0)
                result = "not registered";
        else if (db->in_use) {
                result = "skipped: the browser is running (close it and try again)";
                ret = CLI_EXIT_OTHER;
        } else {
                snprintf(dbarg, sizeof dbarg, "sql:%s", db->dir);
                if ((ret = modutil_delete(db, dbarg, name)) != CLI_EXIT_OK)
                        return ret;
                result = "unregistered";
        }
        report_result(db, result, jarr);
        return ret;
}

static void do_status(const struct nssdb *db, const char *module, cJSON *jarr) {
        char lib[PATH_MAX] = "", name[256] = "";
        bool exists = path_exists(db->dir, "pkcs11.txt");
        bool reg = exists && nssdb_find(db->dir, lib, sizeof lib, name, sizeof name) == 0;
        bool current = reg && strcmp(lib, module) == 0;
        if (jarr) {
                cJSON *o = db_json(db);
                cJSON_AddBoolToObject(o, "database", exists);
                cJSON_AddBoolToObject(o, "registered", reg);
                if (reg)
                        cJSON_AddStringToObject(o, "module", lib);
                cJSON_AddBoolToObject(o, "current", current);
                cJSON_AddBoolToObject(o, "running", db->in_use);
                cJSON_AddItemToArray(jarr, o);
                return;
        }
        printf("%-8s %-20s %s: %s%s%s%s\n", browser_name(db->browser), db->name, db->dir,
               !exists ? "no NSS database yet" : !reg ? "not registered" : "registered",
               reg && !current ? " (another path: " : "", reg && !current ? lib : "", reg && !current ? ")" : "");
        if (db->in_use)
                printf("%-8s %-20s   (the browser is running)\n", "", "");
}

/* what: 0 status, 1 register, 2 unregister. */
int cmd_browser(int what, bool firefox, bool chromium) {
        const char *home = getenv("HOME");
        if (!home || !*home) {
                cli_error("HOME is not set");
                return CLI_EXIT_OTHER;
        }
        if (!firefox && !chromium)
                firefox = chromium = true;
        char *module = browser_module_path();
        if (!module) {
                cli_error("module %s: %s", arg.module ? arg.module : "path", strerror(errno));
                return CLI_EXIT_NOT_FOUND;
        }
        if (what == 1 && access(module, R_OK) < 0) {
                cli_error("module %s: %s", module, strerror(errno));
                free(module);
                return CLI_EXIT_NOT_FOUND;
        }
        struct nssdb *dbs = NULL;
        size_t n = 0;
        int r = 0;
        if (firefox)
                r = firefox_dbs(home, &dbs, &n);
        if (r == 0 && chromium)
                r = chromium_db(home, &dbs, &n);
        if (r < 0) {
                cli_error("reading the browsers' profiles: %s", strerror(-r));
                free(dbs);
                free(module);
                return CLI_EXIT_OTHER;
        }
        cJSON *jarr = arg.json ? cJSON_CreateArray() : NULL;
        int ret = CLI_EXIT_OK;
        if (n == 0 && !arg.json)
                printf("no Firefox profile found (run Firefox once first)\n");
        for (size_t i = 0; i < n; i++) {
                int e = CLI_EXIT_OK;
                if (what == 0)
                        do_status(&dbs[i], module, jarr);
                else if (what == 1)
                        e = do_register(&dbs[i], module, jarr);
                else
                        e = do_unregister(&dbs[i], jarr);
                if (e != CLI_EXIT_OK)
                        ret = e;
        }
        if (jarr) {
                cJSON *top = cJSON_CreateObject();
                cJSON_AddStringToObject(top, "module", module);
                cJSON_AddItemToObject(top, "databases", jarr);
                print_json(top);
                cJSON_Delete(top);
        }
        free(dbs);
        free(module);
        return ret;
}
