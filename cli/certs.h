/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Certificates on a token, as netca-tool sees them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/x509_crt.h>

#include "cli.h"

struct cert_entry {
        CK_OBJECT_HANDLE h;
        uint8_t *der;
        size_t der_len;
        char *label;
        uint8_t *id;
        size_t id_len;
        char cn[256];
        bool parsed;
        mbedtls_x509_crt crt;
};

void cert_entry_done(struct cert_entry *e);
void cert_entries_free(struct cert_entry *v, size_t n);
/* Every certificate object visible in the session. */
int load_certs(CK_SESSION_HANDLE s, struct cert_entry **ret, size_t *ret_n);
/* One certificate by --cert/--id/--label (or the only one); exit code. */
int select_cert(CK_SESSION_HANDLE s, const struct p11_token *t, struct cert_entry *ret);
/* "sign", "encrypt", "sign+encrypt" from keyUsage. */
const char *cert_kind(const mbedtls_x509_crt *crt);
/* Writes to path ("-" or NULL: stdout). */
int write_output(const char *path, const void *data, size_t len);
int pem_encode(const char *what, const uint8_t *der, size_t len, char **ret);
