/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIN cache end to end: netcad, netca-pkcs11.so in several processes,
 * netca-tool pin-cache.
 *
 *   - process scope: the process that entered the PIN logs in again with a
 *     NULL PIN (also after C_Finalize + C_Initialize: same process); another
 *     process is refused;
 *   - `pin-cache status` shows the entry (pid, expiry) and never the PIN;
 *   - session scope (set with netca-tool, which flushes): a process of the
 *     same login session is served, one of another session is not;
 *   - the setting survives a daemon restart; `pin-cache clear` flushes;
 *   - a process that entered the PIN and exited: its entry is dropped;
 *   - after all that, the PIN appears in no file of the data dir and not in
 *     the daemon's log; the daemon cannot dump core.
 *
 * Sessions: the test sets XDG_SESSION_ID for the processes it starts (the
 * daemon's fallback when logind knows no session for a process).  Where
 * logind does know the test's session, the "other session" case cannot be
 * made and is reported as not run.
 *
 * Environment (meson): NETCA_PKCS11_MODULE, NETCA_NETCAD, NETCA_TOOL. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <systemd/sd-login.h>
#include <time.h>
#include <unistd.h>

#include "drivers/soft/soft.h"
#include "testutil.h"

#define LABEL "pins"
/* Distinctive, so that a scan for it finds nothing by chance. */
#define SECRET_PIN "Qx7-pin-e2e-93"
#define SECRET_SO "So8-pin-e2e-41"
#define PIN(s) (CK_UTF8CHAR_PTR)(s), (CK_ULONG)strlen(s)

static const char *so_path, *netcad_path, *tool_path;
static char *dir, *data_dir, *sock, *log_path;
static pid_t daemon_pid = -1;

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* The daemon with its stderr in log_path (appended). */
static bool start_daemon(void) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int saved = dup(2);
        if (fd < 0 || saved < 0)
                return false;
        dup2(fd, 2);
        daemon_pid = tu_start_daemon(netcad_path, sock, data_dir);
        dup2(saved, 2);
        close(saved);
        close(fd);
        return daemon_pid > 0;
}

/* ---- child modes: one module client each ---- */

