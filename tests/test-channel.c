/* test-channel.c: LyChannel in one process and against a peer process
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE  /* memfd_create() */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib/gstdio.h>
#include <glib-unix.h>

#include "ly-test-util.h"

typedef struct
{
  LyChannel *a;
  LyChannel *b;
  GPtrArray *received;
  guint      n_closed;
  GError    *closed_error;
} Pair;

static void
pair_setup (Pair          *pair,
            gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  ly_channel_new_pair ("test", &pair->a, &pair->b, &error);
  g_assert_no_error (error);
  pair->received = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
}

static void
pair_teardown (Pair          *pair,
               gconstpointer  data)
{
  g_clear_object (&pair->a);
  g_clear_object (&pair->b);
  g_ptr_array_unref (pair->received);
  g_clear_error (&pair->closed_error);
  /* let lingering closes finish */
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
collect_message (LyChannel *channel,
                 GVariant  *message,
                 Pair      *pair)
{
  g_ptr_array_add (pair->received, g_variant_ref (message));
}

static void
collect_closed (LyChannel    *channel,
                const GError *error,
                Pair         *pair)
{
  pair->n_closed++;
  g_clear_error (&pair->closed_error);
  if (error != NULL)
    pair->closed_error = g_error_copy (error);
}

static GPtrArray *
sample_values (void)
{
  GPtrArray *values = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  const char *texts[] = {
    "true", "false", "byte 0x00", "byte 0xff", "int16 -32768", "uint16 65535",
    "int32 -2147483648", "uint32 4294967295", "int64 -9223372036854775808",
    "uint64 18446744073709551615", "handle 7", "3.14159", "-0.0", "1e308",
    "''", "'hello'", "'多字节 UTF-8 ✓'", "objectpath '/icu/liteyuki/Comm1'", "signature 'a{sv}'",
    "<42>", "<<'nested'>>", "just 5", "@mi nothing", "just @ms nothing", "@ms 'maybe'",
    "@ay []", "@as []", "@a{sv} {}", "@aay [[], [1], [2, 3]]", "b'bytes'",
    "[1, 2, 3]", "['a', '', 'c']", "{'a': <1>, 'b': <'two'>, 'c': <[3.0]>}",
    "{1: 'one', 2: 'two'}", "@a(ii) [(1, 2), (3, 4)]", "()", "(1,)", "((1, 'a'), [(true, @mv nothing)])",
    "(0, ('', ([<(1, 2)>], {'k': ([''], @a{ss} {})})))",
    "[{'x': [<@a{sv} {}>]}]", "@(yqut) (1, 2, 3, 4)", "@ad [0.5, 1.5]",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr(GError) error = NULL;
      GVariant *value = g_variant_parse (NULL, texts[i], NULL, NULL, &error);

      g_assert_no_error (error);
      g_ptr_array_add (values, value);
    }

  return values;
}

static void
assert_same_values (GPtrArray *expected,
                    GPtrArray *got)
{
  g_assert_cmpuint (expected->len, ==, got->len);
  for (guint i = 0; i < expected->len; i++)
    {
      GVariant *e = g_ptr_array_index (expected, i);
      GVariant *g = g_ptr_array_index (got, i);

      g_assert_cmpstr (g_variant_get_type_string (e), ==, g_variant_get_type_string (g));
      if (!g_variant_equal (e, g))
        {
          g_autofree char *es = g_variant_print (e, TRUE);
          g_autofree char *gs = g_variant_print (g, TRUE);

          g_error ("message %u: sent %s, received %s", i, es, gs);
        }
    }
}

/* Every kind of GVariant crosses unchanged, both ways. */
static void
test_roundtrip_kinds (Pair          *pair,
                      gconstpointer  data)
{
  g_autoptr(GPtrArray) values = sample_values ();
  g_autoptr(GPtrArray) back = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GError) error = NULL;

  g_signal_connect (pair->b, "received", G_CALLBACK (collect_message), pair);

  for (guint i = 0; i < values->len; i++)
    {
      ly_channel_send (pair->a, g_ptr_array_index (values, i), &error);
      g_assert_no_error (error);
    }
  ly_test_run_until_count (&pair->received->len, values->len, 10);
  assert_same_values (values, pair->received);
  g_assert_cmpint (ly_channel_get_mode (pair->b), ==, LY_CHANNEL_MODE_PASSIVE);

  /* and back, received actively */
  for (guint i = 0; i < values->len; i++)
    {
      ly_channel_send (pair->b, g_ptr_array_index (values, i), &error);
      g_assert_no_error (error);
    }
  for (guint i = 0; i < values->len; i++)
    {
      GVariant *message = ly_channel_receive (pair->a, NULL, &error);

      g_assert_no_error (error);
      g_ptr_array_add (back, message);
    }
  assert_same_values (values, back);
  g_assert_cmpint (ly_channel_get_mode (pair->a), ==, LY_CHANNEL_MODE_ACTIVE);
}

static GVariant *
pattern_bytes (gsize size)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (i * 131 + (i >> 16));

  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, size, TRUE, g_free, data);
}

/* 10 MiB in one message, passive and active, with small ones around it. */
static void
test_large_message (Pair          *pair,
                    gconstpointer  data)
{
  g_autoptr(GVariant) big = g_variant_ref_sink (pattern_bytes (10 * 1024 * 1024));
  g_autoptr(GVariant) odd = g_variant_ref_sink (pattern_bytes (65537));
  g_autoptr(GPtrArray) expected = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GError) error = NULL;

  g_ptr_array_add (expected, g_variant_ref_sink (g_variant_new_string ("before")));
  g_ptr_array_add (expected, g_variant_ref (big));
  g_ptr_array_add (expected, g_variant_ref (odd));
  g_ptr_array_add (expected, g_variant_ref_sink (g_variant_new ("(sv)", "after", g_variant_new_int32 (1))));

  g_signal_connect (pair->b, "received", G_CALLBACK (collect_message), pair);
  for (guint i = 0; i < expected->len; i++)
    {
      ly_channel_send (pair->a, g_ptr_array_index (expected, i), &error);
      g_assert_no_error (error);
    }
  ly_test_run_until_count (&pair->received->len, expected->len, 30);
  assert_same_values (expected, pair->received);

  /* the other way, received actively while nothing runs the loop */
  for (guint i = 0; i < expected->len; i++)
    {
      g_autoptr(GVariant) message = NULL;

      ly_channel_send (pair->b, g_ptr_array_index (expected, i), &error);
      g_assert_no_error (error);
      message = ly_channel_receive (pair->a, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (g_variant_equal (message, g_ptr_array_index (expected, i)));
    }
}

/* @size bytes of a pattern that @seed makes different */
static GVariant *
seeded_bytes (gsize size,
              guint seed)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (i * 131 + seed * 17 + (i >> 12));
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, size, TRUE,
                                                      g_free, data));
}

/* The buffers of large messages are kept for the next ones (a spare):
 * messages still held keep theirs, and each arrives whole, whatever the
 * order of sizes. */
