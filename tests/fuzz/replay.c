/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replay main for the fuzz targets: runs LLVMFuzzerTestOneInput() over every
 * regular file in the directories (recursively) and files given as arguments,
 * so that the targets build and their corpora run in ordinary builds without
 * libFuzzer.  A crash or abort in the target is the failure; a missing or
 * empty corpus is one too (it would make the test pass vacuously). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX_INPUT (16u << 20)

static unsigned n_inputs;

static int read_file(const char *path, uint8_t **ret, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size > REPLAY_MAX_INPUT) {
                close(fd);
                return -EFBIG;
        }
        size_t len = (size_t)st.st_size;
        /* Exact size, so that sanitizers catch reads past the end. */
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, buf + got, len - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int e = n < 0 ? -errno : -EIO;
                        free(buf);
                        close(fd);
                        return e;
                }
                got += (size_t)n;
        }
        close(fd);
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int run_path(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
                struct dirent **ents;
                int n = scandir(path, &ents, NULL, alphasort);
                if (n < 0) {
                        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                        return -errno;
                }
                int ret = 0;
                for (int i = 0; i < n; i++) {
                        const char *name = ents[i]->d_name;
                        if (name[0] != '.') {
                                size_t l = strlen(path) + strlen(name) + 2;
                                char *sub = malloc(l);
                                if (!sub)
                                        return -ENOMEM;
                                snprintf(sub, l, "%s/%s", path, name);
                                int r = run_path(sub);
                                if (r < 0 && ret == 0)
                                        ret = r;
                                free(sub);
                        }
                        free(ents[i]);
                }
                free(ents);
                return ret;
        }
        if (!S_ISREG(st.st_mode))
                return 0;

        uint8_t *data = NULL;
        size_t len = 0;
        int r = read_file(path, &data, &len);
        if (r < 0) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(-r));
                return r;
        }
        /* Named before it runs, so that a crash says which input did it. */
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        n_inputs++;
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: %s CORPUS-DIR-OR-FILE...\n", argv[0]);
                return 2;
        }
        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);

        int ret = 0;
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i]) < 0)
                        ret = 1;
        if (n_inputs == 0) {
                fprintf(stderr, "replay: no inputs found\n");
                return 1;
        }
        printf("replay: %u inputs ran\n", n_inputs);
        return ret;
}