static int child(const char *mode) {
        void *h;
        CK_FUNCTION_LIST_PTR f = tu_load_module(so_path, &h);
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        if (!f || f->C_Initialize(NULL) != CKR_OK || !tu_find_slot(f, LABEL, &slot) ||
            f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
                return 20;
        CK_RV rv = strcmp(mode, "enter") == 0 ? f->C_Login(s, CKU_USER, PIN(SECRET_PIN))
                                               : f->C_Login(s, CKU_USER, NULL, 0);
        f->C_Finalize(NULL);
        return rv == CKR_OK ? 0 : rv == CKR_ARGUMENTS_BAD ? 10 : rv == CKR_PIN_INCORRECT ? 11 : 12;
}

/* Runs this program in child mode with XDG_SESSION_ID=session ("" none). */
static int run_child(const char *mode, const char *session) {
        pid_t pid = fork();
        if (pid == 0) {
                if (session && *session)
                        setenv("XDG_SESSION_ID", session, 1);
                else
                        unsetenv("XDG_SESSION_ID");
                execl("/proc/self/exe", "pin-e2e", "child", mode, (char *)NULL);
                _exit(30);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
                return -1;
        return WEXITSTATUS(st);
}

/* ---- netca-tool ---- */

/* Runs netca-tool with args; its stdout in *ret_out (malloc'd). */
static int tool(char **ret_out, const char *args) {
        char *cmd = NULL;
        if (asprintf(&cmd, "'%s' %s", tool_path, args) < 0)
                return -1;
        FILE *p = popen(cmd, "r");
        free(cmd);
        if (!p)
                return -1;
        size_t cap = 65536, n = 0;
        char *out = calloc(1, cap);
        size_t got;
        while (out && n < cap - 1 && (got = fread(out + n, 1, cap - 1 - n, p)) > 0)
                n += got;
        int st = pclose(p);
        if (ret_out)
                *ret_out = out;
        else
                free(out);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* pin-cache status --json, parsed. */
static cJSON *status(void) {
        char *out = NULL;
        int r = tool(&out, "pin-cache status --json");
        cJSON *o = r == 0 && out ? cJSON_Parse(out) : NULL;
        if (out && strstr(out, SECRET_PIN)) {
                fprintf(stderr, "FAIL: pin-cache status printed the PIN\n");
                tu_failures++;
        }
        free(out);
        return o;
}

static int entry_count(void) {
        cJSON *o = status();
        int n = o ? cJSON_GetArraySize(cJSON_GetObjectItem(o, "entries")) : -1;
        cJSON_Delete(o);
        return n;
}

/* ---- the scan for the PIN ---- */

static bool file_has(const char *path, const char *needle) {
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        size_t nl = strlen(needle), n = 0, cap = 1 << 20;
        char *buf = malloc(cap);
        bool found = false;
        size_t got;
        while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
                n += got;
                for (size_t i = 0; i + nl <= n; i++)
                        if (memcmp(buf + i, needle, nl) == 0)
                                found = true;
                /* Keep the tail that could start a match. */
                if (n > nl) {
                        memmove(buf, buf + n - nl, nl);
                        n = nl;
                }
        }
        free(buf);
        fclose(f);
        return found;
}

static void scan_dir(const char *d, const char *needle) {
        char *cmd = NULL;
        if (asprintf(&cmd, "find '%s' -type f", d) < 0)
                return;
        FILE *p = popen(cmd, "r");
        free(cmd);
        char line[4096];
        unsigned files = 0;
        while (p && fgets(line, sizeof line, p)) {
                line[strcspn(line, "\n")] = '\0';
                files++;
                if (file_has(line, needle)) {
                        fprintf(stderr, "FAIL: the PIN is in %s\n", line);
                        tu_failures++;
                }
        }
        if (p)
                pclose(p);
        fprintf(stderr, "scanned %u files under %s for the PIN\n", files, d);
        CHECK(files >= 2);
}

static void scenario(void) {
        char *logind = NULL;
        bool logind_session = sd_pid_get_session(0, &logind) >= 0;
        free(logind);
        setenv("NETCA_DEBUG", "all", 1); /* the scan covers debug logging too */
        REQUIRE(start_daemon());
        unsetenv("NETCA_DEBUG");

        /* 1. Process scope (the default). */
        CHECK(run_child("null", "e2e-1") == 10);
        CHECK(run_child("enter", "e2e-1") == 0);
        CHECK(run_child("null", "e2e-1") == 10); /* another process */
        void *h;
        CK_FUNCTION_LIST_PTR f = tu_load_module(so_path, &h);
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        REQUIRE(f && f->C_Initialize(NULL) == CKR_OK && tu_find_slot(f, LABEL, &slot));
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_ARGUMENTS_BAD);
        CHECK_RV(f->C_Login(s, CKU_USER, PIN(SECRET_PIN)), CKR_OK);
        CHECK_RV(f->C_Logout(s), CKR_OK);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_OK);
        /* Same process, new C_Initialize: still served. */
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        REQUIRE(f->C_Initialize(NULL) == CKR_OK && tu_find_slot(f, LABEL, &slot));
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_OK);
        CHECK_RV(f->C_Logout(s), CKR_OK);
        CHECK(run_child("null", "e2e-1") == 10);

        /* 2. Status: our entry, without the PIN. */
        cJSON *st = status();
        cJSON *e = st ? cJSON_GetArrayItem(cJSON_GetObjectItem(st, "entries"), 0) : NULL;
        CHECK(st && cJSON_GetArraySize(cJSON_GetObjectItem(st, "entries")) == 1);
        CHECK(e && cJSON_GetObjectItem(e, "pid") && cJSON_GetObjectItem(e, "pid")->valuedouble == getpid());
        CHECK(e && cJSON_GetObjectItem(e, "expires_in")->valuedouble > 1700 &&
              cJSON_GetObjectItem(e, "expires_in")->valuedouble <= 1800);
        cJSON_Delete(st);

        /* 3. Session scope: set (flushes), enter, served in the session. */
        CHECK(tool(NULL, "pin-cache set --scope session --ttl 10m") == 0);
        CHECK(entry_count() == 0);
        CHECK(tool(NULL, "pin-cache set --ttl 5") != 0); /* under a minute: refused */
        /* netca-tool, given no PIN and no terminal, fails before... */
        CHECK(tool(NULL, "key gen --type ec-p256 --label from-cache </dev/null") == 1);
        CHECK(run_child("enter", "e2e-1") == 0);
        CHECK(run_child("null", "e2e-1") == 0);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_OK);
        CHECK_RV(f->C_Logout(s), CKR_OK);
        /* ... and is served by the cache after (same session). */
        CHECK(tool(NULL, "key gen --type ec-p256 --label from-cache </dev/null") == 0);
        if (!logind_session)
                CHECK(run_child("null", "e2e-2") == 10);
        else
                fprintf(stderr, "NOTE: logind knows this test's session: the other-session case was not run\n");

        /* 4. The setting survives a restart (the cache does not). */
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        REQUIRE(start_daemon());
        st = status();
        cJSON *pol = st ? cJSON_GetObjectItem(st, "policy") : NULL;
        CHECK(pol && strcmp(cJSON_GetObjectItem(pol, "scope")->valuestring, "session") == 0 &&
              cJSON_GetObjectItem(pol, "ttl")->valuedouble == 600);
        CHECK(st && cJSON_GetArraySize(cJSON_GetObjectItem(st, "entries")) == 0);
        cJSON_Delete(st);
        CHECK(run_child("null", "e2e-1") == 10);

        /* 5. Clear. */
        CHECK(run_child("enter", "e2e-1") == 0);
        CHECK(entry_count() == 1);
        char *out = NULL;
        CHECK(tool(&out, "pin-cache clear") == 0);
        CHECK(out && strstr(out, "1 cached PIN cleared"));
        free(out);
        CHECK(run_child("null", "e2e-1") == 10);

        /* 6. Process scope again: a process that entered the PIN and
         *    exited has its entry dropped (the daemon sweeps every 2 s). */
        CHECK(tool(NULL, "pin-cache set --scope process") == 0);
        CHECK(run_child("enter", "e2e-1") == 0);
        int n = -1;
        for (int i = 0; i < 100 && n != 0; i++) {
                n = entry_count();
                if (n != 0)
                        sleep_ms(100);
        }
        CHECK(n == 0);
        CHECK(tool(NULL, "pin-cache set --off") == 0);
        CHECK(run_child("enter", "e2e-1") == 0);
        CHECK(entry_count() == 0);

        /* 7. The daemon cannot dump core: no core size, not dumpable. */
        char lim[64], line[256];
        snprintf(lim, sizeof lim, "/proc/%d/limits", (int)daemon_pid);
        FILE *lf = fopen(lim, "re");
        bool core0 = false;
        while (lf && fgets(line, sizeof line, lf))
                if (strncmp(line, "Max core file size", 18) == 0) {
                        unsigned long soft = 1, hard = 1;
                        core0 = sscanf(line + 26, "%lu %lu", &soft, &hard) == 2 && soft == 0 && hard == 0;
                }
        if (lf)
                fclose(lf);
        CHECK(core0);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;

        /* 8. The PIN is nowhere: not in the data dir's files (token,
         *    state.db and their journals), not in the log. */
        scan_dir(dir, SECRET_PIN);
        CHECK(!file_has(log_path, SECRET_PIN));
        CHECK(file_has(log_path, "PIN cache policy")); /* the log was written */
}

