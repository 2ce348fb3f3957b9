/* ly-soak.c: children of two languages exchange messages and storage
 * operations for a given time while the soak kills (SIGKILL), restarts,
 * stops and starts them at random; then it checks what must hold.
 *
 * Usage: ly-soak [--duration SECONDS] [--children N] [--seed S] [--c-only]
 *
 * Half the children run this program in C ("child" mode), half
 * soak_child.py (all in C with --c-only, for a build without
 * introspection, such as the sanitizers').  Each child
 *   - receives a numbered stream from the hub on its passive channel,
 *     and a numbered publication stream on the topic soak.topic: each
 *     must arrive in increasing order (an instance may miss the numbers
 *     sent before it started or while it was being killed, never reorder);
 *   - sends the hub, on its active channel, (kind, name, pid, value):
 *     "seq" 1, 2, 3... per instance, which must arrive without a gap and
 *     in order; "cas N" after each acknowledged compare-and-set increment
 *     of its entry in the shared counter (a dictionary, with a "total"),
 *     "set N" after each acknowledged set of soak.set.NAME to N, and
 *     "violation" if it saw something out of order.
 *
 * At the end every target is stopped and the soak checks:
 *   - no message out of order, no gap, no violation reported;
 *   - the counter's total is the sum of its entries (no lost update),
 *     and each child's entry is at least what it saw acknowledged, at
 *     most one more per kill (an increment in flight may have landed);
 *   - each soak.set.NAME holds at least the last acknowledged value;
 *   - the hub's open fds and threads are the same in the last minute as
 *     in the first, and its resident memory within 10% (it reports both
 *     minutes; for runs under 5 minutes, the first and last fifth).
 *     They are sampled at checkpoints (every tenth of the run, at most
 *     15 s apart, the first after as long), where the chaos pauses
 *     until every child runs again.
 *
 * Exit status 0 when everything holds, 1 otherwise.  Not part of
 * `meson test`: run it by hand, e.g. for 10 minutes:
 *
 *     meson devenv -C build tests/soak/ly-soak --duration 600
 *
 * (meson devenv: the Python children find the typelib and the override)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <liteyuki-comm.h>

#include "ly-test-util.h"

#define MESSAGE_TYPE "(ssuu)"
#define COUNTER_KEY  "soak.counter"
#define TOPIC        "soak.topic"

/* The C child --------------------------------------------------------------- */

typedef struct
{
  const char *name;
  guint32     pid;
  guint32     seq;
  guint32     last_passive;
  guint32     last_published;
  guint32     next_set;
  GRand      *rand;
  LyChannel  *active;
  LyStorage  *storage;
} Child;

static void
child_send (Child      *child,
            const char *kind,
            guint32     value)
{
  g_autoptr(GError) error = NULL;

  if (!ly_channel_send (child->active, g_variant_new (MESSAGE_TYPE, kind, child->name, child->pid, value), &error))
    g_printerr ("soak child %s: %s\n", child->name, error->message);
}

static void
on_passive (LyChannel *channel,
            GVariant  *message,
            Child     *child)
{
  guint32 n = g_variant_get_uint32 (message);

  if (n <= child->last_passive)
    child_send (child, "violation", n);
  child->last_passive = n;
}

static void
on_published (LyStorage  *storage,
              const char *topic,
              GVariant   *value,
              Child      *child)
{
  guint32 n = g_variant_get_uint32 (value);

  if (n <= child->last_published)
    child_send (child, "violation", n);
  child->last_published = n;
}

/* One compare-and-set increment of this child's entry and the total. */
static void
cas_increment (Child *child)
{
  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) current = ly_storage_get (child->storage, COUNTER_KEY, &error);
      g_auto(GVariantDict) dict = G_VARIANT_DICT_INIT (current);
      guint32 mine = 0, total = 0;

      if (error != NULL)
        return;
      g_variant_dict_lookup (&dict, child->name, "u", &mine);
      g_variant_dict_lookup (&dict, "total", "u", &total);
      g_variant_dict_insert (&dict, child->name, "u", mine + 1);
      g_variant_dict_insert (&dict, "total", "u", total + 1);

      if (ly_storage_compare_and_set (child->storage, COUNTER_KEY, current, g_variant_dict_end (&dict), &error))
        {
          child_send (child, "cas", mine + 1);
          return;
        }
      if (error != NULL)
        return;
    }
}

