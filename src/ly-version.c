/* ly-version.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "ly-version.h"

/**
 * ly_get_major_version:
 *
 * The major version of the library the program runs with.
 *
 * Returns: the major version of the liteyuki-comm library in use
 *
 * Since: 1.0
 */
guint
ly_get_major_version (void)
{
  return LY_MAJOR_VERSION;
}

/**
 * ly_get_minor_version:
 *
 * The minor version of the library the program runs with.
 *
 * Returns: the minor version of the liteyuki-comm library in use
 *
 * Since: 1.0
 */
guint
ly_get_minor_version (void)
{
  return LY_MINOR_VERSION;
}

/**
 * ly_get_micro_version:
 *
 * The micro version of the library the program runs with.
 *
 * Returns: the micro version of the liteyuki-comm library in use
 *
 * Since: 1.0
 */
guint
ly_get_micro_version (void)
{
  return LY_MICRO_VERSION;
}