static void
test_large_messages_reuse (Pair          *pair,
                           gconstpointer  data)
{
  static const gsize sizes[] = {
    1 << 20, 1 << 20, 300 * 1024, 2 << 20, 64 * 1024, 1 << 20, 17 << 20, 1 << 20, 200 * 1024,
  };
  g_autoptr(GPtrArray) sent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GPtrArray) held = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GError) error = NULL;

  ly_channel_set_max_message_size (pair->a, 32 << 20);
  ly_channel_set_max_message_size (pair->b, 32 << 20);
  ly_channel_set_max_queued_bytes (pair->a, 64 << 20);
  for (guint round = 0; round < 2; round++)
    for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
      {
        GVariant *message = seeded_bytes (sizes[i], round * 100 + i);
        g_autoptr(GVariant) received = NULL;

        g_ptr_array_add (sent, message);
        g_assert_true (ly_channel_send (pair->a, message, &error));
        g_assert_no_error (error);
        received = ly_channel_receive (pair->b, NULL, &error);
        g_assert_no_error (error);
        g_assert_true (g_variant_equal (received, message));
        if (i % 2 == 0)
          g_ptr_array_add (held, g_variant_ref (received));
      }

  /* what was held is intact after everything that came later */
  for (guint i = 0, h = 0; i < sent->len; i++)
    if (i % G_N_ELEMENTS (sizes) % 2 == 0)
      g_assert_true (g_variant_equal (g_ptr_array_index (held, h++), g_ptr_array_index (sent, i)));
}

/* received::s gets strings only; received::i integers; received all. */
static void
count_into (LyChannel *channel,
            GVariant  *message,
            guint     *counter)
{
  (*counter)++;
}

static void
test_detail_filter (Pair          *pair,
                    gconstpointer  data)
{
  guint n_strings = 0, n_ints = 0, n_dicts = 0, n_all = 0;
  g_autoptr(GError) error = NULL;
  const char *texts[] = { "'one'", "1", "'two'", "['x']", "{'k': <1>}", "2", "'three'", "@mi 3" };

  g_signal_connect (pair->b, "received::s", G_CALLBACK (count_into), &n_strings);
  g_signal_connect (pair->b, "received::i", G_CALLBACK (count_into), &n_ints);
  g_signal_connect (pair->b, "received::a{sv}", G_CALLBACK (count_into), &n_dicts);
  g_signal_connect (pair->b, "received", G_CALLBACK (count_into), &n_all);

  for (gsize i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr(GVariant) message = g_variant_parse (NULL, texts[i], NULL, NULL, NULL);

      ly_channel_send (pair->a, message, &error);
      g_assert_no_error (error);
    }

  ly_test_run_until_count (&n_all, G_N_ELEMENTS (texts), 10);
  g_assert_cmpuint (n_strings, ==, 3);
  g_assert_cmpuint (n_ints, ==, 2);
  g_assert_cmpuint (n_dicts, ==, 1);
  g_assert_cmpuint (n_all, ==, G_N_ELEMENTS (texts));
}

/* 1,000,000 messages from 4 threads: complete and in order per thread. */
#define N_SEND_THREADS 4

typedef struct
{
  LyChannel *channel;
  guint      thread_id;
  guint      count;
} SenderData;

static gpointer
sender_thread (gpointer user_data)
{
  SenderData *sender = user_data;

  for (guint i = 0; i < sender->count; i++)
    ly_test_send_waiting (sender->channel, g_variant_new ("(uu)", sender->thread_id, i));

  return NULL;
}

typedef struct
{
  guint next[N_SEND_THREADS];
  guint total;
} OrderCheck;

static void
check_order (LyChannel  *channel,
             GVariant   *message,
             OrderCheck *check)
{
  guint thread_id, seq;

  g_variant_get (message, "(uu)", &thread_id, &seq);
  g_assert_cmpuint (thread_id, <, N_SEND_THREADS);
  g_assert_cmpuint (seq, ==, check->next[thread_id]);
  check->next[thread_id]++;
  check->total++;
}

static void
test_threads_order (Pair          *pair,
                    gconstpointer  data)
{
  guint per_thread = ly_test_scaled (1000000) / N_SEND_THREADS;
  SenderData senders[N_SEND_THREADS];
  GThread *threads[N_SEND_THREADS];
  OrderCheck check = { { 0, }, 0 };

  /* a small queue, so the senders meet FULL and back off */
  ly_channel_set_max_queued_bytes (pair->a, 256 * 1024);
  g_signal_connect (pair->b, "received::(uu)", G_CALLBACK (check_order), &check);

  for (guint i = 0; i < N_SEND_THREADS; i++)
    {
      senders[i] = (SenderData) { pair->a, i, per_thread };
      threads[i] = g_thread_new ("sender", sender_thread, &senders[i]);
    }

  ly_test_run_until_count (&check.total, per_thread * N_SEND_THREADS, 120);

  for (guint i = 0; i < N_SEND_THREADS; i++)
    {
      g_thread_join (threads[i]);
      g_assert_cmpuint (check.next[i], ==, per_thread);
    }
  g_assert_cmpuint (check.total, ==, per_thread * N_SEND_THREADS);
}

/* A worker thread receives actively while the main thread runs the
 * loop and sends. */
typedef struct
{
  LyChannel *channel;
  guint      count;
  guint      received;
  gboolean   done;
} Receiver;

static gpointer
receiver_thread (gpointer user_data)
{
  Receiver *receiver = user_data;

  for (guint i = 0; i < receiver->count; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) message = ly_channel_receive (receiver->channel, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (g_variant_get_uint32 (message), ==, i);
      g_atomic_int_inc (&receiver->received);
    }

  g_atomic_int_set (&receiver->done, TRUE);
  g_main_context_wakeup (NULL);
  return NULL;
}

