/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CK_RV values in words a user reads ("wrong PIN", "the token was
 * removed"), for netca-tool's messages and the usage records. */
#pragma once

#include "p11.h"

/* A static string, or "CK_RV 0x..." (thread-local) for the others. */
const char *ckr_describe(CK_RV rv);
