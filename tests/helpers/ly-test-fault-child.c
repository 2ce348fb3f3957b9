/* ly-test-fault-child.c: children that misbehave, for test-faults
 *
 * Usage: ly-test-fault-child MODE [ARGS]
 *
 *   flood-data SIZE    writes a hello on its active channel, then
 *                      messages of SIZE bytes (`ay`, 0: empty) as fast
 *                      as it can; reports "flood stalled after N" once
 *                      the hub has not read for a second, then waits
 *   flood-sets SECONDS writes StorageSet requests on its control
 *                      connection as fast as it can for SECONDS, a
 *                      thread reading the replies; reports "flood sets
 *                      N" at the end
 *   flood-control      writes a hello, then StorageGet requests on its
 *                      control connection without ever reading a reply,
 *                      until the hub cuts it; reports "cut after N"
 *   never-read         starts the runtime, reports "ready", never reads
 *   set-loop KEY       sets KEY to 1, 2, 3... and reports each value the
 *                      hub acknowledged ("acked N"), until it fails
 *                      ("failed: MESSAGE") or is killed
 *   set-loop-orphan KEY  the same, but does not die with the hub (it
 *                      undoes the PR_SET_PDEATHSIG the hub set, leaves
 *                      the process group the hub killed, and reports
 *                      "orphan-to-be PID" then), so that its set meets
 *                      the end of the connection
 *   eintr-storage N    N sets and gets while a thread interrupts the
 *                      main one with signals; reports "eintr ok N"
 *   pipeline N         writes a hello and N StorageGet requests in one
 *                      write, then waits for their replies; reports
 *                      "pipelined N replies", or "pipeline stalled
 *                      after K replies" when none came for 5 s
 *
 * Reports are lines appended to the file LY_TEST_OUTPUT names.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>
#include <liteyuki-comm.h>

#include "ly-runtime-private.h"
#include "ly-wire-private.h"

static int output_fd = -1;

static void G_GNUC_PRINTF (1, 2)
report (const char *format,
        ...)
{
  g_autofree char *line = NULL;
  va_list args;

  if (output_fd < 0)
    output_fd = open (g_getenv ("LY_TEST_OUTPUT"), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (output_fd, >=, 0);

  va_start (args, format);
  line = g_strdup_vprintf (format, args);
  va_end (args);

  /* one write per line, O_APPEND: lines of several children never mix */
  {
    g_autofree char *with_newline = g_strconcat (line, "\n", NULL);
    g_assert_cmpint (write (output_fd, with_newline, strlen (with_newline)), ==, (gssize) strlen (with_newline));
  }
}

/* The raw protocol: a hello, then requests, written with the library's
 * own frame writer but without its runtime. */
static int
flood_control (void)
{
  /* the library took LY_CONTROL_FD out of the environment already */
  int fd = LY_CHILD_CONTROL_FD;
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(GBytes) bytes = NULL;
  guint64 requests = 0;
  gsize size;
  const guint8 *data;

  g_autoptr(GVariant) hello = g_variant_ref_sink (ly_wire_hello_new ("flooder", "control", FALSE));

  ly_wire_writer_append (writer, LY_WIRE_KIND_HELLO, hello);
  bytes = ly_wire_writer_steal_bytes (writer);
  data = g_bytes_get_data (bytes, &size);
  g_assert_cmpint (write (fd, data, size), ==, (gssize) size);
  g_clear_pointer (&bytes, g_bytes_unref);

  /* a batch of 256 requests, written again and again */
  for (guint32 i = 1; i <= 256; i++)
    {
      g_autoptr(GVariant) request = g_variant_ref_sink (g_variant_new ("(usv)", i, "StorageGet",
                                                                       g_variant_new ("(s)", "flood.key")));

      ly_wire_writer_append (writer, LY_WIRE_KIND_MESSAGE, request);
    }
  bytes = ly_wire_writer_steal_bytes (writer);
  data = g_bytes_get_data (bytes, &size);

  for (;;)
    {
      gsize done = 0;

      while (done < size)
        {
          gssize n = write (fd, data + done, size - done);

          if (n < 0 && errno == EINTR)
            continue;
          if (n <= 0)
            {
              report ("cut after %" G_GUINT64_FORMAT " requests: %s", requests, g_strerror (errno));
              return 0;
            }
          done += (gsize) n;
        }
      requests += 256;
    }
}

static G_GNUC_NORETURN void
never_read (void)
{
  g_assert_nonnull (ly_passive_channel ());
  report ("ready");
  for (;;)
    pause ();
}

static int
set_loop (const char *key)
{
  LyStorage *storage = ly_storage_get_default ();

  for (guint32 i = 1; ; i++)
    {
      g_autoptr(GError) error = NULL;

      if (!ly_storage_set (storage, key, g_variant_new_uint32 (i), &error))
        {
          report ("failed: %s", error->message);
          return 1;
        }
      report ("acked %u", i);
    }
}

