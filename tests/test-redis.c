/* test-redis.c: the storage on a real Redis server: URIs and errors, the
 * semantics, two hubs (processes, with C and Python children) sharing it,
 * and Redis going away and coming back
 *
 * Every test starts its own redis-server on a unix socket in a temporary
 * directory (no persistence) and stops it by pid.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <hiredis/hiredis.h>

#include "ly-test-util.h"

typedef struct
{
  char *dir;
  char *socket;
  char *uri;
  GPid  pid;
} Redis;

/* A test that fails must not leave its server behind. */
static void
die_with_test (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

/* (Re)starts the server of @redis at its socket. */
static void
redis_run (Redis      *redis,
           const char *password)
{
  g_autofree char *server = g_find_program_in_path ("redis-server");
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  /* CI installs it: a missing server is a failure, not a skip */
  g_assert_nonnull (server);

  g_ptr_array_add (argv, server);
  g_ptr_array_add (argv, (char *) "--port");
  g_ptr_array_add (argv, (char *) "0");
  g_ptr_array_add (argv, (char *) "--unixsocket");
  g_ptr_array_add (argv, redis->socket);
  g_ptr_array_add (argv, (char *) "--save");
  g_ptr_array_add (argv, (char *) "");
  g_ptr_array_add (argv, (char *) "--appendonly");
  g_ptr_array_add (argv, (char *) "no");
  g_ptr_array_add (argv, (char *) "--daemonize");
  g_ptr_array_add (argv, (char *) "no");
  g_ptr_array_add (argv, (char *) "--dir");
  g_ptr_array_add (argv, redis->dir);
  if (password != NULL)
    {
      g_ptr_array_add (argv, (char *) "--requirepass");
      g_ptr_array_add (argv, (char *) password);
    }
  g_ptr_array_add (argv, NULL);

  g_spawn_async (NULL, (char **) argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                 die_with_test, NULL, &redis->pid, &error);
  g_assert_no_error (error);

  /* the socket file appears at bind(), before listen(): ready once it
   * answers */
  for (;;)
    {
      redisContext *c = redisConnectUnix (redis->socket);
      redisReply *reply = c != NULL && c->err == 0 ? redisCommand (c, "PING") : NULL;
      gboolean ready = reply != NULL;   /* PONG, or NOAUTH with a password */

      g_clear_pointer (&reply, freeReplyObject);
      g_clear_pointer (&c, redisFree);
      if (ready)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10000);
    }
}

/* A redis-server of the test's own; @password may be NULL. */
static Redis *
redis_start (const char *password)
{
  Redis *redis = g_new0 (Redis, 1);
  g_autoptr(GError) error = NULL;

  redis->dir = g_dir_make_tmp ("ly-redis-XXXXXX", &error);
  g_assert_no_error (error);
  redis->socket = g_build_filename (redis->dir, "redis.sock", NULL);
  redis->uri = g_strdup_printf ("unix://%s", redis->socket);
  redis_run (redis, password);

  return redis;
}

/* Stops it by pid (the directory stays, for a restart). */
static void
redis_kill (Redis *redis,
            int    signal_number)
{
  if (redis->pid == 0)
    return;
  kill (redis->pid, signal_number);
  waitpid (redis->pid, NULL, 0);
  g_spawn_close_pid (redis->pid);
  redis->pid = 0;
  g_unlink (redis->socket);
}

static void
redis_free (Redis *redis)
{
  redis_kill (redis, SIGTERM);
  g_rmdir (redis->dir);
  g_free (redis->dir);
  g_free (redis->socket);
  g_free (redis->uri);
  g_free (redis);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Redis, redis_free)

/* A plain Redis client, to look at what the storage wrote. */
static redisReply *
redis_raw (Redis      *redis,
           const char *format,
           ...)
{
  redisContext *c = redisConnectUnix (redis->socket);
  redisReply *reply;
  va_list args;

  g_assert_nonnull (c);
  g_assert_cmpint (c->err, ==, 0);
  va_start (args, format);
  reply = redisvCommand (c, format, args);
  va_end (args);
  redisFree (c);

  g_assert_nonnull (reply);
  return reply;
}

/* URIs and errors ---------------------------------------------------------------- */

