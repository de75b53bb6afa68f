/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* login-storm MODULE TOKEN_LABEL PIN:COUNT...: in ONE process, for each
 * argument, calls C_Login(CKU_USER, PIN) COUNT times in a tight loop, as a
 * browser retrying a refused PIN does (C_Logout after a success).  Prints one
 * line per argument: "<i> ok=N incorrect=N other=N (last rv 0x..)".  The
 * caller checks the token's retry counter with netca-tool. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/p11.h"

int main(int argc, char *argv[]) {
        if (argc < 4) {
                fprintf(stderr, "usage: %s MODULE TOKEN_LABEL PIN:COUNT...\n", argv[0]);
                return 2;
        }
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "dlopen: %s\n", dlerror());
                return 1;
        }
        CK_C_GetFunctionList getfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
        CK_FUNCTION_LIST *f = NULL;
        if (!getfl || getfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK) {
                fprintf(stderr, "module init failed\n");
                return 1;
        }
        CK_SLOT_ID slots[16];
        CK_ULONG n = 16;
        if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) {
                fprintf(stderr, "C_GetSlotList failed\n");
                return 1;
        }
        CK_SLOT_ID slot = (CK_SLOT_ID)-1;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                char label[33];
                if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                memcpy(label, ti.label, 32);
                label[32] = '\0';
                for (int k = 31; k >= 0 && label[k] == ' '; k--)
                        label[k] = '\0';
                if (strcmp(label, argv[2]) == 0)
                        slot = slots[i];
        }
        if (slot == (CK_SLOT_ID)-1) {
                fprintf(stderr, "token %s not found\n", argv[2]);
                return 1;
        }
        CK_SESSION_HANDLE s;
        if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
                fprintf(stderr, "C_OpenSession failed\n");
                return 1;
        }
        for (int a = 3; a < argc; a++) {
                char *spec = strdup(argv[a]);
                char *colon = spec ? strrchr(spec, ':') : NULL;
                if (!colon) {
                        fprintf(stderr, "bad spec %s\n", argv[a]);
                        return 2;
                }
                *colon = '\0';
                long count = strtol(colon + 1, NULL, 10);
                unsigned long ok = 0, incorrect = 0, other = 0;
                CK_RV rv = CKR_OK;
                for (long i = 0; i < count; i++) {
                        rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)spec, strlen(spec));
                        if (rv == CKR_OK) {
                                ok++;
                                f->C_Logout(s);
                        } else if (rv == CKR_PIN_INCORRECT)
                                incorrect++;
                        else
                                other++;
                }
                printf("%d ok=%lu incorrect=%lu other=%lu (last rv 0x%lx)\n", a - 2, ok, incorrect, other,
                       (unsigned long)rv);
                fflush(stdout);
                free(spec);
        }
        f->C_CloseSession(s);
        f->C_Finalize(NULL);
        return 0;
}