static gboolean
child_tick (gpointer user_data)
{
  Child *child = user_data;
  g_autofree char *key = g_strconcat ("soak.set.", child->name, NULL);

  child_send (child, "seq", ++child->seq);

  switch (g_rand_int_range (child->rand, 0, 4))
    {
    case 0:
      cas_increment (child);
      break;
    case 1:
      if (ly_storage_set (child->storage, key, g_variant_new_uint32 (child->next_set), NULL))
        child_send (child, "set", child->next_set++);
      break;
    default:
      break;    /* a message only */
    }

  return G_SOURCE_CONTINUE;
}

static int
run_child (void)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  g_autofree char *key = NULL;
  g_autoptr(GVariant) last_set = NULL;
  Child child = { 0, };

  child.name = ly_get_process_name ();
  child.pid = (guint32) getpid ();
  child.rand = g_rand_new ();
  child.active = ly_active_channel ();
  child.storage = ly_storage_get_default ();

  /* the set sequence goes on from what the storage holds */
  key = g_strconcat ("soak.set.", child.name, NULL);
  last_set = ly_storage_get (child.storage, key, NULL);
  child.next_set = last_set != NULL ? g_variant_get_uint32 (last_set) + 1 : 1;

  g_signal_connect (ly_passive_channel (), "received", G_CALLBACK (on_passive), &child);
  g_signal_connect (child.storage, "published::" TOPIC, G_CALLBACK (on_published), &child);
  ly_storage_subscribe (child.storage, TOPIC, &error);
  g_assert_no_error (error);

  g_timeout_add (2, child_tick, &child);
  g_main_loop_run (loop);
  return 0;
}

/* The hub ------------------------------------------------------------------- */

typedef struct
{
  char      *name;
  LyChannel *passive;
  guint32    next_passive;
  guint32    max_cas;         /* the highest acknowledged entry */
  guint32    max_set;
  guint      kills;
  guint      restarts;
  gboolean   stopped;
  guint32    seq_pid;         /* the instance whose seq is followed */
  guint32    last_seq;
} Target;

typedef struct
{
  gint64 time;
  guint  fds;
  guint  threads;
  gsize  rss_kib;
} Sample;

typedef struct
{
  LyProcessManager *manager;
  GPtrArray        *targets;
  GRand            *rand;
  GArray           *samples;
  guint32           next_published;
  guint64           messages;
  guint64           out_of_order;
  guint64           violations;
  guint             chaos_actions;
  gboolean          paused;       /* for a checkpoint */
  gboolean          ending;
} Soak;

static void
take_sample (Soak *soak)
{
  Sample sample = { g_get_monotonic_time (), ly_test_count_fds (), (guint) ly_test_proc_status ("Threads"),
                    ly_test_proc_status ("VmRSS") };

  g_array_append_val (soak->samples, sample);
}

static gboolean
all_alive (Soak *soak)
{
  for (guint i = 0; i < soak->targets->len; i++)
    if (!ly_process_manager_is_alive (soak->manager, ((Target *) g_ptr_array_index (soak->targets, i))->name))
      return FALSE;
  return TRUE;
}

/* The hub's fds depend on how many children run: it is sampled at
 * checkpoints, where the chaos pauses and every child runs. */
static gboolean
checkpoint_sample (gpointer user_data)
{
  Soak *soak = user_data;

  if (soak->ending)
    return G_SOURCE_REMOVE;
  if (!all_alive (soak))
    return G_SOURCE_CONTINUE;       /* again in a moment */

  /* a moment more for the new children's connections to settle */
  g_usleep (200 * 1000);
  take_sample (soak);
  soak->paused = FALSE;
  return G_SOURCE_REMOVE;
}

static gboolean
checkpoint (gpointer user_data)
{
  Soak *soak = user_data;

  if (soak->ending)
    return G_SOURCE_REMOVE;

  soak->paused = TRUE;
  for (guint i = 0; i < soak->targets->len; i++)
    {
      Target *target = g_ptr_array_index (soak->targets, i);

      if (target->stopped || !ly_process_manager_is_alive (soak->manager, target->name))
        target->stopped = !ly_process_manager_start (soak->manager, target->name, NULL) &&
                          !ly_process_manager_is_alive (soak->manager, target->name);
    }
  g_timeout_add (300, checkpoint_sample, soak);
  return G_SOURCE_CONTINUE;
}