/* A server that is not Redis: it answers every connection with HTTP. */
static gpointer
serve_http (gpointer data)
{
  int listener = GPOINTER_TO_INT (data);
  int fd;

  while ((fd = accept (listener, NULL, NULL)) >= 0)
    {
      char buffer[256];
      const char answer[] = "HTTP/1.1 400 Bad Request\r\n\r\n";

      if (recv (fd, buffer, sizeof buffer, 0) > 0)
        g_assert_cmpint (send (fd, answer, sizeof answer - 1, MSG_NOSIGNAL), >, 0);
      close (fd);
    }

  return NULL;
}

static void
assert_uri_fails (const char *uri,
                  int         code,
                  const char *words)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyStorage) storage = ly_storage_new_for_uri (uri, &error);

  g_assert_null (storage);
  g_assert_error (error, LY_STORAGE_ERROR, code);
  g_test_message ("%s: %s", uri, error->message);
  if (words != NULL)
    g_assert_nonnull (strstr (error->message, words));
}

static void
test_uris_and_errors (void)
{
  g_autoptr(Redis) redis = redis_start ("s3cret");
  g_autoptr(GError) error = NULL;
  g_autoptr(LyStorage) storage = NULL;
  g_autofree char *good = g_strdup_printf ("unix://%s?prefix=t:", redis->socket);
  g_autofree char *wrong = NULL;
  g_autofree char *not_redis_path = g_build_filename (redis->dir, "http.sock", NULL);
  g_autofree char *not_redis = g_strdup_printf ("unix://%s", not_redis_path);
  g_autofree char *password_file = g_build_filename (redis->dir, "password", NULL);
  g_autofree char *with_file = g_strdup_printf ("unix://%s?password-file=%s", redis->socket, password_file);
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  int listener;

  assert_uri_fails ("memcached://localhost", LY_STORAGE_ERROR_INVALID_URI, NULL);
  assert_uri_fails ("redis://localhost/not-a-number", LY_STORAGE_ERROR_INVALID_URI, NULL);
  assert_uri_fails ("unix:relative/path", LY_STORAGE_ERROR_INVALID_URI, NULL);
  assert_uri_fails ("unix:///nonexistent/redis.sock", LY_STORAGE_ERROR_UNAVAILABLE, "/nonexistent/redis.sock");

  /* no password, and a wrong one: said, and the password is not in it */
  g_unsetenv ("LY_STORAGE_PASSWORD");
  assert_uri_fails (good, LY_STORAGE_ERROR_UNAVAILABLE, "password");
  wrong = g_strdup_printf ("unix://%s", redis->socket);
  g_setenv ("LY_STORAGE_PASSWORD", "wrong", TRUE);
  assert_uri_fails (wrong, LY_STORAGE_ERROR_UNAVAILABLE, "refused the password");

  /* AUTH works: from the environment, and from a file */
  g_setenv ("LY_STORAGE_PASSWORD", "s3cret", TRUE);
  storage = ly_storage_new_for_uri (good, &error);
  g_assert_no_error (error);
  g_assert_true (ly_storage_set (storage, "auth", g_variant_new_boolean (TRUE), &error));
  g_assert_no_error (error);
  g_clear_object (&storage);
  g_unsetenv ("LY_STORAGE_PASSWORD");
  g_assert_true (g_file_set_contents (password_file, "s3cret\n", -1, NULL));
  storage = ly_storage_new_for_uri (with_file, &error);
  g_assert_no_error (error);
  g_clear_object (&storage);

  /* a server that speaks something else */
  listener = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_strlcpy (address.sun_path, not_redis_path, sizeof address.sun_path);
  g_assert_cmpint (bind (listener, (struct sockaddr *) &address, sizeof address), ==, 0);
  g_assert_cmpint (listen (listener, 4), ==, 0);
  g_thread_unref (g_thread_new ("http", serve_http, GINT_TO_POINTER (listener)));
  assert_uri_fails (not_redis, LY_STORAGE_ERROR_UNAVAILABLE, "does not answer as a Redis server does");
  shutdown (listener, SHUT_RDWR);
  g_unlink (not_redis_path);
  g_unlink (password_file);

  /* local: is the store of this process */
  storage = ly_storage_new_for_uri ("local:", &error);
  g_assert_no_error (error);
  g_assert_false (ly_storage_is_proxy (storage));
}