/* EINTR ------------------------------------------------------------------- */

static volatile gint interrupts;
static volatile gint stop_interrupting;

static void
on_sigusr1 (int signum)
{
  g_atomic_int_inc (&interrupts);
}

static gpointer
interrupter (gpointer data)
{
  pthread_t main_thread = *(pthread_t *) data;

  while (!g_atomic_int_get (&stop_interrupting))
    {
      pthread_kill (main_thread, SIGUSR1);
      g_usleep (20);
    }
  return NULL;
}

static int
eintr_storage (guint count)
{
  LyStorage *storage = ly_storage_get_default ();
  struct sigaction action = { 0 };
  pthread_t main_thread = pthread_self ();
  GThread *thread;

  /* no SA_RESTART: every blocking call sees EINTR */
  action.sa_handler = on_sigusr1;
  sigemptyset (&action.sa_mask);
  sigaction (SIGUSR1, &action, NULL);
  thread = g_thread_new ("interrupter", interrupter, &main_thread);

  for (guint32 i = 1; i <= count; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = NULL;

      if (!ly_storage_set (storage, "eintr.key", g_variant_new_uint32 (i), &error))
        g_error ("set %u: %s", i, error->message);
      value = ly_storage_get (storage, "eintr.key", &error);
      g_assert_no_error (error);
      g_assert_nonnull (value);
      g_assert_cmpuint (g_variant_get_uint32 (value), ==, i);
    }

  g_atomic_int_set (&stop_interrupting, 1);
  g_thread_join (thread);
  report ("eintr ok %u, %d signals", count, g_atomic_int_get (&interrupts));
  return 0;
}

static void
write_all (int           fd,
           const guint8 *data,
           gsize         size)
{
  gsize done = 0;

  while (done < size)
    {
      gssize n = write (fd, data + done, size - done);

      if (n < 0 && errno == EINTR)
        continue;
      g_assert_cmpint (n, >, 0);
      done += (gsize) n;
    }
}

/* The hello a connection starts with, written by hand. */
static void
write_hello (int         fd,
             const char *channel_name)
{
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(GVariant) hello = g_variant_ref_sink (ly_wire_hello_new ("flooder", channel_name, FALSE));
  g_autoptr(GBytes) bytes = NULL;
  const guint8 *data;
  gsize length;

  ly_wire_writer_append (writer, LY_WIRE_KIND_HELLO, hello);
  bytes = ly_wire_writer_steal_bytes (writer);
  data = g_bytes_get_data (bytes, &length);
  write_all (fd, data, length);
}

static gpointer
discard_replies (gpointer data)
{
  int fd = GPOINTER_TO_INT (data);
  guint8 buffer[65536];

  while (read (fd, buffer, sizeof buffer) > 0 || errno == EINTR)
    ;
  return NULL;
}

/* Storage sets as fast as the hub takes them, replies read and
 * dropped: a child that wants more than its share. */
static int
flood_sets (guint seconds)
{
  int fd = LY_CHILD_CONTROL_FD;
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(GBytes) bytes = NULL;
  gint64 end = g_get_monotonic_time () + (gint64) seconds * G_USEC_PER_SEC;
  guint64 sent = 0;
  guint32 serial = 1;
  const guint8 *data;
  gsize length;

  write_hello (fd, "control");
  g_thread_unref (g_thread_new ("replies", discard_replies, GINT_TO_POINTER (fd)));

  while (g_get_monotonic_time () < end)
    {
      g_clear_pointer (&bytes, g_bytes_unref);
      for (guint i = 0; i < 256; i++, serial++)
        {
          g_autoptr(GVariant) request =
            g_variant_ref_sink (g_variant_new ("(usv)", serial, "StorageSet",
                                               g_variant_new ("(sv)", "flood.key", g_variant_new_uint32 (serial))));

          ly_wire_writer_append (writer, LY_WIRE_KIND_MESSAGE, request);
        }
      bytes = ly_wire_writer_steal_bytes (writer);
      data = g_bytes_get_data (bytes, &length);
      write_all (fd, data, length);
      sent += 256;
    }

  report ("flood sets %" G_GUINT64_FORMAT, sent);
  return 0;
}

/* Many small messages on the data channel, for the hub that never
 * takes them: what they cost it must stay within its bound. */
