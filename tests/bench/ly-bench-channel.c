/* ly-bench-channel.c: channel throughput and round trip between two
 * processes, against a raw socketpair in C and Python's
 * multiprocessing.Pipe() measured in the same run.
 *
 * Usage: ly-bench-channel [--quick] [--python PATH]
 *
 * Every figure is the median of three runs.  Throughput is one way: the
 * sender sends N messages, the receiver takes every one and answers
 * once at the end; the time runs from the first send to that answer.
 * A round trip is a message and its echo, one at a time.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liteyuki-comm.h>

#define CHILD_FD 3
#define RAW_BUFFER (256 * 1024)

typedef enum
{
  KIND_PASSIVE,
  KIND_ACTIVE,
  KIND_RAW,
  KIND_PIPE,
} Kind;

static const char *kind_names[] = { "passive", "active", "raw", "pipe" };

typedef enum
{
  WORK_THROUGHPUT,
  WORK_ROUNDTRIP,
} Work;

static char *self_path;
static const char *python_path = "/usr/bin/python3";
static char *pipe_script;

/* Helpers ---------------------------------------------------------------- */

/* What the messages hold: bytes, or text the receiver must validate. */
typedef enum
{
  PAYLOAD_BYTES,
  PAYLOAD_ASCII,
  PAYLOAD_CJK,
} Payload;

static Payload payload_kind = PAYLOAD_BYTES;

/* The sender's memfd-threshold (the parent sends; the default: 0,
 * inline); the memfd row sets 64 KiB. */
static gsize memfd_threshold = LY_CHANNEL_DEFAULT_MEMFD_THRESHOLD;

/* A string of @size bytes in all (its NUL too) of @unit repeated. */
static GVariant *
text_payload_new (gsize       size,
                  const char *unit)
{
  gsize unit_length = strlen (unit), length = 0;
  char *text = g_malloc (size);

  while (length + unit_length < size)
    {
      memcpy (text + length, unit, unit_length);
      length += unit_length;
    }
  memset (text + length, 'x', size - 1 - length);
  text[size - 1] = '\0';
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_STRING, text, size,
                                                      TRUE, g_free, text));
}

static GVariant *
payload_new (gsize size)
{
  guint8 *data;

  if (payload_kind == PAYLOAD_ASCII)
    return text_payload_new (size, "NoneBot plugin event text. ");
  if (payload_kind == PAYLOAD_CJK)
    return text_payload_new (size, "轻雪机器人，一个基于 NoneBot2 的机器人框架。");

  data = g_malloc (size);
  memset (data, 0x5a, size);
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, size,
                                                      TRUE, g_free, data));
}

static void
write_all (int         fd,
           const void *data,
           gsize       size)
{
  const guint8 *p = data;

  while (size > 0)
    {
      gssize n = write (fd, p, size);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        g_error ("write: %s", g_strerror (errno));
      p += n;
      size -= n;
    }
}

static void
read_all (int    fd,
          void  *data,
          gsize  size)
{
  guint8 *p = data;

  while (size > 0)
    {
      gssize n = read (fd, p, size);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        g_error ("read: %s", n == 0 ? "end of stream" : g_strerror (errno));
      p += n;
      size -= n;
    }
}

/* The child side --------------------------------------------------------- */

typedef struct
{
  LyChannel *channel;
  guint      count;
  guint      seen;
  GMainLoop *loop;
} ChildState;

static void
child_count (LyChannel  *channel,
             GVariant   *message,
             ChildState *state)
{
  if (++state->seen == state->count)
    ly_channel_send (channel, g_variant_new_uint32 (state->seen), NULL);
}

static void
child_echo (LyChannel  *channel,
            GVariant   *message,
            ChildState *state)
{
  ly_channel_send (channel, message, NULL);
}

static void
child_closed (LyChannel    *channel,
              const GError *error,
              ChildState   *state)
{
  g_main_loop_quit (state->loop);
}