static char *control;

static void set_mode(const char *mode) {
        FILE *f = fopen(control, "we");
        if (f) {
                fputs(mode, f);
                fclose(f);
        }
}

/* Lines of the fake pinentry's log (the commands it received). */
static unsigned pinentry_runs(const char *must_contain) {
        char *log = NULL, line[1024];
        unsigned n = 0;
        if (asprintf(&log, "%s.log", control) < 0)
                return 0;
        FILE *f = fopen(log, "re");
        free(log);
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "GETPIN", 6) == 0)
                        n++;
                else if (must_contain && strncmp(line, "SETDESC", 7) == 0 && !strstr(line, must_contain)) {
                        fprintf(stderr, "FAIL: pinentry description without \"%s\": %s", must_contain, line);
                        tu_failures++;
                }
        if (f)
                fclose(f);
        return n;
}

/* Tokens that collect their PIN: C_Login(NULL) asks pinentry. */
static void scenario_pinentry(void) {
        const char *fake = tu_env_path("NETCA_FAKE_PINENTRY");
        if (asprintf(&control, "%s/pinentry-control", dir) < 0)
                return;
        setenv("FAKE_PINENTRY_CONTROL", control, 1); /* inherited by netcad, then pinentry */
        REQUIRE(start_daemon());
        void *h;
        CK_FUNCTION_LIST_PTR f = tu_load_module(so_path, &h);
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_TOKEN_INFO ti;
        REQUIRE(f && f->C_Initialize(NULL) == CKR_OK && tu_find_slot(f, LABEL, &slot));
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(!(ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH)); /* soft tokens: off by default */
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_ARGUMENTS_BAD);
        CHECK(pinentry_runs(NULL) == 0);

        char *args = NULL;
        REQUIRE(asprintf(&args, "pinentry set --program '%s' --timeout 2 --protected-path soft", fake) >= 0);
        CHECK(tool(NULL, args) == 0);
        free(args);
        /* The flag shows at once (the module's copy follows the event). */
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH);

        /* The user types the PIN: logged in, and the PIN is cached. */
        set_mode("answer:" SECRET_PIN);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_OK);
        CHECK(pinentry_runs("\"" LABEL "\"") == 1);
        CHECK(pinentry_runs("tries left") == 1);
        CHECK_RV(f->C_Logout(s), CKR_OK);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_OK);
        CHECK(pinentry_runs(NULL) == 1); /* from the cache: not asked again */
        CHECK_RV(f->C_Logout(s), CKR_OK);
        CHECK(tool(NULL, "pin-cache clear") == 0);

        /* Cancel. */
        set_mode("cancel");
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_FUNCTION_CANCELED);
        CHECK(pinentry_runs(NULL) == 2);

        /* A wrong PIN typed: refused, one try used, nothing cached. */
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(!(ti.flags & CKF_USER_PIN_COUNT_LOW));
        set_mode("answer:000000");
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_PIN_INCORRECT);
        CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
        CHECK(ti.flags & CKF_USER_PIN_COUNT_LOW);
        CHECK(entry_count() == 0);

        /* No answer: the daemon's time limit (2 s + grace) ends it. */
        set_mode("hang");
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_FUNCTION_CANCELED);

        /* No pinentry program at all. */
        CHECK(tool(NULL, "pinentry set --program /nonexistent/pinentry") == 0);
        CHECK_RV(f->C_Login(s, CKU_USER, NULL, 0), CKR_FUNCTION_FAILED);

        /* The usage records say why. */
        char *out = NULL;
        CHECK(tool(&out, "log show --failed") == 0);
        CHECK(out && strstr(out, "cancelled"));
        CHECK(out && strstr(out, "wrong PIN"));
        free(out);
        /* The right PIN again resets the counter (for the scan below). */
        CHECK_RV(f->C_Login(s, CKU_USER, PIN(SECRET_PIN)), CKR_OK);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        scan_dir(dir, SECRET_PIN);
        CHECK(!file_has(log_path, SECRET_PIN));
        free(control);
}

