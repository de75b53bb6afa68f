/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Key helpers shared by key gen, import and csr. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/pk.h>

#include "cli.h"

#define KEY_ID_LEN 20 /* SHA-1 of the public key (RSA modulus, EC point) */

/* DER of the named-curve OID (CKA_EC_PARAMS) for an mbedTLS group. */
int ec_params_for_group(int grp_id, const uint8_t **ret, size_t *ret_len);
/* The CKA_ID convention: SHA-1 of the RSA modulus or of the uncompressed
 * EC point (without its OCTET STRING wrapper). */
int key_id_from_pk(const mbedtls_pk_context *pk, uint8_t ret[KEY_ID_LEN]);
/* The policy of every private key this tool puts on a token (generated or
 * imported): a token object, private, sensitive, never extractable, for
 * signing.  Templates start their private key's flags with it. */
#define KEY_PRIVATE_POLICY_LEN 5
extern const CK_ATTRIBUTE key_private_policy[KEY_PRIVATE_POLICY_LEN];
/* The --id option, if any (malloc'd). */
int parse_id_option(uint8_t **ret, size_t *ret_len);