static int
run_child_ours (Kind  kind,
                Work  work,
                guint count)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = ly_channel_new_for_fd ("bench", CHILD_FD, &error);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  ChildState state = { channel, count, 0, loop };

  g_assert_no_error (error);
  ly_channel_set_max_message_size (channel, 64 * 1024 * 1024);

  if (kind == KIND_PASSIVE)
    {
      g_signal_connect (channel, "received",
                        work == WORK_THROUGHPUT ? G_CALLBACK (child_count) : G_CALLBACK (child_echo),
                        &state);
      g_signal_connect (channel, "closed", G_CALLBACK (child_closed), &state);
      g_main_loop_run (loop);
      return 0;
    }

  for (;;)
    {
      g_autoptr(GVariant) message = ly_channel_receive (channel, NULL, NULL);

      if (message == NULL)
        return 0;
      if (work == WORK_ROUNDTRIP)
        ly_channel_send (channel, message, NULL);
      else if (++state.seen == count)
        {
          ly_channel_send (channel, g_variant_new_uint32 (state.seen), NULL);
          ly_channel_flush (channel, NULL, NULL);
        }
    }
}

/* Raw: length-prefixed records, written and read in 256 KiB batches. */
static int
run_child_raw (Work  work,
               gsize size,
               guint count)
{
  g_autofree guint8 *buffer = g_malloc (MAX (RAW_BUFFER, size + 4));

  if (work == WORK_ROUNDTRIP)
    {
      /* one read and one write per message when it fits a syscall */
      for (guint i = 0; i < count; i++)
        {
          read_all (CHILD_FD, buffer, 4 + size);
          write_all (CHILD_FD, buffer, 4 + size);
        }
      return 0;
    }

  {
    gsize have = 0;
    guint seen = 0;

    while (seen < count)
      {
        gsize offset = 0;
        gssize n = read (CHILD_FD, buffer + have, MAX (RAW_BUFFER, size + 4) - have);

        if (n <= 0)
          g_error ("raw child read: %s", g_strerror (errno));
        have += n;

        /* walk the complete records, as a real reader parses them */
        while (have - offset >= 4)
          {
            guint32 length;

            memcpy (&length, buffer + offset, 4);
            if (have - offset < 4 + length)
              break;
            offset += 4 + length;
            seen++;
          }
        memmove (buffer, buffer + offset, have - offset);
        have -= offset;
      }
    write_all (CHILD_FD, &seen, 4);
  }

  return 0;
}

/* The parent side -------------------------------------------------------- */

static GSubprocess *
spawn_child (int        *parent_fd,
             Kind        kind,
             Work        work,
             gsize       size,
             guint       count)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autoptr(GError) error = NULL;
  g_autofree char *size_s = g_strdup_printf ("%" G_GSIZE_FORMAT, size);
  g_autofree char *count_s = g_strdup_printf ("%u", count);
  const char *work_s = work == WORK_THROUGHPUT ? "throughput" : "roundtrip";
  GSubprocess *child;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  g_subprocess_launcher_take_fd (launcher, fds[1], CHILD_FD);

  if (kind == KIND_PIPE)
    child = g_subprocess_launcher_spawn (launcher, &error, python_path, pipe_script,
                                         work_s, size_s, count_s, NULL);
  else
    child = g_subprocess_launcher_spawn (launcher, &error, self_path, "child", kind_names[kind],
                                         work_s, size_s, count_s, NULL);
  g_assert_no_error (error);

  *parent_fd = fds[0];
  return child;
}

typedef struct
{
  LyChannel *channel;
  GVariant  *payload;
  guint      count;
  guint      sent;
  guint      done;
  GMainLoop *loop;
} ParentState;

static gboolean parent_send_batch (gpointer user_data);

static void
parent_sent_async (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  ly_channel_send_finish (LY_CHANNEL (source), result, &error);
  g_assert_no_error (error);
  g_idle_add (parent_send_batch, user_data);
}

/* Sends from the main loop, as an application does: a batch per
 * dispatch; when the queue is full, one send_async() waits for room and
 * the batches go on when it is written. */