/* The screen lock: a private system bus with a mocked logind
 * (python3-dbusmock's template); its session "c7" is locked, and the PIN
 * cache entries of that session go (session scope). */
static pid_t bus_pid = -1, mock_pid = -1;

static void stop_bus(void) {
        if (mock_pid > 0) {
                kill(mock_pid, SIGTERM);
                waitpid(mock_pid, NULL, 0);
        }
        if (bus_pid > 0)
                kill(bus_pid, SIGTERM);
}

static int sh(const char *cmd) {
        int st = system(cmd);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void scenario_lock(void) {
        char *conf = NULL, *cmd = NULL;
        REQUIRE(asprintf(&conf, "%s/bus.conf", dir) >= 0);
        FILE *f = fopen(conf, "we");
        REQUIRE(f);
        fprintf(f, "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                   " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                   "<busconfig><type>system</type><keep_umask/><listen>unix:tmpdir=%s</listen>"
                   "<auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
                   "<allow send_type=\"method_call\"/><allow send_destination=\"*\"/>"
                   "<allow receive_type=\"*\"/></policy></busconfig>\n",
                dir);
        fclose(f);
        REQUIRE(asprintf(&cmd, "dbus-daemon --config-file='%s' --fork --print-address=1 --print-pid=1", conf) >= 0);
        FILE *p = popen(cmd, "r");
        free(cmd);
        char addr[512] = "", pidline[32] = "";
        REQUIRE(p && fgets(addr, sizeof addr, p) && fgets(pidline, sizeof pidline, p));
        pclose(p);
        addr[strcspn(addr, "\n")] = '\0';
        bus_pid = (pid_t)atoi(pidline);
        setenv("DBUS_SYSTEM_BUS_ADDRESS", addr, 1);
        unsetenv("DBUS_SESSION_BUS_ADDRESS");
        mock_pid = fork();
        if (mock_pid == 0) {
                int null = open("/dev/null", O_WRONLY);
                dup2(null, 1);
                dup2(null, 2);
                execl("/usr/bin/python3", "python3", "-m", "dbusmock", "--system", "-t", "logind", (char *)NULL);
                _exit(127);
        }
        /* The mock is up when its session can be added. */
        bool up = false;
        for (int i = 0; i < 100 && !up; i++) {
                up = sh("dbus-send --system --print-reply --dest=org.freedesktop.login1 /org/freedesktop/login1 "
                        "org.freedesktop.DBus.Mock.AddSession string:c7 string:seat0 uint32:1000 string:user "
                        "boolean:true >/dev/null 2>&1") == 0;
                if (!up)
                        sleep_ms(100);
        }
        REQUIRE(up);
        REQUIRE(start_daemon());
        CHECK(tool(NULL, "pin-cache set --scope session") == 0);
        CHECK(run_child("enter", "c7") == 0);
        CHECK(run_child("null", "c7") == 0);
        CHECK(entry_count() == 1);
        /* Another session's lock changes nothing. */
        CHECK(sh("dbus-send --system --print-reply --dest=org.freedesktop.login1 /org/freedesktop/login1 "
                 "org.freedesktop.DBus.Mock.AddSession string:c8 string:seat0 uint32:1000 string:user "
                 "boolean:true >/dev/null 2>&1") == 0);
        CHECK(sh("dbus-send --system --print-reply --dest=org.freedesktop.login1 /org/freedesktop/login1/session/c8 "
                 "org.freedesktop.login1.Session.Lock >/dev/null") == 0);
        CHECK(sh("dbus-send --system --print-reply --dest=org.freedesktop.login1 /org/freedesktop/login1/session/c7 "
                 "org.freedesktop.login1.Session.Lock >/dev/null") == 0);
        int n = -1;
        for (int i = 0; i < 100 && n != 0; i++) {
                n = entry_count();
                if (n != 0)
                        sleep_ms(50);
        }
        CHECK(n == 0);
        CHECK(run_child("null", "c7") == 10);
        CHECK(file_has(log_path, "login session c7 locked: 1 cached PIN dropped"));
        CHECK(!file_has(log_path, "session c8 locked: 1"));
        tu_stop_daemon(daemon_pid);
        daemon_pid = -1;
        stop_bus();
        free(conf);
}

int main(int argc, char **argv) {
        so_path = tu_env_path("NETCA_PKCS11_MODULE");
        netcad_path = tu_env_path("NETCA_NETCAD");
        tool_path = tu_env_path("NETCA_TOOL");
        if (argc == 3 && strcmp(argv[1], "child") == 0)
                return child(argv[2]);
        const char *mode = argc == 2 ? argv[1] : "main";
        /* This process and its children are in login session "e2e-1": the
         * daemon reads it from the environment the process was started
         * with, so start again with it. */
        const char *sess = getenv("XDG_SESSION_ID");
        if (!sess || strcmp(sess, "e2e-1") != 0) {
                setenv("XDG_SESSION_ID", "e2e-1", 1);
                execl("/proc/self/exe", argv[0], mode, (char *)NULL);
                return 1;
        }

        dir = tu_mkdtemp("pin-e2e");
        if (asprintf(&data_dir, "%s/data", dir) < 0 || asprintf(&sock, "%s/netcad.sock", dir) < 0 ||
            asprintf(&log_path, "%s/netcad.log", dir) < 0)
                return 1;
        char *tokpath = NULL;
        if (soft_token_create(data_dir, LABEL, SECRET_PIN, strlen(SECRET_PIN), SECRET_SO, strlen(SECRET_SO), 0,
                              &tokpath) < 0)
                return 1;
        free(tokpath);
        setenv("NETCA_SOCKET", sock, 1);
        setenv("NETCA_AUTOSTART", "0", 1);
        if (strcmp(mode, "pinentry") == 0)
                scenario_pinentry();
        else if (strcmp(mode, "lock") == 0)
                scenario_lock();
        else
                scenario();
        stop_bus();
        if (daemon_pid > 0)
                tu_stop_daemon(daemon_pid);
        tu_rmrf(dir);
        if (tu_failures) {
                fprintf(stderr, "%u check(s) failed\n", tu_failures);
                return 1;
        }
        return 0;
}
