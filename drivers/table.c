/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "drivers/table.h"

#include "drivers/soft/soft.h"
#include "drivers/usb/usb-driver.h"

const struct driver *const netcad_drivers[] = {
        &soft_driver,  /* first: soft tokens keep the low slot ids they always had */
        &usb_driver,
        NULL,
};