static gboolean
parent_send_batch (gpointer user_data)
{
  ParentState *state = user_data;

  for (guint i = 0; i < 4096 && state->sent < state->count; i++)
    {
      if (!ly_channel_send (state->channel, state->payload, NULL))
        {
          ly_channel_send_async (state->channel, state->payload, NULL, parent_sent_async, state);
          state->sent++;
          return G_SOURCE_REMOVE;
        }
      state->sent++;
    }

  return state->sent < state->count ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
parent_got_ack (LyChannel   *channel,
                GVariant    *message,
                ParentState *state)
{
  state->done = g_variant_get_uint32 (message);
  g_main_loop_quit (state->loop);
}

static void
parent_got_echo (LyChannel   *channel,
                 GVariant    *message,
                 ParentState *state)
{
  if (++state->done == state->count)
    g_main_loop_quit (state->loop);
  else
    ly_channel_send (channel, state->payload, NULL);
}

/* Returns seconds for the work. */
static double
measure_ours (Kind  kind,
              Work  work,
              gsize size,
              guint count)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GVariant) payload = payload_new (size);
  g_autoptr(GSubprocess) child = NULL;
  g_autoptr(LyChannel) channel = NULL;
  ParentState state = { NULL, payload, count, 0, 0, loop };
  gint64 start, end;
  int fd;

  child = spawn_child (&fd, kind, work, size, count);
  channel = ly_channel_new_for_fd ("bench", fd, &error);
  g_assert_no_error (error);
  ly_channel_set_max_message_size (channel, 64 * 1024 * 1024);
  ly_channel_set_memfd_threshold (channel, memfd_threshold);
  ly_channel_set_max_queued_bytes (channel, MAX (8 * 1024 * 1024, 4 * size));
  state.channel = channel;

  /* the hellos cross before the clock starts */
  ly_channel_flush (channel, NULL, &error);
  g_assert_no_error (error);

  start = g_get_monotonic_time ();
  if (work == WORK_THROUGHPUT)
    {
      g_signal_connect (channel, "received", G_CALLBACK (parent_got_ack), &state);
      g_idle_add (parent_send_batch, &state);
      g_main_loop_run (loop);
      g_assert_cmpuint (state.done, ==, count);
    }
  else if (kind == KIND_PASSIVE)
    {
      g_signal_connect (channel, "received", G_CALLBACK (parent_got_echo), &state);
      ly_channel_send (channel, payload, NULL);
      g_main_loop_run (loop);
    }
  else
    {
      for (guint i = 0; i < count; i++)
        {
          g_autoptr(GVariant) echo = NULL;

          ly_channel_send (channel, payload, &error);
          g_assert_no_error (error);
          echo = ly_channel_receive (channel, NULL, &error);
          g_assert_no_error (error);
        }
    }
  end = g_get_monotonic_time ();

  ly_channel_close (channel);
  ly_channel_flush (channel, NULL, NULL);
  g_subprocess_wait_check (child, NULL, &error);
  g_assert_no_error (error);

  return (end - start) / 1e6;
}

static double
measure_raw (Work  work,
             gsize size,
             guint count)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) child = NULL;
  g_autofree guint8 *payload = g_malloc0 (size);
  g_autofree guint8 *buffer = g_malloc (MAX (RAW_BUFFER, size + 4));
  guint32 length = size;
  gint64 start, end;
  int fd;

  child = spawn_child (&fd, KIND_RAW, work, size, count);
  start = g_get_monotonic_time ();

  if (work == WORK_ROUNDTRIP)
    {
      memcpy (buffer, &length, 4);
      memcpy (buffer + 4, payload, size);
      for (guint i = 0; i < count; i++)
        {
          write_all (fd, buffer, 4 + size);
          read_all (fd, buffer, 4 + size);
        }
    }
  else
    {
      gsize fill = 0;
      guint32 seen;

      for (guint i = 0; i < count; i++)
        {
          if (size + 4 > RAW_BUFFER)
            {
              struct iovec iov[2] = { { &length, 4 }, { payload, size } };
              gsize total = 4 + size;
              gssize n = writev (fd, iov, 2);

              g_assert_cmpint (n, >, 0);
              if ((gsize) n < total)
                write_all (fd, n < 4 ? (guint8 *) &length + n : payload + (n - 4),
                           n < 4 ? (gsize) (4 - n) : total - n);
              if (n < 4)
                write_all (fd, payload, size);
              continue;
            }
          if (fill + 4 + size > RAW_BUFFER)
            {
              write_all (fd, buffer, fill);
              fill = 0;
            }
          memcpy (buffer + fill, &length, 4);
          memcpy (buffer + fill + 4, payload, size);
          fill += 4 + size;
        }
      write_all (fd, buffer, fill);
      read_all (fd, &seen, 4);
      g_assert_cmpuint (seen, ==, count);
    }

  end = g_get_monotonic_time ();
  close (fd);
  g_subprocess_wait_check (child, NULL, &error);
  g_assert_no_error (error);

  return (end - start) / 1e6;
}

