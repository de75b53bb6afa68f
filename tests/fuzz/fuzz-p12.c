/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the files `netca-tool import` reads, through the PKCS#12
 * reader (cli/pkcs12.c): a whole PFX (p12_parse) and a PKCS#8
 * EncryptedPrivateKeyInfo (p12_decrypt_pkcs8), each with the password the
 * seeds were made with ("password": the decryption paths run) and with a
 * wrong one.  Every result is one of the documented errors; what a success
 * returns stays within its bounds. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "cli/pkcs12.h"
#include "common/secmem.h"

static void check_rc(int r) {
        assert(r == 0 || r == -EBADMSG || r == -EACCES || r == -EOPNOTSUPP || r == -E2BIG || r == -ENOMEM);
}

static void one_p12(const uint8_t *data, size_t size, const char *password) {
        struct p12 p;
        memset(&p, 0xAA, sizeof p);
        int r = p12_parse(data, size, password, &p);
        check_rc(r);
        if (r != 0)
                return;
        assert(p.n_certs <= P12_MAX_CERTS);
        for (size_t i = 0; i < p.n_certs; i++)
                assert(p.certs[i].der && p.certs[i].len > 0 && p.certs[i].len <= size);
        assert(!p.key == !p.key_len);
        p12_done(&p);
}

static void one_pkcs8(const uint8_t *data, size_t size, const char *password) {
        uint8_t *key = NULL;
        size_t key_len = 0;
        int r = p12_decrypt_pkcs8(data, size, password, &key, &key_len);
        check_rc(r);
        if (r != 0) {
                assert(!key);
                return;
        }
        assert(key && key_len <= size);
        secure_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        (void)p12_looks_like(data, size);
        one_p12(data, size, "password");
        one_p12(data, size, "wrong");
        one_pkcs8(data, size, "password");
        one_pkcs8(data, size, "wrong");
        return 0;
}