static gboolean
send_some (gpointer user_data)
{
  Pair *pair = user_data;
  static guint next = 0;

  for (guint i = 0; i < 100; i++)
    ly_channel_send (pair->a, g_variant_new_uint32 (next++), NULL);

  return next < 10000 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
test_active_thread (Pair          *pair,
                    gconstpointer  data)
{
  Receiver receiver = { pair->b, 10000, 0, FALSE };
  GThread *thread = g_thread_new ("receiver", receiver_thread, &receiver);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) timed_out = NULL;

  g_timeout_add (1, send_some, pair);
  ly_test_run_until (&receiver.done, 60);
  g_thread_join (thread);
  g_assert_cmpuint (receiver.received, ==, 10000);
  g_assert_cmpint (ly_channel_get_mode (pair->b), ==, LY_CHANNEL_MODE_ACTIVE);

  /* nothing more comes: a timeout is a clean error */
  timed_out = ly_channel_receive_timeout (pair->b, 50, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_null (timed_out);
}

typedef struct
{
  GPtrArray *got;
  guint      pending;
  GError    *error;
} AsyncReceive;

static void
received_async (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  AsyncReceive *state = user_data;
  GError *error = NULL;
  GVariant *message = ly_channel_receive_finish (LY_CHANNEL (source), result, &error);

  if (message != NULL)
    g_ptr_array_add (state->got, message);
  else
    {
      g_clear_error (&state->error);
      state->error = error;
    }
  state->pending--;
}

static void
test_receive_async (Pair          *pair,
                    gconstpointer  data)
{
  AsyncReceive state = { g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref), 0, NULL };
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();

  /* several pending receives are served in order */
  for (guint i = 0; i < 3; i++, state.pending++)
    ly_channel_receive_async (pair->b, NULL, received_async, &state);
  for (guint i = 0; i < 3; i++)
    ly_channel_send (pair->a, g_variant_new_uint32 (i), NULL);
  while (state.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (state.error);
  g_assert_cmpuint (state.got->len, ==, 3);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpuint (g_variant_get_uint32 (g_ptr_array_index (state.got, i)), ==, i);

  /* a cancelled receive fails with CANCELLED and takes nothing */
  state.pending++;
  ly_channel_receive_async (pair->b, cancellable, received_async, &state);
  g_cancellable_cancel (cancellable);
  while (state.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&state.error);

  ly_channel_send (pair->a, g_variant_new_uint32 (3), NULL);
  state.pending++;
  ly_channel_receive_async (pair->b, NULL, received_async, &state);
  while (state.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (state.got->len, ==, 4);
  g_assert_cmpuint (g_variant_get_uint32 (g_ptr_array_index (state.got, 3)), ==, 3);

  /* after the peer closes, a pending receive fails with CLOSED */
  state.pending++;
  ly_channel_receive_async (pair->b, NULL, received_async, &state);
  ly_channel_close (pair->a);
  while (state.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (state.error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
  g_clear_error (&state.error);

  g_ptr_array_unref (state.got);
}

/* Signals are emitted in the thread-default context of the thread that
 * created the channel, whichever thread sends. */
typedef struct
{
  LyChannel *sender;
  GThread   *emitted_in;
  GThread   *owner;
  gboolean   ready;
  gboolean   done;
} ContextCheck;

static void
record_thread (LyChannel    *channel,
               GVariant     *message,
               ContextCheck *check)
{
  check->emitted_in = g_thread_self ();
  g_atomic_int_set (&check->done, TRUE);
}

static gpointer
owner_thread (gpointer user_data)
{
  ContextCheck *check = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(LyChannel) receiver = NULL;
  g_autoptr(GError) error = NULL;

  g_main_context_push_thread_default (context);
  ly_channel_new_pair ("context", &check->sender, &receiver, &error);
  g_assert_no_error (error);
  g_signal_connect (receiver, "received", G_CALLBACK (record_thread), check);
  g_atomic_int_set (&check->ready, TRUE);

  while (!g_atomic_int_get (&check->done))
    g_main_context_iteration (context, TRUE);

  g_clear_object (&check->sender);
  g_main_context_pop_thread_default (context);
  return NULL;
}

static void
test_thread_default_context (void)
{
  ContextCheck check = { NULL, };
  g_autoptr(GError) error = NULL;

  check.owner = g_thread_new ("owner", owner_thread, &check);
  while (!g_atomic_int_get (&check.ready))
    g_usleep (1000);

  /* sent from the main thread, emitted in the owner thread */
  g_assert_true (ly_channel_send (check.sender, g_variant_new_string ("x"), &error));
  g_assert_no_error (error);
  g_thread_join (check.owner);
  g_assert_true (check.emitted_in == check.owner);
}

/* One mode per channel. */
static void
test_mode_mixing (Pair          *pair,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) message = NULL;

  g_assert_cmpint (ly_channel_get_mode (pair->b), ==, LY_CHANNEL_MODE_UNSET);
  g_signal_connect (pair->b, "received", G_CALLBACK (collect_message), pair);
  ly_channel_send (pair->a, g_variant_new_string ("x"), &error);
  g_assert_no_error (error);
  ly_test_run_until_count (&pair->received->len, 1, 10);
  g_assert_cmpint (ly_channel_get_mode (pair->b), ==, LY_CHANNEL_MODE_PASSIVE);

  message = ly_channel_receive_timeout (pair->b, 10, NULL, &error);
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_MODE);
  g_assert_null (message);
  g_clear_error (&error);

  /* active first: stays active, the passive handler is not fed */
  ly_channel_send (pair->b, g_variant_new_string ("y"), &error);
  g_assert_no_error (error);
  message = ly_channel_receive (pair->a, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (message, NULL), ==, "y");
  g_assert_cmpint (ly_channel_get_mode (pair->a), ==, LY_CHANNEL_MODE_ACTIVE);
}

static void
test_message_type (Pair          *pair,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) message = NULL;

  ly_channel_set_message_type (pair->a, G_VARIANT_TYPE ("a{sv}"));
  g_assert_true (g_variant_type_equal (ly_channel_get_message_type (pair->a), G_VARIANT_TYPE ("a{sv}")));

  g_assert_false (ly_channel_send (pair->a, g_variant_new_string ("not a dict"), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TYPE_MISMATCH);
  g_assert_nonnull (strstr (error->message, "a{sv}"));
  g_clear_error (&error);

  g_assert_true (ly_channel_send (pair->a, g_variant_new_parsed ("{'a': <1>}"), &error));
  g_assert_no_error (error);

  /* an indefinite type allows every type that matches it */
  ly_channel_set_message_type (pair->a, G_VARIANT_TYPE ("(s*)"));
  g_assert_true (ly_channel_send (pair->a, g_variant_new ("(si)", "n", 1), &error));
  g_assert_no_error (error);
  g_assert_false (ly_channel_send (pair->a, g_variant_new ("(is)", 1, "n"), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TYPE_MISMATCH);
  g_clear_error (&error);

  ly_channel_set_message_type (pair->a, NULL);
  g_assert_true (ly_channel_send (pair->a, g_variant_new_boolean (TRUE), &error));
  g_assert_no_error (error);

  for (guint i = 0; i < 3; i++)
    {
      g_clear_pointer (&message, g_variant_unref);
      message = ly_channel_receive (pair->b, NULL, &error);
      g_assert_no_error (error);
    }
  g_assert_true (g_variant_get_boolean (message));
}

static void
test_too_large (Pair          *pair,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) message = NULL;

  ly_channel_set_max_message_size (pair->a, 1000);
  g_assert_false (ly_channel_send (pair->a, pattern_bytes (1001), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TOO_LARGE);
  g_clear_error (&error);
  g_assert_true (ly_channel_send (pair->a, pattern_bytes (1000), &error));
  g_assert_no_error (error);
  message = ly_channel_receive (pair->b, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_get_size (message), ==, 1000);

  /* the default limit is 16 MiB */
  g_assert_cmpuint (ly_channel_get_max_message_size (pair->b), ==, 16 * 1024 * 1024);
  g_assert_false (ly_channel_send (pair->b, pattern_bytes (16 * 1024 * 1024 + 1), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TOO_LARGE);
  g_clear_error (&error);

  /* a receiver with a smaller limit than its sender refuses the frame */
  ly_channel_set_max_message_size (pair->a, 100);
  g_signal_connect (pair->a, "closed", G_CALLBACK (collect_closed), pair);
  g_assert_true (ly_channel_send (pair->b, pattern_bytes (101), &error));
  g_assert_no_error (error);
  ly_test_run_until_count (&pair->n_closed, 1, 10);
  g_assert_error (pair->closed_error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
}

typedef struct
{
  guint    completed;
  guint    failed;
  GError  *error;
} SendState;

static void
sent_async (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  SendState *state = user_data;
  GError *error = NULL;

  if (ly_channel_send_finish (LY_CHANNEL (source), result, &error))
    state->completed++;
  else
    {
      state->failed++;
      g_clear_error (&state->error);
      state->error = error;
    }
}

/* A full send queue fails send() with FULL; send_async() waits instead
 * and completes once the reader drains. */
static void
test_full_queue (Pair          *pair,
                 gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  SendState state = { 0, };
  guint n_sent = 0;
  guint n_async = 20;

  ly_channel_set_max_queued_bytes (pair->a, 64 * 1024);

  /* this thread holds the context and does not run it, so b does not
   * read and nothing writes for a but its sends (the library's flusher
   * leaves a channel whose context a thread holds to that thread): the
   * socket buffer and then the queue fill up */
  g_assert_true (g_main_context_acquire (NULL));
  while (ly_channel_send (pair->a, pattern_bytes (1000), &error))
    {
      n_sent++;
      g_assert_cmpuint (n_sent, <, 100000);
    }
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL);
  g_clear_error (&error);
  g_assert_cmpuint (ly_channel_get_queued_bytes (pair->a), >, 60 * 1024);

  for (guint i = 0; i < n_async; i++)
    ly_channel_send_async (pair->a, pattern_bytes (1000), NULL, sent_async, &state);

  /* while they wait, send() keeps failing: nothing may overtake them */
  g_assert_false (ly_channel_send (pair->a, g_variant_new_string ("overtaking"), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL);
  g_clear_error (&error);

  /* let b read: everything arrives and the async sends complete */
  g_signal_connect (pair->b, "received", G_CALLBACK (collect_message), pair);
  ly_test_run_until_count (&state.completed, n_async, 30);
  ly_test_run_until_count (&pair->received->len, n_sent + n_async, 30);
  g_assert_cmpuint (state.failed, ==, 0);
  for (guint i = 0; i < pair->received->len; i++)
    g_assert_cmpuint (g_variant_get_size (g_ptr_array_index (pair->received, i)), ==, 1000);

  g_assert_true (ly_channel_send (pair->a, g_variant_new_string ("after"), &error));
  g_assert_no_error (error);
  g_main_context_release (NULL);
}

/* A send that waits for room can be cancelled; what is queued is not. */
static void
test_send_async_cancel (Pair          *pair,
                        gconstpointer  data)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  SendState state = { 0, };

  /* held and not run: only this thread's sends write (see above) */
  g_assert_true (g_main_context_acquire (NULL));
  ly_channel_set_max_queued_bytes (pair->a, 16 * 1024);
  while (ly_channel_send (pair->a, pattern_bytes (4000), NULL))
    ;

  {
    /* as large as what filled the queue, so it cannot fit */
    g_autofree char *big_string = g_strnfill (4000, 'w');

    ly_channel_send_async (pair->a, g_variant_new_string (big_string), cancellable, sent_async, &state);
  }
  g_assert_cmpuint (state.completed + state.failed, ==, 0);
  g_cancellable_cancel (cancellable);
  ly_test_run_until_count (&state.failed, 1, 10);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&state.error);

  /* a cancelled send is not delivered */
  g_signal_connect (pair->b, "received::s", G_CALLBACK (collect_message), pair);
  ly_channel_send_async (pair->a, g_variant_new_string ("last"), NULL, sent_async, &state);
  ly_test_run_until_count (&state.completed, 1, 10);
  ly_test_run_until_count (&pair->received->len, 1, 10);
  g_assert_cmpstr (g_variant_get_string (g_ptr_array_index (pair->received, 0), NULL), ==, "last");
  g_main_context_release (NULL);
}

static void
flushed (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  SendState *state = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (ly_channel_flush_finish (LY_CHANNEL (source), result, &error));
  g_assert_no_error (error);
  state->completed++;
}

static void
test_flush (Pair          *pair,
            gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  SendState state = { 0, };

  ly_channel_set_max_queued_bytes (pair->a, 1024 * 1024);
  for (guint i = 0; i < 300; i++)
    g_assert_true (ly_channel_send (pair->a, pattern_bytes (3000), &error));
  g_assert_cmpuint (ly_channel_get_queued_bytes (pair->a), >, 0);

  ly_channel_flush_async (pair->a, NULL, flushed, &state);
  g_signal_connect (pair->b, "received", G_CALLBACK (collect_message), pair);
  ly_test_run_until_count (&state.completed, 1, 10);
  g_assert_cmpuint (ly_channel_get_queued_bytes (pair->a), ==, 0);
  ly_test_run_until_count (&pair->received->len, 300, 10);
}

/* close() flushes; the peer drains what arrived, then gets CLOSED. */
static void
test_close_drains (Pair          *pair,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_signal_connect (pair->b, "closed", G_CALLBACK (collect_closed), pair);
  for (guint i = 0; i < 5; i++)
    g_assert_true (ly_channel_send (pair->a, g_variant_new_uint32 (i), &error));
  ly_channel_close (pair->a);
  g_assert_true (ly_channel_is_closed (pair->a));

  g_assert_false (ly_channel_send (pair->a, g_variant_new_uint32 (99), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
  g_clear_error (&error);

  ly_test_run_until_count (&pair->n_closed, 1, 10);
  g_assert_no_error (pair->closed_error);
  g_assert_true (ly_channel_is_closed (pair->b));

  for (guint i = 0; i < 5; i++)
    {
      g_autoptr(GVariant) message = ly_channel_receive (pair->b, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (g_variant_get_uint32 (message), ==, i);
    }
  g_assert_null (ly_channel_receive (pair->b, NULL, &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
  g_clear_error (&error);

  g_assert_false (ly_channel_send (pair->b, g_variant_new_uint32 (1), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
  g_assert_cmpuint (pair->n_closed, ==, 1);
}

/* Dropping the last reference right after close() loses nothing. */
static void
test_close_unref_lingers (void)
{
  g_autoptr(GError) error = NULL;
  LyChannel *a, *b;
  guint n = 0;

  ly_channel_new_pair ("linger", &a, &b, &error);
  g_assert_no_error (error);
  ly_channel_set_max_queued_bytes (a, 64 * 1024 * 1024);
  for (guint i = 0; i < 50; i++)
    g_assert_true (ly_channel_send (a, pattern_bytes (100 * 1024), &error));
  ly_channel_close (a);
  g_object_unref (a);

  for (;;)
    {
      g_autoptr(GVariant) message = ly_channel_receive (b, NULL, &error);

      if (message == NULL)
        break;
      g_assert_cmpuint (g_variant_get_size (message), ==, 100 * 1024);
      n++;
    }
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
  g_assert_cmpuint (n, ==, 50);
  g_object_unref (b);
}

/* Dropping a channel while the flusher keeps trying its full socket,
 * at varying moments: the flusher lets go of it for good (it used to
 * keep a freed channel in its queue when the drop came during a try,
 * which valgrind and ASan report), and nothing sent is lost. */
static void
test_unref_while_flusher_retries (void)
{
  for (guint round = 0; round < 24; round++)
    {
      g_autoptr(GError) error = NULL;
      LyChannel *a, *b;
      guint n = 0;

      ly_channel_new_pair ("flusher-unref", &a, &b, &error);
      g_assert_no_error (error);
      ly_channel_set_max_queued_bytes (a, 64 * 1024 * 1024);
      /* more than the socket holds: the flusher retries the rest */
      for (guint i = 0; i < 8; i++)
        g_assert_true (ly_channel_send (a, pattern_bytes (128 * 1024), &error));
      g_usleep ((round % 6) * 700);
      /* a large send holds the channel while the flusher may be due */
      g_assert_true (ly_channel_send (a, pattern_bytes (2 * 1024 * 1024), &error));
      ly_channel_close (a);
      g_object_unref (a);

      for (;;)
        {
          g_autoptr(GVariant) message = ly_channel_receive (b, NULL, &error);

          if (message == NULL)
            break;
          n++;
        }
      g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
      g_assert_cmpuint (n, ==, 9);
      g_object_unref (b);
    }
}

/* A peer process killed with SIGKILL: closed with DISCONNECTED. */
static void
test_peer_killed (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GSubprocess) child = ly_test_spawn_peer ("killed", &channel, "hang", NULL);
  g_autoptr(GVariant) ready = NULL;
  Pair pair = { 0, };

  g_signal_connect (channel, "closed", G_CALLBACK (collect_closed), &pair);

  ready = ly_channel_receive (channel, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (ready, NULL), ==, "ready");
  g_assert_cmpstr (ly_channel_get_peer_process_name (channel), ==, "ly-test-peer");
  g_assert_cmpint (ly_channel_get_peer_pid (channel), ==, atoi (g_subprocess_get_identifier (child)));

  g_subprocess_send_signal (child, SIGKILL);
  ly_test_run_until_count (&pair.n_closed, 1, 10);
  g_assert_error (pair.closed_error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_DISCONNECTED);
  g_assert_true (ly_channel_is_closed (channel));
  g_assert_false (ly_channel_send (channel, g_variant_new_string ("x"), &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);

  g_subprocess_wait (child, NULL, NULL);
  g_clear_error (&pair.closed_error);
}

/* An echo peer in another process: everything comes back in order. */
static void
test_peer_echo (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GSubprocess) child = ly_test_spawn_peer ("echo", &channel, "echo", NULL);
  guint n = ly_test_scaled (100000);

  for (guint i = 0; i < n; i++)
    ly_test_send_waiting (channel, g_variant_new ("(us)", i, "payload"));

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GVariant) message = ly_channel_receive (channel, NULL, &error);
      guint seq;

      g_assert_no_error (error);
      g_variant_get (message, "(u&s)", &seq, NULL);
      g_assert_cmpuint (seq, ==, i);
    }

  ly_channel_close (channel);
  g_assert_true (ly_channel_flush (channel, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_wait_check (child, NULL, &error));
  g_assert_no_error (error);
}

/* A peer that closes right after a burst: every message is received,
 * then CLOSED; the sender process exits 0. */
static void
test_peer_burst_then_close (void)
{
  g_autoptr(GError) error = NULL;
  guint n = ly_test_scaled (200000);
  g_autofree char *count = g_strdup_printf ("%u", n);
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GSubprocess) child = ly_test_spawn_peer ("burst", &channel, "burst", count, NULL);
  guint i = 0;

  for (;;)
    {
      g_autoptr(GVariant) message = ly_channel_receive (channel, NULL, &error);

      if (message == NULL)
        break;
      g_assert_cmpuint (g_variant_get_uint32 (message), ==, i);
      i++;
    }
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_cmpuint (i, ==, n);
  g_assert_true (g_subprocess_wait_check (child, NULL, &error));
  g_assert_no_error (error);
}

/* Bad bytes from a raw socket: PROTOCOL, and the process goes on. */
static void
write_all (int         fd,
           const void *data,
           gsize       size)
{
  g_assert_cmpint (write (fd, data, size), ==, (gssize) size);
}

static void
write_frame (int         fd,
             guint8      kind,
             guint8      flags,
             const char *type,
             const void *data,
             guint32     data_length,
             gsize       real_length)
{
  guint8 header[8] = { kind, flags, 0, 0, 0, 0, 0, 0 };
  guint16 type_length = GUINT16_TO_LE (strlen (type));
  guint32 length = GUINT32_TO_LE (data_length);
  gsize type_area = (strlen (type) + 1 + 7) & ~(gsize) 7;
  g_autofree guint8 *type_bytes = g_malloc0 (type_area);
  gsize data_area = (real_length + 7) & ~(gsize) 7;
  g_autofree guint8 *data_bytes = g_malloc0 (data_area + 1);

  memcpy (header + 2, &type_length, 2);
  memcpy (header + 4, &length, 4);
  memcpy (type_bytes, type, strlen (type));
  if (real_length > 0)
    memcpy (data_bytes, data, real_length);

  write_all (fd, header, sizeof header);
  write_all (fd, type_bytes, type_area);
  if (data_area > 0)
    write_all (fd, data_bytes, data_area);
}

static void
write_hello (int     fd,
             guint32 version)
{
  g_autoptr(GVariant) hello = g_variant_ref_sink (g_variant_new ("(usua{sv})", version, "raw", 1, NULL));

  write_frame (fd, 1, 0, "(usua{sv})", g_variant_get_data (hello),
               g_variant_get_size (hello), g_variant_get_size (hello));
}

typedef enum
{
  BAD_HUGE_LENGTH,
  BAD_TYPE_STRING,
  BAD_TRUNCATED,
  BAD_GARBAGE,
  BAD_NO_HELLO,
  BAD_VERSION,
  BAD_NOT_NORMAL,
  BAD_PADDING,
  BAD_FLAGS,
  BAD_KIND,
  BAD_INDEFINITE,
  BAD_SECOND_HELLO,
} BadInput;

static void
test_bad_input (gconstpointer data)
{
  BadInput bad = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GVariant) message = NULL;
  Pair pair = { 0, };
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  channel = ly_channel_new_for_fd ("raw", fds[0], &error);
  g_assert_no_error (error);
  g_signal_connect (channel, "closed", G_CALLBACK (collect_closed), &pair);

  if (bad != BAD_NO_HELLO && bad != BAD_VERSION && bad != BAD_GARBAGE)
    write_hello (fds[1], 1);

  switch (bad)
    {
    case BAD_HUGE_LENGTH:
      write_frame (fds[1], 2, 0, "ay", NULL, G_MAXUINT32, 0);
      break;
    case BAD_TYPE_STRING:
      write_frame (fds[1], 2, 0, "a{vs}(", "x", 1, 1);
      break;
    case BAD_TRUNCATED:
      {
        guint8 partial[12] = { 2, 0, 1, 0, 64, 0, 0, 0, 's', 0, 0, 0 };
        write_all (fds[1], partial, sizeof partial);
        shutdown (fds[1], SHUT_WR);
      }
      break;
    case BAD_GARBAGE:
      {
        guint8 garbage[256];
        for (guint i = 0; i < sizeof garbage; i++)
          garbage[i] = (guint8) g_test_rand_int ();
        garbage[0] = 0x7f;
        write_all (fds[1], garbage, sizeof garbage);
      }
      break;
    case BAD_NO_HELLO:
      write_frame (fds[1], 2, 0, "s", "hi", 3, 3);
      break;
    case BAD_VERSION:
      write_hello (fds[1], 99);
      break;
    case BAD_NOT_NORMAL:
      /* a string without its terminating NUL */
      write_frame (fds[1], 2, 0, "s", "abc", 3, 3);
      break;
    case BAD_PADDING:
      {
        guint8 frame[24] = { 2, 0, 1, 0, 2, 0, 0, 0, 's', 0, 0, 0, 0, 0, 0, 0,
                             'x', 0, 0xee, 0, 0, 0, 0, 0 };
        write_all (fds[1], frame, sizeof frame);
      }
      break;
    case BAD_FLAGS:
      write_frame (fds[1], 2, 0x80, "s", "ok", 3, 3);
      break;
    case BAD_KIND:
      write_frame (fds[1], 9, 0, "s", "ok", 3, 3);
      break;
    case BAD_INDEFINITE:
      write_frame (fds[1], 2, 0, "a*", "", 0, 0);
      break;
    case BAD_SECOND_HELLO:
      write_hello (fds[1], 1);
      break;
    default:
      g_assert_not_reached ();
    }

  ly_test_run_until_count (&pair.n_closed, 1, 10);
  g_assert_error (pair.closed_error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_test_message ("closed with: %s", pair.closed_error->message);
  g_assert_true (ly_channel_is_closed (channel));

  /* the connection is cut: the raw side sees end-of-stream */
  {
    char buffer[4096];
    gssize n;

    do
      n = read (fds[1], buffer, sizeof buffer);
    while (n > 0);
    g_assert_cmpint (n, ==, 0);
  }

  message = ly_channel_receive (channel, NULL, &error);
  g_assert_null (message);
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED);

  g_close (fds[1], NULL);
  g_clear_error (&pair.closed_error);
}

/* Creating and closing 1,000 pairs leaves the fd count unchanged. */
static void
test_no_fd_leak (void)
{
  guint before;

  /* what earlier tests left lingering (a close still writing, at most
   * its 10 s) ends first */
  for (guint settled = 0, last = 0; settled < 3; g_usleep (100 * 1000))
    {
      guint now;

      while (g_main_context_iteration (NULL, FALSE))
        ;
      now = ly_test_count_fds ();
      settled = now == last ? settled + 1 : 0;
      last = now;
    }
  before = ly_test_count_fds ();

  for (guint i = 0; i < 1000; i++)
    {
      g_autoptr(GError) error = NULL;
      LyChannel *a, *b;

      ly_channel_new_pair ("leak", &a, &b, &error);
      g_assert_no_error (error);
      ly_channel_send (a, g_variant_new_string ("x"), NULL);
      if (i % 2)
        ly_channel_close (a);
      g_object_unref (a);
      g_object_unref (b);
    }

  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpuint (ly_test_count_fds (), ==, before);
}

/* Bytes waiting on @fd, read without blocking; *ended at end of stream. */
static gsize
drain_socket_until_end (int       fd,
                        gboolean *ended)
{
  gsize total = 0;
  guint8 buffer[64 * 1024];
  gssize n;

  while ((n = recv (fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0)
    total += n;
  g_assert_true (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK);
  *ended = n == 0;
  return total;
}

static gsize
drain_socket (int fd)
{
  gboolean ended;
  gsize total = drain_socket_until_end (fd, &ended);

  g_assert_false (ended);
  return total;
}

/* A sender without a main loop fills the socket, then keeps sending:
 * nobody runs the source that would write when the socket has room, so
 * the sends themselves must, or the peer runs dry while everything
 * waits in the queue until a flush. */
static void
test_sender_without_loop (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) sender = NULL;
  gsize first, second;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  sender = ly_channel_new_for_fd ("loopless", fds[0], &error);
  g_assert_no_error (error);

  for (guint i = 0; i < 1024; i++)
    g_assert_true (ly_channel_send (sender, pattern_bytes (1000), NULL));
  first = drain_socket (fds[1]);
  g_assert_cmpuint (first, <, 1000 * 1000);
  g_assert_cmpuint (ly_channel_get_queued_bytes (sender), >, 0);

  /* another batch of sends moves the queue on, without a flush */
  for (guint i = 0; i < 70; i++)
    g_assert_true (ly_channel_send (sender, pattern_bytes (1000), NULL));
  second = drain_socket (fds[1]);
  g_assert_cmpuint (second, >, 64 * 1024);

  g_close (fds[1], NULL);
}

/* Reads from @fd until @size bytes came (or @timeout_sec passed). */
static gsize
read_socket_until (int    fd,
                   gsize  size,
                   guint  timeout_sec)
{
  gint64 deadline = g_get_monotonic_time () + timeout_sec * G_USEC_PER_SEC;
  gboolean ended = FALSE;
  gsize total = 0;

  while (total < size && !ended && g_get_monotonic_time () < deadline)
    {
      gsize got = drain_socket_until_end (fd, &ended);

      total += got;
      if (got == 0)
        g_usleep (1000);
    }
  return total;
}

/* A program without a main loop: a message alone leaves at once; a
 * burst may wait a moment to leave in batches, but all of it leaves
 * without another call (no flush, no loop). */
static void
test_burst_without_loop (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) sender = NULL;
  g_autoptr(GVariant) probe = g_variant_ref_sink (g_variant_new_string ("0123456789"));
  gsize hello, frame;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  sender = ly_channel_new_for_fd ("bursty", fds[0], &error);
  g_assert_no_error (error);

  /* the first write (the hello with a message) and a lone message
   * later: both are in the socket when the send returns */
  g_assert_true (ly_channel_send (sender, probe, NULL));
  hello = drain_socket (fds[1]);
  g_assert_cmpuint (hello, >, 0);
  for (guint i = 0; i < 3; i++)
    {
      g_usleep (2000);
      g_assert_true (ly_channel_send (sender, probe, NULL));
      frame = drain_socket (fds[1]);
      g_assert_cmpuint (frame, >, g_variant_get_size (probe));
    }

  /* a burst of 20,000, then nothing: every byte arrives */
  for (guint i = 0; i < 20000; i++)
    g_assert_true (ly_channel_send (sender, probe, NULL));
  g_assert_cmpuint (read_socket_until (fds[1], 20000 * frame, 10), ==, 20000 * frame);
  g_assert_cmpuint (ly_channel_get_queued_bytes (sender), ==, 0);

  /* a channel given up in the middle of a burst still sends all of it */
  for (guint i = 0; i < 1000; i++)
    g_assert_true (ly_channel_send (sender, probe, NULL));
  g_clear_object (&sender);
  g_assert_cmpuint (read_socket_until (fds[1], 1000 * frame, 10), >=, 1000 * frame);

  g_close (fds[1], NULL);
}

static void
test_new_for_fd_errors (void)
{
  g_autoptr(GError) error = NULL;
  int pipe_fds[2];

  g_assert_cmpint (pipe (pipe_fds), ==, 0);
  g_assert_null (ly_channel_new_for_fd ("pipe", pipe_fds[0], &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  /* the fd was taken and closed */
  g_assert_cmpint (fcntl (pipe_fds[0], F_GETFD), ==, -1);
  g_close (pipe_fds[1], NULL);
}

/* A channel over a GSocketConnection, and over a non-socket pollable
 * stream (a GSimpleIOStream of a socket's GUnix streams). */
static void
test_stream_transports (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) s0 = NULL;
  g_autoptr(GSocketConnection) c0 = NULL;
  g_autoptr(GIOStream) simple = NULL;
  g_autoptr(LyChannel) a = NULL, b = NULL;
  g_autoptr(GVariant) m1 = NULL, m2 = NULL;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  s0 = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  c0 = g_socket_connection_factory_create_connection (s0);
  a = ly_channel_new_for_stream ("stream", G_IO_STREAM (c0));

  /* GUnixOutputStream writes are only non-blocking on a non-blocking fd */
  g_assert_true (g_unix_set_fd_nonblocking (fds[1], TRUE, NULL));
  {
    g_autoptr(GInputStream) in = g_unix_input_stream_new (fds[1], TRUE);
    g_autoptr(GOutputStream) out = g_unix_output_stream_new (dup (fds[1]), TRUE);

    simple = g_simple_io_stream_new (in, out);
  }
  b = ly_channel_new_for_stream ("stream", simple);

  g_assert_true (ly_channel_send (a, g_variant_new_string ("to b"), &error));
  g_assert_true (ly_channel_send (b, pattern_bytes (300 * 1024), &error));
  g_assert_no_error (error);

  m1 = ly_channel_receive (b, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (m1, NULL), ==, "to b");
  m2 = ly_channel_receive (a, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_get_size (m2), ==, 300 * 1024);
}

/* Memfd messages ------------------------------------------------------------ */

/* Whether this process maps a memfd the library made. */
static gboolean
maps_a_message_memfd (void)
{
  g_autofree char *maps = NULL;

  g_assert_true (g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL));
  return strstr (maps, "memfd:liteyuki-comm message") != NULL;
}

/* Messages around the threshold, 1 MiB of bytes and of text, and (not
 * under valgrind) 256 MiB go to a peer process and come back: the same
 * bytes; from the threshold on they arrive in a mapped memfd. */
static void
test_memfd_echo (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GSubprocess) child = ly_test_spawn_peer ("echo-memfd", &channel, "echo-memfd", "65536", NULL);
  gsize sizes[] = { 65535, 65536, 65537, 1024 * 1024, 256 * 1024 * 1024 };
  gsize n_sizes = g_getenv ("LY_TEST_QUICK") != NULL ? 4 : G_N_ELEMENTS (sizes);

  ly_channel_set_memfd_threshold (channel, 65536);
  ly_channel_set_max_message_size (channel, 300 * 1024 * 1024);
  ly_channel_set_max_queued_bytes (channel, 600 * 1024 * 1024);
  /* the peer's hello, which offers memfds, arrives first */
  ly_channel_send (channel, g_variant_new_string ("hello"), &error);
  g_assert_no_error (error);
  g_variant_unref (ly_channel_receive (channel, NULL, &error));
  g_assert_no_error (error);

  for (gsize i = 0; i < n_sizes; i++)
    {
      g_autoptr(GVariant) sent = g_variant_ref_sink (pattern_bytes (sizes[i]));
      g_autoptr(GVariant) echo = NULL;

      g_assert_true (ly_channel_send (channel, sent, &error));
      g_assert_no_error (error);
      echo = ly_channel_receive (channel, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (g_variant_get_size (echo), ==, sizes[i]);
      g_assert_true (memcmp (g_variant_get_data (echo), g_variant_get_data (sent), sizes[i]) == 0);
      /* held, a large one is a mapping of the peer's memfd */
      g_assert_cmpint (maps_a_message_memfd (), ==, sizes[i] >= 65536);
    }

  {
    g_autoptr(GString) text = g_string_new (NULL);
    g_autoptr(GVariant) echo = NULL;

    while (text->len < 1024 * 1024)
      g_string_append (text, "轻雪机器人，一个基于 NoneBot2 的机器人框架。");
    g_assert_true (ly_channel_send (channel, g_variant_new_string (text->str), &error));
    echo = ly_channel_receive (channel, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (g_variant_get_string (echo, NULL), ==, text->str);
  }

  ly_channel_close (channel);
  g_assert_true (ly_channel_flush (channel, NULL, &error));
  g_assert_true (g_subprocess_wait_check (child, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (maps_a_message_memfd ());
}

/* 1,000 memfd messages there and back: no file descriptor is left. */
static void
test_memfd_no_fd_leak (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) sent = g_variant_ref_sink (pattern_bytes (128 * 1024));
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GSubprocess) child = NULL;
  guint n = ly_test_scaled (1000), before;

  child = ly_test_spawn_peer ("echo-memfd", &channel, "echo-memfd", "65536", NULL);
  ly_channel_set_memfd_threshold (channel, 65536);
  ly_channel_send (channel, g_variant_new_string ("hello"), &error);
  g_variant_unref (ly_channel_receive (channel, NULL, &error));
  g_assert_no_error (error);
  before = ly_test_count_fds ();

  for (guint i = 0; i < n; i++)
    ly_test_send_waiting (channel, sent);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GVariant) echo = ly_channel_receive (channel, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (g_variant_get_size (echo), ==, 128 * 1024);
    }

  g_assert_cmpuint (ly_test_count_fds (), ==, before);
  g_assert_false (maps_a_message_memfd ());
  ly_channel_close (channel);
  ly_channel_flush (channel, NULL, NULL);
  g_assert_true (g_subprocess_wait_check (child, NULL, &error));
  g_assert_no_error (error);
}

static void
write_hello_memfd (int fd)
{
  g_auto(GVariantBuilder) extensions = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr(GVariant) hello = NULL;

  g_variant_builder_add (&extensions, "{sv}", "memfd", g_variant_new_boolean (TRUE));
  hello = g_variant_ref_sink (g_variant_new ("(usua{sv})", 1, "raw", 1, &extensions));
  write_frame (fd, 1, 0, "(usua{sv})", g_variant_get_data (hello),
               g_variant_get_size (hello), g_variant_get_size (hello));
}

/* A MEMFD frame for @declared bytes of `ay`, with @fds (-1: none). */
static void
send_memfd_frame (int        socket_fd,
                  guint64    declared,
                  const int *fds,
                  gsize      n_fds)
{
  guint8 frame[24] = { 4, 0, 2, 0, 8, 0, 0, 0, 'a', 'y', 0, 0, 0, 0, 0, 0, };
  guint64 size_le = GUINT64_TO_LE (declared);
  union
  {
    struct cmsghdr header;
    char           space[CMSG_SPACE (sizeof (int) * 16)];
  } control;
  struct iovec iov = { frame, sizeof frame };
  struct msghdr msg = { 0 };

  g_assert_cmpuint (n_fds, <=, 16);
  memcpy (frame + 16, &size_le, 8);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (n_fds > 0)
    {
      struct cmsghdr *c;

      memset (&control, 0, sizeof control);
      msg.msg_control = &control;
      msg.msg_controllen = CMSG_SPACE (sizeof (int) * n_fds);
      c = CMSG_FIRSTHDR (&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN (sizeof (int) * n_fds);
      memcpy (CMSG_DATA (c), fds, sizeof (int) * n_fds);
    }
  g_assert_cmpint (sendmsg (socket_fd, &msg, MSG_NOSIGNAL), ==, sizeof frame);
}

/* A memfd of @size bytes with @seals (0: none). */
static int
memfd_with (gsize size,
            int   seals)
{
  int fd = memfd_create ("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t) size), ==, 0);
  if (seals != 0)
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, seals), ==, 0);
  return fd;
}

typedef enum
{
  MEMFD_UNSEALED,
  MEMFD_WRITABLE,      /* sealed against size changes only */
  MEMFD_SHORT,
  MEMFD_LONG,
  MEMFD_OVER_LIMIT,
  MEMFD_NO_FD,
  MEMFD_NOT_A_MEMFD,
  MEMFD_TOO_MANY_FDS,
} BadMemfd;

/* A hostile peer's memfd frames: each cuts the connection with a
 * PROTOCOL error that says why, and leaves no file descriptor open. */
static void
test_memfd_hostile (gconstpointer data)
{
  BadMemfd bad = GPOINTER_TO_INT (data);
  const int sealed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
  const char *expected = NULL;
  g_autoptr(GError) error = NULL;
  LyChannel *channel;
  Pair pair = { 0, };
  guint before;
  int fds[2], sent[16];
  gsize n_sent = 1;

  /* the main context's own descriptor exists before the count */
  g_main_context_iteration (NULL, FALSE);
  before = ly_test_count_fds ();
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  channel = ly_channel_new_for_fd ("raw-memfd", fds[0], &error);
  g_assert_no_error (error);
  ly_channel_set_max_message_size (channel, 1024 * 1024);
  g_signal_connect (channel, "closed", G_CALLBACK (collect_closed), &pair);
  write_hello_memfd (fds[1]);

  switch (bad)
    {
    case MEMFD_UNSEALED:
      sent[0] = memfd_with (4096, 0);
      expected = "not sealed";
      break;
    case MEMFD_WRITABLE:
      sent[0] = memfd_with (4096, F_SEAL_SHRINK | F_SEAL_GROW);
      expected = "not sealed";
      break;
    case MEMFD_SHORT:
      sent[0] = memfd_with (4000, sealed);
      expected = "4000 bytes for a message of 4096";
      break;
    case MEMFD_LONG:
      sent[0] = memfd_with (8192, sealed);
      expected = "8192 bytes for a message of 4096";
      break;
    case MEMFD_OVER_LIMIT:
      sent[0] = memfd_with (2 * 1024 * 1024, sealed);
      expected = "the limit is";
      break;
    case MEMFD_NO_FD:
      n_sent = 0;
      expected = "without its file descriptor";
      break;
    case MEMFD_NOT_A_MEMFD:
      sent[0] = open ("/dev/null", O_RDONLY | O_CLOEXEC);
      expected = "not sealed";
      break;
    case MEMFD_TOO_MANY_FDS:
      n_sent = 16;
      expected = "no message";
      break;
    default:
      g_assert_not_reached ();
    }

  if (bad == MEMFD_TOO_MANY_FDS)
    {
      /* 80 descriptors for one frame */
      for (gsize i = 0; i < n_sent; i++)
        sent[i] = memfd_with (4096, sealed);
      for (guint round = 0; round < 5; round++)
        send_memfd_frame (fds[1], 4096, sent, n_sent);
    }
  else
    send_memfd_frame (fds[1], bad == MEMFD_OVER_LIMIT ? 2 * 1024 * 1024 : 4096, sent, n_sent);
  for (gsize i = 0; i < n_sent; i++)
    close (sent[i]);

  ly_test_run_until_count (&pair.n_closed, 1, 10);
  g_assert_error (pair.closed_error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_test_message ("closed with: %s", pair.closed_error->message);
  g_assert_nonnull (strstr (pair.closed_error->message, expected));

  g_object_unref (channel);
  close (fds[1]);
  g_clear_error (&pair.closed_error);
  /* what the channel received went with it */
  for (gint64 until = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
       ly_test_count_fds () != before && g_get_monotonic_time () < until;
       g_usleep (10 * 1000))
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (ly_test_count_fds (), ==, before);
}

/* A peer that does not offer memfds in its hello (a version 1 peer of
 * before) gets large messages inline, and no file descriptor. */
static void
test_memfd_peer_without (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) channel = NULL;
  g_autoptr(GVariant) big = g_variant_ref_sink (pattern_bytes (32 * 1024));
  guint8 buffer[4096];
  char control[CMSG_SPACE (sizeof (int) * 4)];
  struct iovec iov = { buffer, sizeof buffer };
  struct msghdr msg = { 0 };
  gsize hello_size;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  channel = ly_channel_new_for_fd ("raw-old", fds[0], &error);
  g_assert_no_error (error);
  ly_channel_set_memfd_threshold (channel, 1024);
  write_hello (fds[1], 1);
  /* its hello read, the channel sends the large message */
  for (gint64 until = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
       ly_channel_get_peer_process_name (channel) == NULL; )
    {
      g_assert_cmpint (g_get_monotonic_time (), <, until);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  g_assert_true (ly_channel_send (channel, big, &error));
  g_assert_true (ly_channel_flush (channel, NULL, &error));
  g_assert_no_error (error);

  /* the channel's hello, then a MESSAGE frame: kind 2, 32 KiB of data */
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  g_assert_cmpint (recvmsg (fds[1], &msg, MSG_CMSG_CLOEXEC), >, 16);
  g_assert_null (CMSG_FIRSTHDR (&msg));
  g_assert_cmpuint (buffer[0], ==, 1);
  {
    guint16 type_length;
    guint32 data_length;

    memcpy (&type_length, buffer + 2, 2);
    memcpy (&data_length, buffer + 4, 4);
    hello_size = 8 + ((GUINT16_FROM_LE (type_length) + 1 + 7) & ~7u) + ((GUINT32_FROM_LE (data_length) + 7) & ~7u);
  }
  g_assert_cmpuint (buffer[hello_size], ==, 2);
  g_assert_cmpuint (buffer[hello_size + 4] | (buffer[hello_size + 5] << 8) | (buffer[hello_size + 6] << 16), ==, 32 * 1024);
  close (fds[1]);
}

int
main (int   argc,
      char *argv[])
{
  static const struct { const char *name; BadInput bad; } bad_inputs[] = {
    { "huge-length", BAD_HUGE_LENGTH }, { "type-string", BAD_TYPE_STRING },
    { "truncated", BAD_TRUNCATED }, { "garbage", BAD_GARBAGE }, { "no-hello", BAD_NO_HELLO },
    { "version", BAD_VERSION }, { "not-normal", BAD_NOT_NORMAL }, { "padding", BAD_PADDING },
    { "flags", BAD_FLAGS }, { "kind", BAD_KIND }, { "indefinite", BAD_INDEFINITE },
    { "second-hello", BAD_SECOND_HELLO },
  };

  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

#define PAIR_TEST(path, func) \
  g_test_add ("/channel/" path, Pair, NULL, pair_setup, func, pair_teardown)

  PAIR_TEST ("roundtrip-kinds", test_roundtrip_kinds);
  PAIR_TEST ("large-message", test_large_message);
  PAIR_TEST ("large-messages-reuse", test_large_messages_reuse);
  PAIR_TEST ("detail-filter", test_detail_filter);
  PAIR_TEST ("threads-order", test_threads_order);
  PAIR_TEST ("active-thread", test_active_thread);
  PAIR_TEST ("receive-async", test_receive_async);
  PAIR_TEST ("mode-mixing", test_mode_mixing);
  PAIR_TEST ("message-type", test_message_type);
  PAIR_TEST ("too-large", test_too_large);
  PAIR_TEST ("full-queue", test_full_queue);
  PAIR_TEST ("send-async-cancel", test_send_async_cancel);
  PAIR_TEST ("flush", test_flush);
  PAIR_TEST ("close-drains", test_close_drains);
  g_test_add_func ("/channel/close-unref-lingers", test_close_unref_lingers);
  g_test_add_func ("/channel/unref-while-flusher-retries", test_unref_while_flusher_retries);
  g_test_add_func ("/channel/thread-default-context", test_thread_default_context);
  g_test_add_func ("/channel/peer-killed", test_peer_killed);
  g_test_add_func ("/channel/peer-echo", test_peer_echo);
  g_test_add_func ("/channel/peer-burst-then-close", test_peer_burst_then_close);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_inputs); i++)
    {
      g_autofree char *path = g_strdup_printf ("/channel/bad-input/%s", bad_inputs[i].name);
      g_test_add_data_func (path, GINT_TO_POINTER (bad_inputs[i].bad), test_bad_input);
    }
  g_test_add_func ("/channel/no-fd-leak", test_no_fd_leak);
  g_test_add_func ("/channel/new-for-fd-errors", test_new_for_fd_errors);
  g_test_add_func ("/channel/sender-without-loop", test_sender_without_loop);
  g_test_add_func ("/channel/burst-without-loop", test_burst_without_loop);
  g_test_add_func ("/channel/stream-transports", test_stream_transports);
  g_test_add_func ("/channel/memfd/echo", test_memfd_echo);
  g_test_add_func ("/channel/memfd/no-fd-leak", test_memfd_no_fd_leak);
  g_test_add_func ("/channel/memfd/peer-without", test_memfd_peer_without);
  g_test_add_data_func ("/channel/memfd/hostile/unsealed", GINT_TO_POINTER (MEMFD_UNSEALED), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/writable", GINT_TO_POINTER (MEMFD_WRITABLE), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/short", GINT_TO_POINTER (MEMFD_SHORT), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/long", GINT_TO_POINTER (MEMFD_LONG), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/over-limit", GINT_TO_POINTER (MEMFD_OVER_LIMIT), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/no-fd", GINT_TO_POINTER (MEMFD_NO_FD), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/not-a-memfd", GINT_TO_POINTER (MEMFD_NOT_A_MEMFD), test_memfd_hostile);
  g_test_add_data_func ("/channel/memfd/hostile/too-many-fds", GINT_TO_POINTER (MEMFD_TOO_MANY_FDS), test_memfd_hostile);

  return g_test_run ();
}
