/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The layer under test: conformance.c is linked with one of layer-direct.c
 * (core_* functions with one core client), layer-wire.c (the module's RPC
 * client over the in-process transport to dispatch_p11) or layer-socket.c
 * (netca-pkcs11.so over the socket to a real netcad). */
#pragma once

#include <stdbool.h>

#include "common/p11.h"

#define CONF_TOKEN_LABEL "conformance"

struct layer_info {
        const char *name;
        bool is_module;   /* the real module code (wire, socket) */
};

/* Prepares a soft token labelled CONF_TOKEN_LABEL with TU_USER_PIN /
 * TU_SO_PIN and returns the function list (not initialized); NULL on failure. */
CK_FUNCTION_LIST_PTR layer_setup(struct layer_info *ret_info);
void layer_teardown(void);
