/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An in-process daemon core with one soft token (for the direct and wire
 * layers): a temp data dir, a token made with soft_token_create, opened and
 * added to a new core. */
#pragma once

struct core;

/* NULL on failure (after printing why). */
struct core *coresetup_new(const char *label);
void coresetup_free(void);
