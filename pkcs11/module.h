/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-pkcs11: the PKCS#11 2.40 module (module.c) over the RPC client.
 *
 * The .so exports only C_GetFunctionList.  The same code is built as a static
 * "testable" library; tests may replace the transport before C_Initialize,
 * e.g. with the in-process transport that calls the daemon's dispatcher. */
#pragma once

#include "common/p11.h"
#include "rpc-client.h"

/* Makes a new transport for each C_Initialize.  Returns 0 or -errno. */
typedef int (*netca_transport_factory)(void *userdata, struct rpc_transport **ret);

/* NULL restores the default (the Unix socket to netcad).  Call only while
 * the module is not initialized. */
void netca_module_set_transport_factory(netca_transport_factory f, void *userdata);

/* Autostart of netcad when no daemon answers: on by default; the environment
 * variable NETCA_AUTOSTART=0 turns it off. */
void netca_module_set_autostart(bool on);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);
