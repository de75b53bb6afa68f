/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* piv-enum MODULE: what a PKCS#11 application does when it first looks at a
 * key, timed: C_Initialize, the slot with a token, a session, every object
 * listed, and for each its CKA_CLASS, CKA_ID and CKA_LABEL, plus CKA_VALUE of
 * the certificates; then C_Finalize.  Prints one line
 *   ENUM ms=<total> objects=<n> certs=<n> certbytes=<n>
 * for bench/piv-enum.sh.  The same program runs against netca-pkcs11.so and
 * opensc-pkcs11.so, so both pay for the same calls. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int die(const char *what, CK_RV rv) {
        fprintf(stderr, "piv-enum: %s: 0x%lx\n", what, (unsigned long)rv);
        return 1;
}

/* One attribute into a malloc'd buffer (length query, then value). */
static CK_RV get_attr(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                      unsigned char **ret, CK_ULONG *ret_len) {
        CK_ATTRIBUTE a = { type, NULL, 0 };
        CK_RV rv = f->C_GetAttributeValue(s, o, &a, 1);
        if (rv != CKR_OK)
                return rv;
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
                return CKR_ATTRIBUTE_TYPE_INVALID;
        a.pValue = malloc(a.ulValueLen ? a.ulValueLen : 1);
        if (!a.pValue)
                return CKR_HOST_MEMORY;
        rv = f->C_GetAttributeValue(s, o, &a, 1);
        if (rv != CKR_OK) {
                free(a.pValue);
                return rv;
        }
        *ret = a.pValue;
        *ret_len = a.ulValueLen;
        return CKR_OK;
}

int main(int argc, char *argv[]) {
        CK_C_GetFunctionList get_list;
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slots[16];
        CK_ULONG n_slots = 16, n = 0, n_objects = 0, n_certs = 0, cert_bytes = 0;
        CK_OBJECT_HANDLE objs[64];
        CK_SESSION_HANDLE s;
        CK_RV rv;
        double t0;
        void *dl;

        if (argc != 2) {
                fprintf(stderr, "usage: piv-enum MODULE\n");
                return 2;
        }
        dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
                fprintf(stderr, "piv-enum: %s\n", dlerror());
                return 1;
        }
        get_list = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
        if (!get_list || get_list(&f) != CKR_OK)
                return die("C_GetFunctionList", CKR_GENERAL_ERROR);

        t0 = now_ms();
        rv = f->C_Initialize(NULL);
        if (rv != CKR_OK)
                return die("C_Initialize", rv);
        rv = f->C_GetSlotList(CK_TRUE, slots, &n_slots);
        if (rv != CKR_OK || n_slots == 0)
                return die("C_GetSlotList (no token)", rv);
        rv = f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                return die("C_OpenSession", rv);
        rv = f->C_FindObjectsInit(s, NULL, 0);
        if (rv != CKR_OK)
                return die("C_FindObjectsInit", rv);
        rv = f->C_FindObjects(s, objs, 64, &n);
        if (rv != CKR_OK)
                return die("C_FindObjects", rv);
        f->C_FindObjectsFinal(s);
        for (CK_ULONG i = 0; i < n; i++) {
                static const CK_ATTRIBUTE_TYPE want[] = { CKA_CLASS, CKA_ID, CKA_LABEL };
                CK_OBJECT_CLASS cls = (CK_OBJECT_CLASS)-1;
                for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
                        unsigned char *v = NULL;
                        CK_ULONG len = 0;
                        rv = get_attr(f, s, objs[i], want[k], &v, &len);
                        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
                                return die("C_GetAttributeValue", rv);
                        if (rv == CKR_OK && want[k] == CKA_CLASS && len == sizeof cls)
                                memcpy(&cls, v, sizeof cls);
                        free(v);
                }
                n_objects++;
                if (cls == CKO_CERTIFICATE) {
                        unsigned char *v = NULL;
                        CK_ULONG len = 0;
                        rv = get_attr(f, s, objs[i], CKA_VALUE, &v, &len);
                        if (rv != CKR_OK)
                                return die("C_GetAttributeValue(CKA_VALUE)", rv);
                        free(v);
                        n_certs++;
                        cert_bytes += len;
                }
        }
        f->C_CloseSession(s);
        f->C_Finalize(NULL);
        printf("ENUM ms=%.1f objects=%lu certs=%lu certbytes=%lu\n", now_ms() - t0, (unsigned long)n_objects,
               (unsigned long)n_certs, (unsigned long)cert_bytes);
        return 0;
}