static void
on_active (LyChannel *channel,
           GVariant  *message,
           Soak      *soak)
{
  const char *kind, *name;
  guint32 pid, value;
  Target *target = NULL;

  g_variant_get (message, "(&s&suu)", &kind, &name, &pid, &value);
  soak->messages++;
  for (guint i = 0; i < soak->targets->len; i++)
    if (g_str_equal (((Target *) g_ptr_array_index (soak->targets, i))->name, name))
      target = g_ptr_array_index (soak->targets, i);
  g_assert_nonnull (target);

  if (g_str_equal (kind, "seq"))
    {
      /* an instance's first message is 1: none is lost before it */
      guint32 expected = pid == target->seq_pid ? target->last_seq + 1 : 1;

      if (value != expected)
        {
          soak->out_of_order++;
          g_printerr ("soak: %s (pid %u) sent seq %u, expected %u\n", name, pid, value, expected);
        }
      target->seq_pid = pid;
      target->last_seq = value;
    }
  else if (g_str_equal (kind, "cas"))
    target->max_cas = MAX (target->max_cas, value);
  else if (g_str_equal (kind, "set"))
    target->max_set = MAX (target->max_set, value);
  else if (g_str_equal (kind, "violation"))
    {
      soak->violations++;
      g_printerr ("soak: %s (pid %u) saw %u out of order\n", name, pid, value);
    }
}

/* The streams to the children: a number on each passive channel, and a
 * publication, every few milliseconds. */
static gboolean
feed_children (gpointer user_data)
{
  Soak *soak = user_data;

  for (guint i = 0; i < soak->targets->len; i++)
    {
      Target *target = g_ptr_array_index (soak->targets, i);

      /* a channel whose process is gone keeps a bounded queue: FULL is fine */
      ly_channel_send (target->passive, g_variant_new_uint32 (++target->next_passive), NULL);
    }
  ly_storage_publish (ly_storage_get_default (), TOPIC, g_variant_new_uint32 (++soak->next_published), NULL);

  return G_SOURCE_CONTINUE;
}

static void
restarted (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  ly_process_manager_restart_finish (LY_PROCESS_MANAGER (source), result, NULL);
}

/* One random blow: SIGKILL, a restart, a stop, or a start of a stopped one. */
static gboolean
chaos (gpointer user_data)
{
  Soak *soak = user_data;
  Target *target = g_ptr_array_index (soak->targets, g_rand_int_range (soak->rand, 0, (gint32) soak->targets->len));
  GPid pid = ly_process_manager_get_pid (soak->manager, target->name, NULL);

  if (soak->ending)
    return G_SOURCE_REMOVE;
  if (soak->paused)
    return G_SOURCE_CONTINUE;

  soak->chaos_actions++;
  if (target->stopped)
    {
      target->stopped = !ly_process_manager_start (soak->manager, target->name, NULL);
      return G_SOURCE_CONTINUE;
    }

  switch (g_rand_int_range (soak->rand, 0, 6))
    {
    case 0:
    case 1:
    case 2:
      if (pid > 0)
        {
          kill (pid, SIGKILL);
          target->kills++;
        }
      break;
    case 3:
    case 4:
      /* a restart stops politely; an increment in flight may still land */
      target->kills++;
      target->restarts++;
      ly_process_manager_restart_async (soak->manager, target->name, NULL, restarted, NULL);
      break;
    default:
      target->kills++;
      ly_process_manager_stop_async (soak->manager, target->name, NULL, NULL, NULL);
      target->stopped = TRUE;
    }

  return G_SOURCE_CONTINUE;
}

static const Sample *
average_window (GArray *samples,
                gint64  from,
                gint64  to,
                Sample *out)
{
  guint n = 0;
  double rss = 0;

  *out = (Sample) { 0, 0, 0, 0 };
  for (guint i = 0; i < samples->len; i++)
    {
      const Sample *s = &g_array_index (samples, Sample, i);

      if (s->time < from || s->time >= to)
        continue;
      out->fds = MAX (out->fds, s->fds);
      out->threads = MAX (out->threads, s->threads);
      rss += (double) s->rss_kib;
      n++;
    }
  out->rss_kib = n > 0 ? (gsize) (rss / n) : 0;
  out->time = n;
  return out;
}