/* Semantics, in one process ------------------------------------------------------- */

typedef struct
{
  GPtrArray *changes;
  guint      missed;
} Recorder;

static void
record_change (LyStorage  *storage,
               const char *key,
               GVariant   *value,
               Recorder   *recorder)
{
  g_autofree char *text = value != NULL ? g_variant_print (value, FALSE) : g_strdup ("deleted");

  g_ptr_array_add (recorder->changes, g_strdup_printf ("%s=%s", key, text));
}

static void
record_missed (LyStorage *storage,
               Recorder  *recorder)
{
  recorder->missed++;
}

static void
recorder_watch (Recorder  *recorder,
                LyStorage *storage)
{
  recorder->changes = g_ptr_array_new_with_free_func (g_free);
  g_signal_connect (storage, "changed", G_CALLBACK (record_change), recorder);
  g_signal_connect (storage, "changes-missed", G_CALLBACK (record_missed), recorder);
}

static void
test_semantics (void)
{
  g_autoptr(Redis) redis = redis_start (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(LyStorage) storage = ly_storage_new_for_uri (redis->uri, &error);
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) all = NULL;
  g_auto(GStrv) keys = NULL;
  redisReply *raw;
  Recorder recorder = { 0, };

  g_assert_no_error (error);
  recorder_watch (&recorder, storage);

  g_assert_true (ly_storage_set (storage, "name", g_variant_new_string ("hello"), &error));
  g_assert_true (ly_storage_set (storage, "name", g_variant_new_string ("hello"), &error));  /* no change */
  g_assert_true (ly_storage_set (storage, "n", g_variant_new_int32 (1), &error));
  g_assert_true (ly_storage_set (storage, "héllo wörld", g_variant_new ("(sas)", "x", NULL), &error));
  g_assert_no_error (error);

  value = ly_storage_get (storage, "name", &error);
  g_assert_cmpstr (g_variant_get_string (value, NULL), ==, "hello");
  g_clear_pointer (&value, g_variant_unref);
  g_assert_null (ly_storage_get (storage, "missing", &error));
  g_assert_no_error (error);
  g_assert_true (ly_storage_contains (storage, "n", &error));
  g_assert_false (ly_storage_contains (storage, "missing", &error));

  /* the documented encoding: type, NUL, normal form */
  raw = redis_raw (redis, "GET ly:k:name");
  g_assert_cmpint (raw->type, ==, REDIS_REPLY_STRING);
  g_assert_cmpmem (raw->str, raw->len, "s\0hello\0", 8);
  freeReplyObject (raw);

  /* compare-and-set compares exactly: an int32 1 is not a uint32 1 */
  g_assert_false (ly_storage_compare_and_set (storage, "n", g_variant_new_uint32 (1), g_variant_new_int32 (2), &error));
  g_assert_true (ly_storage_compare_and_set (storage, "n", g_variant_new_int32 (1), g_variant_new_int32 (2), &error));
  g_assert_false (ly_storage_compare_and_set (storage, "new", g_variant_new_int32 (0), g_variant_new_int32 (1), &error));
  g_assert_true (ly_storage_compare_and_set (storage, "new", NULL, g_variant_new_int32 (1), &error));
  g_assert_true (ly_storage_compare_and_set (storage, "new", g_variant_new_int32 (1), NULL, &error));
  g_assert_no_error (error);

  keys = ly_storage_list_keys (storage, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (keys), ==, 3);
  g_assert_cmpstr (keys[0], ==, "héllo wörld");
  g_assert_cmpstr (keys[1], ==, "n");
  g_assert_cmpstr (keys[2], ==, "name");
  all = ly_storage_get_all (storage, &error);
  g_assert_cmpuint (g_variant_n_children (all), ==, 3);

  g_assert_true (ly_storage_delete (storage, "name", &error));
  g_assert_true (ly_storage_delete (storage, "name", &error));   /* not there: no change */
  g_assert_null (ly_storage_get (storage, "name", &error));

  /* every real change once, in order, before the call returned */
  g_assert_cmpuint (recorder.changes->len, ==, 7);
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 0), ==, "name='hello'");
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 1), ==, "n=1");
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 2), ==, "héllo wörld=('x', [])");
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 3), ==, "n=2");
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 4), ==, "new=1");
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 5), ==, "new=deleted");
  g_assert_cmpstr (g_ptr_array_index (recorder.changes, 6), ==, "name=deleted");
  g_assert_cmpuint (recorder.missed, ==, 0);

  /* a batch larger than what one Redis call takes at once */
  for (guint i = 0; i < 2500; i++)
    {
      g_autofree char *key = g_strdup_printf ("many.%u", i);

      ly_storage_set_async (storage, key, g_variant_new_uint32 (i), NULL, NULL, NULL);
    }
  /* a blocking set completes after every earlier one, and their changes */
  g_assert_true (ly_storage_set (storage, "many.done", g_variant_new_boolean (TRUE), &error));
  g_assert_cmpuint (recorder.changes->len, ==, 7 + 2500 + 1);
  g_strfreev (keys);
  keys = ly_storage_list_keys (storage, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (keys), ==, 2 + 2500 + 1);
  g_clear_pointer (&value, g_variant_unref);
  value = ly_storage_get (storage, "many.2499", &error);
  g_assert_cmpuint (g_variant_get_uint32 (value), ==, 2499);
  g_ptr_array_unref (recorder.changes);
}

