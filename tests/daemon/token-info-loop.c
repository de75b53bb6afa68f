/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* token-info-loop MODULE N: loads the PKCS#11 module as an application does,
 * asks C_GetTokenInfo of the first slot with a token N times, and prints the
 * token's label.  tests/daemon/daemon.sh counts the requests the daemon
 * served meanwhile (NETCA_MODULE_CACHE).  Exit 0 when every call succeeded
 * with the same answer. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/p11.h"

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: token-info-loop MODULE N\n");
                return 2;
        }
        long n = strtol(argv[2], NULL, 10);
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror());
                return 1;
        }
        CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
        CK_FUNCTION_LIST_PTR f = NULL;
        if (!gfl || gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK) {
                fprintf(stderr, "cannot initialize %s\n", argv[1]);
                return 1;
        }
        CK_SLOT_ID slots[16];
        CK_ULONG ns = 16;
        CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &ns);
        if (rv != CKR_OK || ns == 0) {
                fprintf(stderr, "C_GetSlotList: rv 0x%lx, %lu slots\n", (unsigned long)rv, (unsigned long)ns);
                return 1;
        }
        CK_TOKEN_INFO first, ti;
        for (long i = 0; i < n; i++) {
                memset(&ti, 0, sizeof ti);
                rv = f->C_GetTokenInfo(slots[0], &ti);
                if (rv != CKR_OK) {
                        fprintf(stderr, "C_GetTokenInfo #%ld: rv 0x%lx\n", i, (unsigned long)rv);
                        return 1;
                }
                if (i == 0)
                        first = ti;
                else if (memcmp(first.label, ti.label, sizeof ti.label) != 0 ||
                         memcmp(first.serialNumber, ti.serialNumber, sizeof ti.serialNumber) != 0) {
                        fprintf(stderr, "C_GetTokenInfo #%ld: another answer\n", i);
                        return 1;
                }
        }
        printf("%.32s\n", (const char *)first.label);
        (void)f->C_Finalize(NULL);
        return 0;
}
