/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The drivers netcad runs, in start order (NULL-terminated).  A new driver:
 * a folder under drivers/ exporting a `const struct driver`, and one line in
 * drivers/table.c (see docs/drivers.md). */
#pragma once

#include "drivers/driver.h"

extern const struct driver *const netcad_drivers[];