/* Runs the default context until @done, for at most 10 s. */
#define RUN_UNTIL(done)                                                   \
  G_STMT_START {                                                          \
    gint64 until = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;         \
    while (!(done))                                                       \
      {                                                                   \
        g_assert_cmpint (g_get_monotonic_time (), <, until);              \
        g_main_context_iteration (NULL, FALSE);                           \
        g_usleep (1000);                                                  \
      }                                                                   \
  } G_STMT_END

/* Two stores on one server: what one writes, the other hears of, in the
 * same order, and reads; publications cross too. */
static void
on_published (LyStorage  *storage,
              const char *topic,
              GVariant   *value,
              GPtrArray  *seen)
{
  g_ptr_array_add (seen, g_variant_print (value, FALSE));
}

static void
test_two_stores (void)
{
  g_autoptr(Redis) redis = redis_start (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) error_b = NULL;
  g_autoptr(LyStorage) a = ly_storage_new_for_uri (redis->uri, &error);
  g_autoptr(LyStorage) b = ly_storage_new_for_uri (redis->uri, &error_b);
  g_autoptr(GPtrArray) published = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GVariant) value = NULL;
  Recorder in_a = { 0, }, in_b = { 0, };

  g_assert_no_error (error);
  g_assert_no_error (error_b);
  recorder_watch (&in_a, a);
  recorder_watch (&in_b, b);
  g_signal_connect (b, "published::news", G_CALLBACK (on_published), published);
  g_assert_true (ly_storage_subscribe (b, "news", &error));

  for (int i = 0; i < 100; i++)
    {
      g_assert_true (ly_storage_set (i % 2 ? a : b, "k", g_variant_new_int32 (i), &error));
      g_assert_no_error (error);
      g_assert_true (ly_storage_publish (a, "news", g_variant_new_int32 (i), &error));
    }
  RUN_UNTIL (in_b.changes->len >= 100 && in_a.changes->len >= 100 && published->len >= 100);

  for (int i = 0; i < 100; i++)
    {
      g_autofree char *expected = g_strdup_printf ("k=%d", i);
      g_autofree char *expected_news = g_strdup_printf ("%d", i);

      g_assert_cmpstr (g_ptr_array_index (in_a.changes, i), ==, expected);
      g_assert_cmpstr (g_ptr_array_index (in_b.changes, i), ==, expected);
      g_assert_cmpstr (g_ptr_array_index (published, i), ==, expected_news);
    }

  /* b heard the last change: it reads it (from its cache or Redis) */
  value = ly_storage_get (b, "k", &error);
  g_assert_cmpint (g_variant_get_int32 (value), ==, 99);
  g_ptr_array_unref (in_a.changes);
  g_ptr_array_unref (in_b.changes);
}

/* Redis goes away and comes back ------------------------------------------------- */

