/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "drivers/soft/soft.h"

unsigned tu_failures;

const char *tu_rv_name(CK_RV rv) {
        switch (rv) {
#define N(x)    \
        case x: \
                return #x;
                N(CKR_OK)
                N(CKR_CANCEL)
                N(CKR_HOST_MEMORY)
                N(CKR_SLOT_ID_INVALID)
                N(CKR_GENERAL_ERROR)
                N(CKR_FUNCTION_FAILED)
                N(CKR_ARGUMENTS_BAD)
                N(CKR_NO_EVENT)
                N(CKR_NEED_TO_CREATE_THREADS)
                N(CKR_CANT_LOCK)
                N(CKR_ATTRIBUTE_READ_ONLY)
                N(CKR_ATTRIBUTE_SENSITIVE)
                N(CKR_ATTRIBUTE_TYPE_INVALID)
                N(CKR_ATTRIBUTE_VALUE_INVALID)
                N(CKR_DATA_INVALID)
                N(CKR_DATA_LEN_RANGE)
                N(CKR_DEVICE_ERROR)
                N(CKR_DEVICE_MEMORY)
                N(CKR_DEVICE_REMOVED)
                N(CKR_ENCRYPTED_DATA_INVALID)
                N(CKR_ENCRYPTED_DATA_LEN_RANGE)
                N(CKR_FUNCTION_CANCELED)
                N(CKR_FUNCTION_NOT_PARALLEL)
                N(CKR_FUNCTION_NOT_SUPPORTED)
                N(CKR_KEY_HANDLE_INVALID)
                N(CKR_KEY_SIZE_RANGE)
                N(CKR_KEY_TYPE_INCONSISTENT)
                N(CKR_KEY_FUNCTION_NOT_PERMITTED)
                N(CKR_MECHANISM_INVALID)
                N(CKR_MECHANISM_PARAM_INVALID)
                N(CKR_OBJECT_HANDLE_INVALID)
                N(CKR_OPERATION_ACTIVE)
                N(CKR_OPERATION_NOT_INITIALIZED)
                N(CKR_PIN_INCORRECT)
                N(CKR_PIN_INVALID)
                N(CKR_PIN_LEN_RANGE)
                N(CKR_PIN_EXPIRED)
                N(CKR_PIN_LOCKED)
                N(CKR_SESSION_CLOSED)
                N(CKR_SESSION_COUNT)
                N(CKR_SESSION_HANDLE_INVALID)
                N(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
                N(CKR_SESSION_READ_ONLY)
                N(CKR_SESSION_EXISTS)
                N(CKR_SESSION_READ_ONLY_EXISTS)
                N(CKR_SESSION_READ_WRITE_SO_EXISTS)
                N(CKR_SIGNATURE_INVALID)
                N(CKR_SIGNATURE_LEN_RANGE)
                N(CKR_TEMPLATE_INCOMPLETE)
                N(CKR_TEMPLATE_INCONSISTENT)
                N(CKR_TOKEN_NOT_PRESENT)
                N(CKR_TOKEN_NOT_RECOGNIZED)
                N(CKR_TOKEN_WRITE_PROTECTED)
                N(CKR_USER_ALREADY_LOGGED_IN)
                N(CKR_USER_NOT_LOGGED_IN)
                N(CKR_USER_PIN_NOT_INITIALIZED)
                N(CKR_USER_TYPE_INVALID)
                N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
                N(CKR_USER_TOO_MANY_TYPES)
                N(CKR_RANDOM_SEED_NOT_SUPPORTED)
                N(CKR_RANDOM_NO_RNG)
                N(CKR_BUFFER_TOO_SMALL)
                N(CKR_CRYPTOKI_NOT_INITIALIZED)
                N(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef N
        default:
                return "CKR_?";
        }
}

char *tu_mkdtemp(const char *tag) {
        char *p;
        if (asprintf(&p, "/tmp/netca-%s-XXXXXX", tag) < 0 || !mkdtemp(p)) {
                fprintf(stderr, "FATAL: mkdtemp: %s\n", strerror(errno));
                exit(1);
        }
        return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)flag;
        (void)ftw;
        remove(path);
        return 0;
}

void tu_rmrf(const char *dir) {
        if (dir)
                nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_create_token(const char *data_dir, const char *label) {
        char *path = NULL;
        int r = soft_token_create(data_dir, label, TU_USER_PIN, strlen(TU_USER_PIN), TU_SO_PIN, strlen(TU_SO_PIN), 0,
                                  &path);
        if (r < 0)
                fprintf(stderr, "FATAL: soft_token_create(%s): %s\n", data_dir, strerror(-r));
        free(path);
        return r;
}

bool tu_socket_alive(const char *sock) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(sock) >= sizeof sa.sun_path)
                return false;
        strcpy(sa.sun_path, sock);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        return ok;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

pid_t tu_start_daemon(const char *netcad, const char *sock, const char *data_dir) {
        pid_t pid = fork();
        if (pid < 0) {
                fprintf(stderr, "FATAL: fork: %s\n", strerror(errno));
                tu_failures++;
                return -1;
        }
        if (pid == 0) {
                /* Goes with the test if the test is killed (timeout). */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                execl(netcad, "netcad", "--foreground", "--socket", sock, "--data-dir", data_dir, (char *)NULL);
                fprintf(stderr, "exec %s: %s\n", netcad, strerror(errno));
                _exit(127);
        }
        /* Generous: the suite also runs under ASan on a loaded machine. */
        for (int i = 0; i < 600; i++) {
                if (tu_socket_alive(sock))
                        return pid;
                int st;
                if (waitpid(pid, &st, WNOHANG) == pid) {
                        fprintf(stderr, "FATAL: netcad (%s) exited before listening (status 0x%x)\n", netcad, st);
                        tu_failures++;
                        return -1;
                }
                sleep_ms(50);
        }
        fprintf(stderr, "FATAL: netcad did not listen on %s\n", sock);
        tu_failures++;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
}

static bool report_status(pid_t pid, int st, bool killed) {
        if (killed) {
                if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
                        return true;
                fprintf(stderr, "FAIL: netcad (pid %d) had already ended before SIGKILL: %s %d\n", (int)pid,
                        WIFSIGNALED(st) ? "signal" : "exit status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        } else {
                if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                        return true;
                /* LeakSanitizer's report at exit ends in status 23, other
                 * sanitizer reports and crashes show here too. */
                fprintf(stderr, "FAIL: netcad (pid %d) did not shut down cleanly: %s %d\n", (int)pid,
                        WIFSIGNALED(st) ? "killed by signal" : "exit status",
                        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        tu_failures++;
        return false;
}

bool tu_stop_daemon(pid_t pid) {
        if (pid <= 0)
                return true;
        int st;
        pid_t r;
        kill(pid, SIGTERM);
        /* Generous (ASan's leak check at exit on a loaded machine): only a
         * hang guard. */
        for (int i = 0; i < 1200; i++) {
                while ((r = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR)
                        ;
                if (r == pid)
                        return report_status(pid, st, false);
                if (r < 0) {
                        fprintf(stderr, "FAIL: netcad (pid %d): waitpid: %s\n", (int)pid, strerror(errno));
                        tu_failures++;
                        return false;
                }
                sleep_ms(50);
        }
        fprintf(stderr, "FAIL: netcad (pid %d) did not stop on SIGTERM: killed\n", (int)pid);
        tu_failures++;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return false;
}

bool tu_kill_daemon(pid_t pid) {
        if (pid <= 0)
                return true;
        int st;
        pid_t r;
        kill(pid, SIGKILL);
        while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
                ;
        if (r != pid) {
                fprintf(stderr, "FAIL: netcad (pid %d): waitpid: %s\n", (int)pid, strerror(errno));
                tu_failures++;
                return false;
        }
        return report_status(pid, st, true);
}

CK_FUNCTION_LIST_PTR tu_load_module(const char *path, void **ret_handle) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "FATAL: dlopen(%s): %s\n", path, dlerror());
                tu_failures++;
                return NULL;
        }
        CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
        CK_FUNCTION_LIST_PTR f = NULL;
        if (!gfl || gfl(&f) != CKR_OK || !f) {
                fprintf(stderr, "FATAL: C_GetFunctionList failed\n");
                tu_failures++;
                dlclose(h);
                return NULL;
        }
        *ret_handle = h;
        return f;
}

bool tu_find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *ret) {
        CK_ULONG n = 0;
        if (f->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK || n == 0)
                return false;
        CK_SLOT_ID *v = calloc(n, sizeof *v);
        if (!v || f->C_GetSlotList(CK_TRUE, v, &n) != CKR_OK) {
                free(v);
                return false;
        }
        bool found = false;
        for (CK_ULONG i = 0; i < n && !found; i++) {
                CK_TOKEN_INFO ti;
                char l[33];
                if (f->C_GetTokenInfo(v[i], &ti) != CKR_OK)
                        continue;
                unpad_field(l, ti.label, sizeof ti.label);
                if (strcmp(l, label) == 0) {
                        *ret = v[i];
                        found = true;
                }
        }
        free(v);
        return found;
}

const char *tu_env_path(const char *name) {
        const char *p = getenv(name);
        if (!p || !*p) {
                fprintf(stderr, "SKIP: %s not set\n", name);
                exit(77);
        }
        return p;
}