static int
flood_data (gsize size)
{
  int fd = LY_CHILD_ACTIVE_FD;
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(GBytes) bytes = NULL;
  g_autofree guint8 *payload = g_malloc0 (MAX (size, 1));
  g_autoptr(GVariant) message = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, payload, size, 1));
  const guint8 *data;
  gsize length, done = 0;
  guint64 sent = 0;
  gint64 stalled_since = 0;

  write_hello (fd, "flood-active");
  for (guint i = 0; i < 4096; i++)
    ly_wire_writer_append (writer, LY_WIRE_KIND_MESSAGE, message);
  bytes = ly_wire_writer_steal_bytes (writer);
  data = g_bytes_get_data (bytes, &length);
  g_unix_set_fd_nonblocking (fd, TRUE, NULL);

  for (;;)
    {
      gssize n = write (fd, data + done, length - done);

      if (n > 0)
        {
          stalled_since = 0;
          done += (gsize) n;
          if (done == length)
            {
              done = 0;
              sent += 4096;
            }
          continue;
        }
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        {
          report ("flood cut after %" G_GUINT64_FORMAT ": %s", sent, g_strerror (errno));
          return 0;
        }
      if (stalled_since == 0)
        stalled_since = g_get_monotonic_time ();
      else if (g_get_monotonic_time () - stalled_since > G_USEC_PER_SEC)
        break;
      g_usleep (1000);
    }

  report ("flood stalled after %" G_GUINT64_FORMAT, sent);
  for (;;)
    pause ();
}

/* Many requests in one write, as a program that starts many
 * asynchronous calls at once sends them: every one must be answered,
 * however few the hub takes per turn. */
static int
pipeline (guint n)
{
  int fd = LY_CHILD_CONTROL_FD;
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(LyWireReader) reader = ly_wire_reader_new (1024 * 1024);
  g_autoptr(GVariant) hello = g_variant_ref_sink (ly_wire_hello_new ("pipeliner", "control", FALSE));
  g_autoptr(GBytes) bytes = NULL;
  struct timeval slice = { 5, 0 };
  const guint8 *data;
  gsize length;
  guint replies = 0;

  ly_wire_writer_append (writer, LY_WIRE_KIND_HELLO, hello);
  for (guint32 serial = 1; serial <= n; serial++)
    {
      g_autoptr(GVariant) request = g_variant_ref_sink (g_variant_new ("(usv)", serial, "StorageGet",
                                                                       g_variant_new ("(s)", "pipeline.key")));

      ly_wire_writer_append (writer, LY_WIRE_KIND_MESSAGE, request);
    }
  bytes = ly_wire_writer_steal_bytes (writer);
  data = g_bytes_get_data (bytes, &length);
  write_all (fd, data, length);

  g_assert_cmpint (setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof slice), ==, 0);
  while (replies < n)
    {
      gsize space_size;
      guint8 *space = ly_wire_reader_get_space (reader, &space_size);
      gssize got = read (fd, space, space_size);
      LyWireKind kind;
      GVariant *value;

      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        {
          report ("pipeline stalled after %u replies", replies);
          return 1;
        }
      ly_wire_reader_commit (reader, (gsize) got);
      while (ly_wire_reader_next (reader, &kind, &value, NULL) == LY_WIRE_FRAME)
        {
          /* the hub's hello, then replies (ubv) */
          if (kind == LY_WIRE_KIND_MESSAGE && g_variant_is_of_type (value, G_VARIANT_TYPE ("(ubv)")))
            replies++;
          g_variant_unref (value);
        }
    }

  report ("pipelined %u replies", replies);
  return 0;
}

int
main (int   argc,
      char *argv[])
{
  const char *mode = argc > 1 ? argv[1] : "";

  signal (SIGPIPE, SIG_IGN);

  if (g_str_equal (mode, "flood-control"))
    return flood_control ();
  if (g_str_equal (mode, "flood-sets") && argc > 2)
    return flood_sets ((guint) atoi (argv[2]));
  if (g_str_equal (mode, "flood-data") && argc > 2)
    return flood_data ((gsize) atoi (argv[2]));
  if (g_str_equal (mode, "never-read"))
    never_read ();
  if (g_str_equal (mode, "set-loop") && argc > 2)
    return set_loop (argv[2]);
  if (g_str_equal (mode, "set-loop-orphan") && argc > 2)
    {
      prctl (PR_SET_PDEATHSIG, 0);
      /* into the hub's own group, which nobody kills with it */
      if (setpgid (0, getpgid (getppid ())) < 0)
        g_error ("setpgid: %s", g_strerror (errno));
      report ("orphan-to-be %d", (int) getpid ());
      return set_loop (argv[2]);
    }
  if (g_str_equal (mode, "eintr-storage") && argc > 2)
    return eintr_storage ((guint) atoi (argv[2]));
  if (g_str_equal (mode, "pipeline") && argc > 2)
    return pipeline ((guint) atoi (argv[2]));

  g_printerr ("usage: %s flood-control | flood-sets SECONDS | flood-data SIZE | never-read | set-loop[-orphan] KEY | eintr-storage N | pipeline N\n", argv[0]);
  return 2;
}