static gpointer
set_in_thread (gpointer data)
{
  GError *error = NULL;

  ly_storage_set (data, "from-thread", g_variant_new_int32 (1), &error);
  return error;
}

/* Two ends of a peer-to-peer D-Bus connection. */
typedef struct
{
  GDBusConnection *server;
  GDBusConnection *client;
} DBusPair;

static void
count_signal (GDBusConnection *connection,
              const char      *sender,
              const char      *path,
              const char      *interface,
              const char      *signal_name,
              GVariant        *parameters,
              gpointer         user_data)
{
  (*(guint *) user_data)++;
}

static void
test_redis_restart (void)
{
  g_autoptr(Redis) redis = redis_start (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) error_other = NULL;
  g_autoptr(LyStorage) storage = ly_storage_new_for_uri (redis->uri, &error);
  g_autoptr(LyStorage) other = ly_storage_new_for_uri (redis->uri, &error_other);
  g_autoptr(GPtrArray) published = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GVariant) value = NULL;
  Recorder recorder = { 0, }, in_other = { 0, };
  DBusPair dbus = { NULL, NULL };
  guint dbus_missed = 0;
  GError *thread_error;
  gint64 start;

  g_assert_no_error (error);
  g_assert_no_error (error_other);
  /* the D-Bus surface says it too */
  ly_test_dbus_pair_open (&dbus.server, &dbus.client);
  g_assert_true (ly_storage_export (storage, dbus.server, &error));
  g_assert_no_error (error);
  g_dbus_connection_signal_subscribe (dbus.client, NULL, "icu.liteyuki.Comm1.Storage", "ChangesMissed",
                                      LY_DBUS_STORAGE_PATH, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                      count_signal, &dbus_missed, NULL);
  /* the backend warns that the server went away, once per attempt to
   * reach it: how many depends on how fast it comes back */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_object_set (storage, "timeout", 1.0, NULL);
  recorder_watch (&recorder, storage);
  recorder_watch (&in_other, other);
  g_signal_connect (storage, "published::news", G_CALLBACK (on_published), published);
  g_assert_true (ly_storage_subscribe (storage, "news", &error));
  g_assert_true (ly_storage_set (storage, "k", g_variant_new_int32 (1), &error));
  value = ly_storage_get (storage, "k", &error);
  g_assert_cmpint (g_variant_get_int32 (value), ==, 1);
  g_clear_pointer (&value, g_variant_unref);

  /* gone: every operation fails within the bound, in this thread and in
   * another; nothing hangs; the cache is not served as current */
  redis_kill (redis, SIGKILL);
  start = g_get_monotonic_time ();
  g_assert_false (ly_storage_set (storage, "k", g_variant_new_int32 (2), &error));
  g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE);
  g_clear_error (&error);
  g_assert_null (ly_storage_get (storage, "k", &error));
  g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE);
  g_clear_error (&error);
  thread_error = g_thread_join (g_thread_new ("setter", set_in_thread, storage));
  g_assert_error (thread_error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE);
  g_clear_error (&thread_error);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 3 * G_USEC_PER_SEC);

  /* back, at the same address: reconnected, told, working again */
  redis_run (redis, NULL);
  RUN_UNTIL (recorder.missed == 1 && in_other.missed == 1 && dbus_missed == 1);
  g_assert_true (ly_storage_set (storage, "k", g_variant_new_int32 (3), &error));
  g_assert_no_error (error);
  value = ly_storage_get (other, "k", &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (value), ==, 3);

  /* the subscription was restored */
  g_assert_true (ly_storage_publish (other, "news", g_variant_new_string ("again"), &error));
  g_assert_no_error (error);
  RUN_UNTIL (published->len == 1);
  g_assert_cmpstr (g_ptr_array_index (published, 0), ==, "'again'");

  ly_storage_unexport (storage, dbus.server);
  g_object_unref (dbus.client);
  g_object_unref (dbus.server);
  g_ptr_array_unref (recorder.changes);
  g_ptr_array_unref (in_other.changes);
}

/* Two hubs, standing for two hosts ------------------------------------------------ */

