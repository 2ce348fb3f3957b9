/* ly-test-peer.c: the other process of the channel tests
 *
 * Usage: ly-test-peer MODE, with the channel's socket as fd 3.
 *   echo   send every message back; exit 0 when the channel closes
 *   echo-memfd THRESHOLD   the same, with messages up to 300 MiB and
 *          those from THRESHOLD bytes on sent in memfds
 *   hang   send "ready", then wait to be killed
 *   burst N  send N messages (u) 0..N-1, then close and exit
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdlib.h>
#include <unistd.h>

#include <liteyuki-comm.h>

static void
on_received (LyChannel *channel,
             GVariant  *message,
             gpointer   user_data)
{
  g_autoptr(GError) error = NULL;

  if (!ly_channel_send (channel, message, &error))
    g_error ("echo: %s", error->message);
}

static void
on_closed (LyChannel    *channel,
           const GError *error,
           GMainLoop    *loop)
{
  g_main_loop_quit (loop);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  if (argc < 2)
    g_error ("usage: ly-test-peer echo|hang|burst N");

  g_set_prgname ("ly-test-peer");
  channel = ly_channel_new_for_fd ("test", 3, &error);
  g_assert_no_error (error);

  if (g_str_equal (argv[1], "echo-memfd") && argc > 2)
    {
      ly_channel_set_memfd_threshold (channel, g_ascii_strtoull (argv[2], NULL, 10));
      ly_channel_set_max_message_size (channel, 300 * 1024 * 1024);
      ly_channel_set_max_queued_bytes (channel, 600 * 1024 * 1024);
      argv[1] = (char *) "echo";
    }

  if (g_str_equal (argv[1], "echo"))
    {
      g_signal_connect (channel, "received", G_CALLBACK (on_received), NULL);
      g_signal_connect (channel, "closed", G_CALLBACK (on_closed), loop);
      g_main_loop_run (loop);
      return 0;
    }

  if (g_str_equal (argv[1], "hang"))
    {
      ly_channel_send (channel, g_variant_new_string ("ready"), &error);
      g_assert_no_error (error);
      ly_channel_flush (channel, NULL, &error);
      g_assert_no_error (error);
      for (;;)
        pause ();
    }

  if (g_str_equal (argv[1], "burst") && argc > 2)
    {
      guint n = (guint) g_ascii_strtoull (argv[2], NULL, 10);

      for (guint i = 0; i < n; i++)
        {
          if (!ly_channel_send (channel, g_variant_new_uint32 (i), &error))
            {
              g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL);
              g_clear_error (&error);
              ly_channel_flush (channel, NULL, &error);
              g_assert_no_error (error);
              i--;
            }
        }
      ly_channel_close (channel);
      ly_channel_flush (channel, NULL, NULL);
      return 0;
    }

  g_error ("unknown mode %s", argv[1]);
}
