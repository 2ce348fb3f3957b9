/* test-i18n.c: the library's messages in Chinese
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <locale.h>
#include <string.h>

#include <liteyuki-comm.h>

static void
test_error_in_chinese (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) a = NULL;
  g_autoptr(LyChannel) b = NULL;

  ly_channel_new_pair ("i18n", &a, &b, &error);
  g_assert_no_error (error);
  ly_channel_set_message_type (a, G_VARIANT_TYPE_STRING);

  g_assert_false (ly_channel_send (a, g_variant_new_int32 (1), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TYPE_MISMATCH);
  g_test_message ("%s", error->message);
  g_assert_cmpstr (error->message, ==, "通道“i18n”传输类型为“s”的消息，而不是“i”");
}

int
main (int   argc,
      char *argv[])
{
  /* gettext ignores LANGUAGE in the plain C locale, not in C.UTF-8 */
  g_setenv ("LC_ALL", "C.UTF-8", TRUE);
  g_setenv ("LANGUAGE", "zh_CN", TRUE);
  setlocale (LC_ALL, "");

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/i18n/error-in-chinese", test_error_in_chinese);

  return g_test_run ();
}