typedef struct
{
  GSubprocess *process;
  GPtrArray   *changes;    /* the values of "counter" it announced, in order */
  GString     *partial;
  gboolean     ready;
  gboolean     eof;        /* no read is pending */
} Hub;

static void read_hub_output (GObject *source, GAsyncResult *result, gpointer user_data);

static void
hub_read_more (Hub *hub)
{
  GInputStream *out = g_subprocess_get_stdout_pipe (hub->process);

  g_input_stream_read_bytes_async (out, 64 * 1024, G_PRIORITY_DEFAULT, NULL, read_hub_output, hub);
}

static void
read_hub_output (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Hub *hub = user_data;
  g_autoptr(GBytes) bytes = g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result, NULL);
  char *newline;

  if (bytes == NULL || g_bytes_get_size (bytes) == 0)
    {
      hub->eof = TRUE;
      return;
    }

  g_string_append_len (hub->partial, g_bytes_get_data (bytes, NULL), (gssize) g_bytes_get_size (bytes));
  while ((newline = strchr (hub->partial->str, '\n')) != NULL)
    {
      g_autofree char *line = g_strndup (hub->partial->str, (gsize) (newline - hub->partial->str));

      g_string_erase (hub->partial, 0, newline - hub->partial->str + 1);
      if (g_str_equal (line, "ready"))
        hub->ready = TRUE;
      else if (g_str_has_prefix (line, "changed counter "))
        g_ptr_array_add (hub->changes, g_strdup (line + strlen ("changed counter ")));
    }
  hub_read_more (hub);
}

static Hub *
hub_start (Redis      *redis,
           const char *children,
           guint       n_children,
           const char *output)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_autofree char *path = g_test_build_filename (G_TEST_BUILT, "ly-test-hub", NULL);
  g_autofree char *n = g_strdup_printf ("%u", n_children);
  g_autoptr(GError) error = NULL;
  Hub *hub = g_new0 (Hub, 1);

  g_subprocess_launcher_set_child_setup (launcher, die_with_test, NULL, NULL);
  g_subprocess_launcher_setenv (launcher, "LY_TEST_HUB_STORAGE", redis->uri, TRUE);
  g_subprocess_launcher_setenv (launcher, "LY_TEST_HUB_CHILD", children, TRUE);
  g_subprocess_launcher_setenv (launcher, "LY_TEST_OUTPUT", output, TRUE);
  hub->process = g_subprocess_launcher_spawn (launcher, &error, path, n, NULL);
  g_assert_no_error (error);
  hub->changes = g_ptr_array_new_with_free_func (g_free);
  hub->partial = g_string_new (NULL);
  hub_read_more (hub);

  return hub;
}

static void
hub_stop (Hub *hub)
{
  g_autoptr(GError) error = NULL;

  g_subprocess_send_signal (hub->process, SIGTERM);
  g_subprocess_wait (hub->process, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (hub->process));
  g_assert_cmpint (g_subprocess_get_exit_status (hub->process), ==, 0);
  RUN_UNTIL (hub->eof);
}

static void
hub_free (Hub *hub)
{
  g_object_unref (hub->process);
  g_ptr_array_unref (hub->changes);
  g_string_free (hub->partial, TRUE);
  g_free (hub);
}

static guint
count_lines (const char *path,
             const char *text)
{
  g_autofree char *contents = NULL;
  guint n = 0;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return 0;
  for (const char *p = contents; (p = strstr (p, text)) != NULL; p++)
    n++;
  return n;
}