static gboolean
quit_loop (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

static int
run_hub (guint    duration,
         guint    n_children,
         gint64   seed,
         gboolean c_only)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *self_path = g_file_read_link ("/proc/self/exe", NULL);
  g_autofree char *script = g_build_filename (SOAK_SOURCE_DIR, "soak_child.py", NULL);
  g_autoptr(GVariant) counter = NULL;
  LyStorage *storage = ly_storage_get_default ();
  Soak soak = { 0, };
  gint64 started = g_get_monotonic_time ();
  gint64 window;
  guint32 total = 0, sum = 0;
  gboolean ok = TRUE;
  Sample first, last;

  soak.manager = manager;
  soak.targets = g_ptr_array_new ();
  soak.rand = g_rand_new_with_seed ((guint32) seed);
  soak.samples = g_array_new (FALSE, FALSE, sizeof (Sample));

  for (guint i = 0; i < n_children; i++)
    {
      Target *target = g_new0 (Target, 1);
      gboolean python = !c_only && i % 2 == 1;
      const char *c_argv[] = { self_path, "child", NULL };
      const char *python_argv[] = { "/usr/bin/python3", script, NULL };
      g_autofree char *active_name = NULL;
      g_autofree char *passive_name = NULL;

      target->name = g_strdup_printf ("%s%u", python ? "py" : "c", i);
      ly_process_manager_add_target (manager, target->name, python ? python_argv : c_argv, &error);
      g_assert_no_error (error);
      ly_process_manager_set_restart_policy (manager, target->name, LY_RESTART_ALWAYS, &error);
      g_assert_no_error (error);
      active_name = g_strconcat (target->name, "-active", NULL);
      g_signal_connect (ly_get_channel (active_name), "received::" MESSAGE_TYPE, G_CALLBACK (on_active), &soak);
      passive_name = g_strconcat (target->name, "-passive", NULL);
      target->passive = ly_get_channel (passive_name);
      g_ptr_array_add (soak.targets, target);
    }
  /* kills are the point: no back-off, no giving up on a crash loop */
  g_object_set (manager, "restart-delay", 0.05, "restart-delay-max", 0.05, "crash-loop-limit", G_MAXINT, NULL);
  ly_process_manager_start_all (manager, &error);
  g_assert_no_error (error);

  /* The first checkpoint comes once the children have run for a while:
   * the hub before any child connected (one thread, nothing allocated
   * for them yet) is not its working size. */
  g_timeout_add_seconds (CLAMP (duration / 10, 2, 15), checkpoint, &soak);
  g_timeout_add (5, feed_children, &soak);
  g_timeout_add (200, chaos, &soak);
  g_timeout_add_seconds (duration, quit_loop, loop);
  g_print ("soak: %u children (%s) for %u s, seed %" G_GINT64_FORMAT "\n",
           n_children, c_only ? "C" : "C and Python", duration, seed);
  g_main_loop_run (loop);

  /* a last checkpoint, at the very end */
  checkpoint (&soak);
  while (soak.paused)
    g_main_context_iteration (NULL, TRUE);

  soak.ending = TRUE;
  ly_process_manager_stop_all (manager, NULL, &error);
  g_assert_no_error (error);
  /* what the children sent before they stopped */
  while (g_main_context_iteration (NULL, FALSE))
    ;

  /* the counter */
  counter = ly_storage_get (storage, COUNTER_KEY, NULL);
  if (counter != NULL)
    {
      g_auto(GVariantDict) dict = G_VARIANT_DICT_INIT (counter);

      g_variant_dict_lookup (&dict, "total", "u", &total);
      for (guint i = 0; i < soak.targets->len; i++)
        {
          Target *target = g_ptr_array_index (soak.targets, i);
          g_autofree char *key = g_strconcat ("soak.set.", target->name, NULL);
          g_autoptr(GVariant) set = ly_storage_get (storage, key, NULL);
          guint32 entry = 0, stored_set = set != NULL ? g_variant_get_uint32 (set) : 0;

          g_variant_dict_lookup (&dict, target->name, "u", &entry);
          sum += entry;
          g_print ("  %-5s kills %3u (restarts %3u)  cas entry %6u, acknowledged %6u   set %6u, acknowledged %6u\n",
                   target->name, target->kills, target->restarts, entry, target->max_cas, stored_set, target->max_set);
          if (entry < target->max_cas || entry > target->max_cas + target->kills + 1)
            {
              g_print ("  FAIL: %s's counter entry %u is not within [%u, %u]\n", target->name, entry,
                       target->max_cas, target->max_cas + target->kills + 1);
              ok = FALSE;
            }
          if (stored_set < target->max_set)
            {
              g_print ("  FAIL: %s's acknowledged set %u is lost (stored %u)\n", target->name, target->max_set, stored_set);
              ok = FALSE;
            }
        }
    }
  g_print ("counter total %u, sum of entries %u%s\n", total, sum, total == sum ? "" : "  FAIL");
  ok = ok && total == sum && total > 0;

  g_print ("messages from children %" G_GUINT64_FORMAT ", out of order or missing %" G_GUINT64_FORMAT
           ", order violations seen by children %" G_GUINT64_FORMAT ", chaos actions %u\n",
           soak.messages, soak.out_of_order, soak.violations, soak.chaos_actions);
  ok = ok && soak.out_of_order == 0 && soak.violations == 0 && soak.messages > 0;

  /* the hub's resources: every checkpoint, then first and last minute
   * (or fifth) */
  g_print ("hub at the checkpoints (s: fds threads KiB):");
  for (guint i = 0; i < soak.samples->len; i++)
    {
      const Sample *s = &g_array_index (soak.samples, Sample, i);

      g_print ("%s%.0f: %u %u %zu", i % 6 == 0 ? "\n  " : "   ", (s->time - started) / 1e6, s->fds, s->threads, s->rss_kib);
    }
  g_print ("\n");

  window = MIN (60 * G_USEC_PER_SEC, (g_get_monotonic_time () - started) / 5) + G_USEC_PER_SEC;
  average_window (soak.samples, started, started + window, &first);
  average_window (soak.samples, g_get_monotonic_time () - window, g_get_monotonic_time (), &last);
  g_print ("hub, first window: fds %u, threads %u, resident %zu KiB (%u samples)\n",
           first.fds, first.threads, first.rss_kib, (guint) first.time);
  g_print ("hub, last window:  fds %u, threads %u, resident %zu KiB (%u samples), %+.1f%%\n",
           last.fds, last.threads, last.rss_kib, (guint) last.time,
           first.rss_kib > 0 ? 100.0 * ((double) last.rss_kib - (double) first.rss_kib) / (double) first.rss_kib : 0);
  if (first.fds != last.fds || first.threads != last.threads ||
      (double) last.rss_kib > 1.10 * (double) first.rss_kib)
    {
      g_print ("  FAIL: the hub's resources are not flat\n");
      ok = FALSE;
    }

  g_print ("%s\n", ok ? "soak: every invariant holds" : "soak: FAILED");

  for (guint i = 0; i < soak.targets->len; i++)
    {
      Target *target = g_ptr_array_index (soak.targets, i);

      g_free (target->name);
      g_free (target);
    }
  g_ptr_array_unref (soak.targets);
  g_array_unref (soak.samples);
  g_rand_free (soak.rand);
  return ok ? 0 : 1;
}

int
main (int   argc,
      char *argv[])
{
  gint duration = 60, children = 6;
  gint64 seed = 0;
  gboolean c_only = FALSE;
  GOptionEntry entries[] = {
    { "c-only", 0, 0, G_OPTION_ARG_NONE, &c_only, "Only C children (no Python)", NULL },
    { "duration", 'd', 0, G_OPTION_ARG_INT, &duration, "How long to run, in seconds (default 60)", "SECONDS" },
    { "children", 'n', 0, G_OPTION_ARG_INT, &children, "How many children, half C, half Python (default 6)", "N" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "Seed of the chaos (default: the time)", "S" },
    { NULL }
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;

  if (argc > 1 && g_str_equal (argv[1], "child"))
    return run_child ();

  context = g_option_context_new ("— run children under random kills and check the invariants");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  if (duration < 5 || children < 2)
    {
      g_printerr ("ly-soak: at least 5 seconds and 2 children\n");
      return 2;
    }
  if (seed == 0)
    seed = g_get_real_time ();

  signal (SIGPIPE, SIG_IGN);
  return run_hub ((guint) duration, (guint) children, seed, c_only);
}