/* The Python child does the timing of multiprocessing.Pipe() itself and
 * prints the seconds. */
static double
measure_pipe (Work  work,
              gsize size,
              guint count)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) child = NULL;
  g_autofree char *out = NULL;
  g_autofree char *size_s = g_strdup_printf ("%" G_GSIZE_FORMAT, size);
  g_autofree char *count_s = g_strdup_printf ("%u", count);

  child = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error, python_path, pipe_script,
                            work == WORK_THROUGHPUT ? "throughput" : "roundtrip", size_s, count_s, NULL);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (child, NULL, NULL, &out, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_successful (child));

  return g_ascii_strtod (out, NULL);
}

static int
compare_doubles (gconstpointer a,
                 gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median_of_three (Kind  kind,
                 Work  work,
                 gsize size,
                 guint count)
{
  double runs[3];

  for (guint i = 0; i < 3; i++)
    {
      if (kind == KIND_RAW)
        runs[i] = measure_raw (work, size, count);
      else if (kind == KIND_PIPE)
        runs[i] = measure_pipe (work, size, count);
      else
        runs[i] = measure_ours (kind, work, size, count);
    }
  qsort (runs, 3, sizeof runs[0], compare_doubles);

  return runs[1];
}

static const char *
size_label (gsize size)
{
  if (size >= 1024 * 1024)
    return size == 1024 * 1024 ? "1 MiB" : "large";
  if (size >= 1024)
    return "4 KiB";
  return "32 B";
}

typedef struct
{
  gsize size;
  guint throughput_count;
  guint roundtrip_count;
} SizeSpec;

int
main (int   argc,
      char *argv[])
{
  gboolean quick = FALSE;
  gint64 only_size = 0;
  char *only_peer = NULL;
  GOptionEntry entries[] = {
    { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick, "Fewer messages (a smoke run)", NULL },
    { "size", 's', 0, G_OPTION_ARG_INT64, &only_size, "Measure only this message size", "BYTES" },
    { "peer", 'p', 0, G_OPTION_ARG_STRING, &only_peer, "Measure only this peer (passive, active, raw, pipe)", "PEER" },
    { "python", 0, 0, G_OPTION_ARG_FILENAME, &python_path, "Python for the Pipe() peer", "PATH" },
    { NULL }
  };
  SizeSpec sizes[] = {
    { 32, 2000000, 20000 },
    { 4096, 200000, 10000 },
    { 1024 * 1024, 400, 300 },
  };
  Kind kinds[] = { KIND_PASSIVE, KIND_ACTIVE, KIND_RAW, KIND_PIPE };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  double pipe_32_throughput = 0, ours_32_throughput = 0;
  double raw_32_rtt = 0, ours_32_rtt = 0;
  double raw_1m_throughput = 0, ours_1m_throughput = 0;

  if (argc >= 6 && g_str_equal (argv[1], "child"))
    {
      Kind kind = g_str_equal (argv[2], "passive") ? KIND_PASSIVE :
                  g_str_equal (argv[2], "active") ? KIND_ACTIVE : KIND_RAW;
      Work work = g_str_equal (argv[3], "throughput") ? WORK_THROUGHPUT : WORK_ROUNDTRIP;
      gsize size = g_ascii_strtoull (argv[4], NULL, 10);
      guint count = g_ascii_strtoull (argv[5], NULL, 10);

      if (kind == KIND_RAW)
        return run_child_raw (work, size, count);
      return run_child_ours (kind, work, count);
    }

  context = g_option_context_new ("— channel throughput and round trip");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }

  self_path = g_file_read_link ("/proc/self/exe", NULL);
  pipe_script = g_build_filename (g_getenv ("LY_BENCH_SRCDIR") ? g_getenv ("LY_BENCH_SRCDIR") : BENCH_SRCDIR,
                                  "bench-pipe.py", NULL);

  g_print ("liteyuki-comm channel benchmark: medians of 3 runs, one process to another\n");
  g_print ("passive = LyChannel `received` signal; active = ly_channel_receive(); "
           "raw = C socketpair, length-prefixed, 256 KiB batches; pipe = Python multiprocessing.Pipe()\n\n");
  g_print ("%-7s %-8s %16s %12s %14s\n", "size", "peer", "one-way msg/s", "MB/s", "round trip µs");

  for (gsize s = 0; s < G_N_ELEMENTS (sizes); s++)
    {
      if (only_size > 0 && (gsize) only_size != sizes[s].size)
        continue;
      for (gsize k = 0; k < G_N_ELEMENTS (kinds); k++)
        {
          guint tcount = quick ? MAX (sizes[s].throughput_count / 50, 20) : sizes[s].throughput_count;
          guint rcount = quick ? MAX (sizes[s].roundtrip_count / 50, 10) : sizes[s].roundtrip_count;
          double t, r, rate, rtt;

          if (only_peer != NULL && !g_str_equal (only_peer, kind_names[kinds[k]]))
            continue;

          if (kinds[k] == KIND_PIPE)
            tcount = MAX (tcount / 10, 10);

          t = median_of_three (kinds[k], WORK_THROUGHPUT, sizes[s].size, tcount);
          r = median_of_three (kinds[k], WORK_ROUNDTRIP, sizes[s].size, rcount);
          rate = tcount / t;
          rtt = r / rcount * 1e6;

          g_print ("%-7s %-8s %16.0f %12.1f %14.1f\n", size_label (sizes[s].size), kind_names[kinds[k]],
                   rate, rate * sizes[s].size / 1e6, rtt);

          if (sizes[s].size == 32 && kinds[k] == KIND_PIPE)
            pipe_32_throughput = rate;
          if (sizes[s].size == 32 && kinds[k] == KIND_PASSIVE)
            {
              ours_32_throughput = rate;
              ours_32_rtt = rtt;
            }
          if (sizes[s].size == 32 && kinds[k] == KIND_RAW)
            raw_32_rtt = rtt;
          if (sizes[s].size == 1024 * 1024 && kinds[k] == KIND_RAW)
            raw_1m_throughput = rate;
          if (sizes[s].size == 1024 * 1024 && kinds[k] == KIND_PASSIVE)
            ours_1m_throughput = rate;
        }
    }

  if (raw_1m_throughput > 0)
    {
      static const Payload texts[] = { PAYLOAD_ASCII, PAYLOAD_CJK };
      static const char *const text_names[] = { "s, ASCII", "s, Chinese" };
      guint tcount = quick ? 20 : sizes[2].throughput_count;

      {
        guint tcount_inline = quick ? 20 : sizes[2].throughput_count;  /* one way, then round trips */
        double rate;

        double rtt;

        memfd_threshold = 64 * 1024;
        rate = tcount_inline / median_of_three (KIND_PASSIVE, WORK_THROUGHPUT, 1024 * 1024, tcount_inline);
        rtt = median_of_three (KIND_PASSIVE, WORK_ROUNDTRIP, 1024 * 1024, MAX (tcount_inline / 4, 10)) /
              MAX (tcount_inline / 4, 10) * 1e6;
        memfd_threshold = LY_CHANNEL_DEFAULT_MEMFD_THRESHOLD;
        g_print ("\n1 MiB `ay` passive in sealed memfds (memfd-threshold 64 KiB): one way %.1f MB/s, %.2fx raw C; "
                 "round trip %.1f µs\n", rate * 1024 * 1024 / 1e6, rate / raw_1m_throughput, rtt);
      }
      g_print ("\n1 MiB strings (validated on receipt), passive one way:\n");
      for (gsize i = 0; i < G_N_ELEMENTS (texts); i++)
        {
          double rate;

          payload_kind = texts[i];
          rate = tcount / median_of_three (KIND_PASSIVE, WORK_THROUGHPUT, 1024 * 1024, tcount);
          g_print ("  %-12s %10.1f MB/s  %5.2fx raw C  (bar: >= 0.6x)\n",
                   text_names[i], rate * 1024 * 1024 / 1e6, rate / raw_1m_throughput);
        }
      payload_kind = PAYLOAD_BYTES;
    }

  g_print ("\nRatios (same run):\n");
  g_print ("  32 B one-way passive / Pipe():        %6.2fx  (bar: >= 8x)\n",
           ours_32_throughput / pipe_32_throughput);
  g_print ("  32 B round trip passive / raw C:      %6.2fx  (bar: <= 1.5x)\n",
           ours_32_rtt / raw_32_rtt);
  g_print ("  1 MiB one-way passive / raw C:        %6.0f%%  (bar: >= 40%%)\n",
           100.0 * ours_1m_throughput / raw_1m_throughput);

  return 0;
}
