/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "coresetup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core.h"
#include "drivers/soft/soft.h"
#include "testutil.h"

static char *data_dir;
static struct core *core;

struct core *coresetup_new(const char *label) {
        char **paths = NULL;
        size_t n = 0;
        int r;

        data_dir = tu_mkdtemp("conf");
        if (tu_create_token(data_dir, label) < 0)
                return NULL;
        r = core_new(&core);
        if (r < 0) {
                fprintf(stderr, "FATAL: core_new: %s\n", strerror(-r));
                return NULL;
        }
        r = soft_token_scan(data_dir, &paths, &n);
        if (r < 0 || n != 1) {
                fprintf(stderr, "FATAL: soft_token_scan: %s, %zu tokens\n", strerror(r < 0 ? -r : 0), n);
                return NULL;
        }
        struct token *t;
        r = soft_token_open(paths[0], &t);
        if (r < 0) {
                fprintf(stderr, "FATAL: soft_token_open: %s\n", strerror(-r));
        } else {
                CK_SLOT_ID slot;
                r = core_add_token(core, &soft_ops, t, paths[0], &slot);
                if (r < 0)
                        fprintf(stderr, "FATAL: core_add_token: %s\n", strerror(-r));
        }
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
        return r < 0 ? NULL : core;
}

void coresetup_free(void) {
        core = core_free(core);
        tu_rmrf(data_dir);
        free(data_dir);
        data_dir = NULL;
}
