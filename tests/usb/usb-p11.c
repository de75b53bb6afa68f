/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The application side of the daemon-level USB tests: netca-pkcs11.so, as
 * any application loads it, against netcad serving the emulated reader
 * (ccid-harness.py scenario p11-unplug).
 *
 *   usb-p11 MODULE
 *     waits for a token, prints "SLOT <id>"; logs in (PIN 123456) and signs
 *     with the PIV Authentication key (CKA_ID 01, CKM_SHA256_RSA_PKCS) in a
 *     loop, printing "SIGN-OK" per signature, until one fails: "SIGN-RV
 *     <hex CK_RV>".  A thread blocked in C_WaitForSlotEvent prints "EVENT
 *     <id>" when it wakes.  Then it waits for the token to come back, prints
 *     "SLOT <id>" again, signs once more ("SIGN-OK"), and prints "DONE".
 *   Every wait is bounded (20 s): a hang is a failure, not a stuck test. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/p11.h"

static CK_FUNCTION_LIST_PTR p11;

#define FAIL(...)                                               \
        do {                                                    \
                fprintf(stderr, "usb-p11: FAIL: " __VA_ARGS__); \
                fputc('\n', stderr);                            \
                exit(1);                                        \
        } while (0)

/* One whole line: the signing thread and the event thread both print, and
 * a line cut by the other's ("EVENT 1SIGN-RV 0x32") hid SIGN-RV from the
 * harness once in CI. */
static void out(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        flockfile(stdout);
        vprintf(fmt, ap);
        putchar('\n');
        fflush(stdout);
        funlockfile(stdout);
        va_end(ap);
}

static CK_SLOT_ID wait_token(void) {
        for (int i = 0; i < 200; i++) {
                CK_SLOT_ID slots[8];
                CK_ULONG n = 8;
                CK_RV rv = p11->C_GetSlotList(CK_TRUE, slots, &n);
                if (rv != CKR_OK)
                        FAIL("C_GetSlotList: 0x%lx", (unsigned long)rv);
                if (n >= 1)
                        return slots[0]; /* the data directory is empty: the USB key is the only token */
                usleep(100000);
        }
        FAIL("no token appeared within 20 s");
}

static CK_SESSION_HANDLE login_find(CK_SLOT_ID slot, CK_OBJECT_HANDLE *key) {
        CK_SESSION_HANDLE s;
        CK_RV rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                FAIL("C_OpenSession: 0x%lx", (unsigned long)rv);
        rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6);
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
                FAIL("C_Login: 0x%lx", (unsigned long)rv);
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_BYTE id = 0x01;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, &id, 1 } };
        CK_ULONG n = 0;
        if ((rv = p11->C_FindObjectsInit(s, t, 2)) != CKR_OK || (rv = p11->C_FindObjects(s, key, 1, &n)) != CKR_OK ||
            (rv = p11->C_FindObjectsFinal(s)) != CKR_OK)
                FAIL("find: 0x%lx", (unsigned long)rv);
        if (n != 1)
                FAIL("no private key with CKA_ID 01");
        return s;
}

static CK_RV sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key) {
        CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
        CK_BYTE data[] = "data to sign", sig[512];
        CK_ULONG len = sizeof sig;
        CK_RV rv = p11->C_SignInit(s, &m, key);
        if (rv == CKR_OK)
                rv = p11->C_Sign(s, data, sizeof data - 1, sig, &len);
        if (rv == CKR_OK && len != 256)
                FAIL("signature of %lu bytes", (unsigned long)len);
        return rv;
}

static void *waiter(void *arg) {
        CK_SLOT_ID slot = 0;
        CK_RV rv = p11->C_WaitForSlotEvent(0, &slot, NULL);
        if (rv != CKR_OK)
                FAIL("C_WaitForSlotEvent: 0x%lx", (unsigned long)rv);
        out("EVENT %lu", (unsigned long)slot);
        return NULL;
}

static void *watchdog(void *arg) {
        sleep(60);
        fprintf(stderr, "usb-p11: FAIL: still running after 60 s\n");
        _exit(1);
}

int main(int argc, char **argv) {
        if (argc != 2)
                FAIL("usage: usb-p11 MODULE");
        pthread_t wd;
        pthread_create(&wd, NULL, watchdog, NULL);
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h)
                FAIL("dlopen: %s", dlerror());
        CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
        if (!gfl || gfl(&p11) != CKR_OK)
                FAIL("C_GetFunctionList");
        CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
        CK_RV rv = p11->C_Initialize(&ia);
        if (rv != CKR_OK)
                FAIL("C_Initialize: 0x%lx", (unsigned long)rv);

        CK_SLOT_ID slot = wait_token();
        out("SLOT %lu", (unsigned long)slot);
        /* Events so far (the arrival) are not what we wait for. */
        CK_SLOT_ID ev;
        while (p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &ev, NULL) == CKR_OK)
                ;
        pthread_t w;
        pthread_create(&w, NULL, waiter, NULL);

        CK_OBJECT_HANDLE key;
        CK_SESSION_HANDLE s = login_find(slot, &key);
        for (;;) {
                rv = sign(s, key);
                if (rv != CKR_OK)
                        break;
                out("SIGN-OK");
        }
        out("SIGN-RV 0x%lx", (unsigned long)rv);
        pthread_join(w, NULL);

        CK_SLOT_ID again = wait_token();
        out("SLOT %lu", (unsigned long)again);
        s = login_find(again, &key);
        if ((rv = sign(s, key)) != CKR_OK)
                FAIL("sign after replug: 0x%lx", (unsigned long)rv);
        out("SIGN-OK");
        p11->C_CloseSession(s);
        p11->C_Finalize(NULL);
        out("DONE");
        return 0;
}
