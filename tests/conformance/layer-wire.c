/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "wire" layer: the module's own code (module.c, rpc-client.c) with the
 * in-process transport, which runs daemon/dispatch.c on a core client, so
 * every call is encoded, checked against the op table and decoded on both
 * sides exactly as over the socket. */
#include "coresetup.h"
#include "layer.h"
#include "pkcs11/module.h"
#include "tests/lib/transport-inproc.h"

static struct core *core;

static int factory(void *userdata, struct rpc_transport **ret) {
        return rpc_transport_inproc_new(userdata, ret);
}

CK_FUNCTION_LIST_PTR layer_setup(struct layer_info *ret_info) {
        CK_FUNCTION_LIST_PTR f = NULL;
        ret_info->name = "wire";
        ret_info->is_module = true;
        core = coresetup_new(CONF_TOKEN_LABEL);
        if (!core)
                return NULL;
        netca_module_set_transport_factory(factory, core);
        if (C_GetFunctionList(&f) != CKR_OK)
                return NULL;
        return f;
}

void layer_teardown(void) {
        CK_FUNCTION_LIST_PTR f = NULL;
        /* In case a check bailed out while initialized. */
        if (C_GetFunctionList(&f) == CKR_OK)
                (void)f->C_Finalize(NULL);
        netca_module_set_transport_factory(NULL, NULL);
        coresetup_free();
        core = NULL;
}
