/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver table of netcad-example (tests only): the product's drivers
 * plus the example driver, added as docs/drivers.md says: one line. */
#include "drivers/table.h"

#include "drivers/soft/soft.h"
#include "drivers/usb/usb-driver.h"

extern const struct driver example_driver;

const struct driver *const netcad_drivers[] = {
        &soft_driver,
        &usb_driver,
        &example_driver,
        NULL,
};
