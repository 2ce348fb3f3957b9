/* fuzz-control.c: the hub's side of a child's control connection
 *
 * The input is what a child writes on its control connection: frames
 * (a hello, then requests, payloads, anything).  The hub reads them from
 * a real socket, through its channel, its control dispatcher and the
 * storage's request handler, and answers; then the child's side closes.
 * Lifecycle requests (RequestStop, RequestRestart) are answered as the
 * process manager does, without stopping anything.  After each input the
 * hub's storage must still work, and the connection must have ended.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "fuzz-common.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "ly-channel-private.h"
#include "ly-control-private.h"
#include "ly-storage-private.h"

FUZZ_DEFINE_INITIALIZE ()

/* What the process manager serves besides the storage, minus acting on
 * a target. */
static void
on_lifecycle_request (LyControl *control,
                      guint32    serial,
                      GVariant  *args,
                      gpointer   user_data)
{
  if (serial != 0)
    ly_control_reply (control, serial, NULL);
}

/* The child's end reads whatever the hub answers, so that the hub never
 * waits for room. */
static gboolean
drain (int          fd,
       GIOCondition condition,
       gpointer     user_data)
{
  gboolean *eof = user_data;
  char buffer[16 * 1024];
  gssize n;

  while ((n = recv (fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0)
    ;
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
    {
      *eof = TRUE;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
write_all (int            fd,
           const uint8_t *data,
           size_t         size)
{
  while (size > 0)
    {
      gssize n = send (fd, data, size, MSG_NOSIGNAL);

      if (n < 0 && errno == EINTR)
        continue;
      g_assert (n > 0);
      data += n;
      size -= (size_t) n;
    }
}

/* The storage works, and holds nothing this input left behind. */
static void
check_and_clear_storage (LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_auto(GStrv) keys = NULL;

  g_assert_true (ly_storage_set (storage, "fuzz.check", g_variant_new_int32 (7), &error));
  g_assert_no_error (error);
  value = ly_storage_get (storage, "fuzz.check", &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (value), ==, 7);

  keys = ly_storage_list_keys (storage, &error);
  g_assert_no_error (error);
  for (guint i = 0; keys[i] != NULL; i++)
    g_assert_true (ly_storage_delete (storage, keys[i], NULL));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  LyStorage *storage = ly_storage_get_default ();
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(LyControl) control = NULL;
  gboolean child_eof = FALSE;
  int buffer_size = 1024 * 1024;
  int fds[2];
  guint drain_id;

  if (size > 128 * 1024)     /* what one write into the socket takes */
    return 0;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  setsockopt (fds[1], SOL_SOCKET, SO_SNDBUF, &buffer_size, sizeof buffer_size);

  /* the child has written everything and shut its side for writing */
  write_all (fds[1], data, size);
  shutdown (fds[1], SHUT_WR);

  channel = ly_channel_new_for_socket ("control", fds[0], NULL);
  control = ly_control_new (channel);
  ly_control_add_handler (control, "RequestStop", "()", on_lifecycle_request, NULL, NULL);
  ly_control_add_handler (control, "RequestRestart", "()", on_lifecycle_request, NULL, NULL);
  ly_storage_add_peer (storage, control, NULL);
  drain_id = g_unix_fd_add (fds[1], G_IO_IN, drain, &child_eof);

  while (!ly_channel_is_closed (channel))
    g_main_context_iteration (NULL, TRUE);

  ly_storage_remove_peer (storage, control);
  if (!child_eof)
    g_source_remove (drain_id);
  close (fds[1]);
  g_clear_object (&control);
  g_clear_object (&channel);

  /* whatever the channel still had to do (its linger) ends now */
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);

  check_and_clear_storage (storage);
  return 0;
}
