/* liteyuki-comm.h: process channels and shared storage for GLib applications
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#define LITEYUKI_COMM_INSIDE

#include <gio/gio.h>

#include "ly-version.h"
#include "ly-enums.h"
#include "ly-channel.h"
#include "ly-dbus.h"
#include "ly-dbus-server.h"
#include "ly-errors.h"
#include "ly-process-manager.h"
#include "ly-registry.h"
#include "ly-runtime.h"
#include "ly-storage.h"

#undef LITEYUKI_COMM_INSIDE