static void
test_two_hubs (void)
{
  g_autoptr(Redis) redis = redis_start (NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *c_child = g_test_build_filename (G_TEST_BUILT, "ly-test-storage-child", NULL);
  g_autofree char *py_child = g_test_build_filename (G_TEST_DIST, "helpers", "storage_child.py", NULL);
  g_autofree char *output = g_build_filename (redis->dir, "output", NULL);
  const char *python = g_getenv ("LY_TEST_PYTHON");
  guint n = ly_test_scaled (5000);
  g_autofree char *cas_c = g_strdup_printf ("%s wait go cas-increment counter %u", c_child, n);
  g_autofree char *cas_py = g_strdup_printf ("%s %s counter %u go", python, py_child, n);
  g_autofree char *done_line = g_strdup_printf ("incremented %u times", n);
  g_autofree char *children_a = g_strdup_printf ("%s|%s|%s subscribe news 1000", cas_c, cas_py, c_child);
  g_autofree char *children_b = g_strdup_printf ("%s|%s|%s wait-publish go news 1 1000", cas_c, cas_py, c_child);
  g_autoptr(LyStorage) client = NULL;
  g_autoptr(GVariant) total = NULL;
  Hub *a, *b;

  if (python == NULL)
    {
      g_test_skip ("no introspection data in this build: no Python children");
      return;
    }

  a = hub_start (redis, children_a, 3, output);
  b = hub_start (redis, children_b, 3, output);
  RUN_UNTIL (a->ready && b->ready && count_lines (output, "ready") == 1);

  /* both hubs hear every change from here, and the subscriber (on hub
   * a) is ready: the children (the publisher on hub b too) go */
  client = ly_storage_new_for_uri (redis->uri, &error);
  g_assert_no_error (error);
  g_assert_true (ly_storage_set (client, "go", g_variant_new_boolean (TRUE), &error));

  {
    gint64 until = g_get_monotonic_time () + 240 * G_USEC_PER_SEC;

    while (count_lines (output, done_line) < 4 || count_lines (output, "received 1000 publications") < 1 ||
           a->changes->len < 4 * n || b->changes->len < 4 * n)
      {
        if (g_get_monotonic_time () >= until)
          g_test_message ("done %u of 4, %u publications received, a heard %u, b heard %u",
                          count_lines (output, done_line), count_lines (output, "received 1000 publications"),
                          a->changes->len, b->changes->len);
        g_assert_cmpint (g_get_monotonic_time (), <, until);
        g_assert_cmpuint (count_lines (output, "out of order"), ==, 0);
        g_main_context_iteration (NULL, FALSE);
        g_usleep (5000);
      }
  }

  /* exact across hubs, and every change announced once, in one order;
   * the client reads after a write of its own, which completes once it
   * heard every change before it (its cache may lag until then: it saw
   * none of the children's values) */
  g_assert_true (ly_storage_set (client, "done", g_variant_new_boolean (TRUE), &error));
  total = ly_storage_get (client, "counter", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_get_uint32 (total), ==, 4 * n);
  g_assert_cmpuint (a->changes->len, ==, 4 * n);
  g_assert_cmpuint (b->changes->len, ==, 4 * n);
  for (guint i = 0; i < 4 * n; i++)
    {
      g_autofree char *expected = g_strdup_printf ("uint32 %u", i + 1);

      g_assert_cmpstr (g_ptr_array_index (a->changes, i), ==, expected);
      g_assert_cmpstr (g_ptr_array_index (b->changes, i), ==, expected);
    }

  hub_stop (a);
  hub_stop (b);
  hub_free (a);
  hub_free (b);
  g_unlink (output);
}

/* A hub's children hear that changes may have gone unannounced. */
static void
test_children_told (void)
{
  g_autoptr(Redis) redis = redis_start (NULL);
  g_autofree char *c_child = g_test_build_filename (G_TEST_BUILT, "ly-test-storage-child", NULL);
  g_autofree char *output = g_build_filename (redis->dir, "output", NULL);
  g_autofree char *children = g_strdup_printf ("%s watch-missed", c_child);
  Hub *hub;

  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  hub = hub_start (redis, children, 1, output);
  RUN_UNTIL (hub->ready && count_lines (output, "ready") == 1);

  redis_kill (redis, SIGKILL);
  redis_run (redis, NULL);
  RUN_UNTIL (count_lines (output, "missed") == 1);

  hub_stop (hub);
  hub_free (hub);
  g_unlink (output);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_unsetenv ("LY_STORAGE_PASSWORD");

  g_test_add_func ("/redis/uris-and-errors", test_uris_and_errors);
  g_test_add_func ("/redis/semantics", test_semantics);
  g_test_add_func ("/redis/two-stores", test_two_stores);
  g_test_add_func ("/redis/two-hubs", test_two_hubs);
  g_test_add_func ("/redis/restart", test_redis_restart);
  g_test_add_func ("/redis/children-told", test_children_told);

  return g_test_run ();
}
