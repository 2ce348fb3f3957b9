/* ly-process-groups.c: the process groups of a hub's children, killed
 * when the hub dies
 *
 * Each child runs in a process group of its own, so that stopping it
 * reaches what it started too (a shell's commands, a bot's workers).
 * PR_SET_PDEATHSIG kills a child when the hub dies, but not the
 * child's own children, and a hub killed with SIGKILL runs no code.  So
 * a keeper process, forked once per manager, holds one end of a socket
 * and the list of groups the hub tells it about; when the hub dies the
 * socket ends, and the keeper kills every group still listed.
 *
 * The keeper is forked from a process that may have threads: between
 * fork and _exit it only makes async-signal-safe calls, and the list is
 * a fixed array (a group beyond it is not kept, with a warning).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "ly-process-groups-private.h"

/* how many groups one keeper holds: far more children than a hub runs */
#define MAX_GROUPS 4096

struct _LyProcessGroups
{
  int   socket;    /* the hub's end; -1 when the keeper could not start */
  GPid  keeper;
  guint n_kept;
};

/* The keeper's list: in its own copy of the memory after fork. */
static gint32 kept[MAX_GROUPS];

static void
keep (gint32 record)
{
  /* a positive record adds a group, a negative one drops it */
  gint32 leader = record > 0 ? record : -record;

  for (guint i = 0; i < MAX_GROUPS; i++)
    if (kept[i] == leader)
      {
        if (record < 0)
          kept[i] = 0;
        return;
      }

  if (record > 0)
    for (guint i = 0; i < MAX_GROUPS; i++)
      if (kept[i] == 0)
        {
          kept[i] = leader;
          return;
        }
}

static void G_GNUC_NORETURN
keeper_main (int socket_fd)
{
  gint32 record;
  int null_fd;

  /* not in the hub's group: a ^C or a kill of the hub's group must not
   * end the keeper before it did its work */
  setpgid (0, 0);
  signal (SIGINT, SIG_IGN);
  signal (SIGTERM, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  signal (SIGPIPE, SIG_IGN);

  /* hold nothing of the hub's: its sockets must end when it does */
  if (dup2 (socket_fd, 3) < 0)
    _exit (1);
  if (syscall (SYS_close_range, 4, ~0U, 0) < 0)
    for (int fd = 4; fd < 65536; fd++)
      close (fd);
  null_fd = open ("/dev/null", O_RDWR);
  if (null_fd >= 0)
    {
      dup2 (null_fd, 0);
      dup2 (null_fd, 1);
      if (null_fd > 3)
        close (null_fd);
    }
  for (guint i = 0; i < MAX_GROUPS; i++)
    kept[i] = 0;

  for (;;)
    {
      ssize_t n = read (3, &record, sizeof record);

      if (n == sizeof record)
        keep (record);
      else if (n < 0 && errno == EINTR)
        continue;
      else
        break;
    }

  for (guint i = 0; i < MAX_GROUPS; i++)
    if (kept[i] > 0)
      kill (-kept[i], SIGKILL);
  _exit (0);
}

LyProcessGroups *
ly_process_groups_new (void)
{
  LyProcessGroups *groups = g_new0 (LyProcessGroups, 1);
  int fds[2];

  groups->socket = -1;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    {
      g_warning ("Cannot keep the children’s process groups: %s", g_strerror (errno));
      return groups;
    }

  groups->keeper = fork ();
  if (groups->keeper == 0)
    keeper_main (fds[1]);

  g_close (fds[1], NULL);
  if (groups->keeper < 0)
    {
      g_warning ("Cannot keep the children’s process groups: %s", g_strerror (errno));
      g_close (fds[0], NULL);
      groups->keeper = 0;
      return groups;
    }

  groups->socket = fds[0];
  return groups;
}

/* Ends the keeper: what is still listed is killed (nothing, when every
 * child was stopped). */
void
ly_process_groups_free (LyProcessGroups *groups)
{
  if (groups->socket >= 0)
    g_close (groups->socket, NULL);
  if (groups->keeper > 0)
    {
      while (waitpid (groups->keeper, NULL, 0) < 0 && errno == EINTR)
        ;
    }
  g_free (groups);
}

static void
tell_keeper (LyProcessGroups *groups,
             gint32           record)
{
  if (groups->socket < 0)
    return;

  /* a keeper gone (killed by hand) costs us the protection, nothing more */
  if (send (groups->socket, &record, sizeof record, MSG_NOSIGNAL) != sizeof record)
    {
      g_warning ("The keeper of the children’s process groups is gone: %s", g_strerror (errno));
      g_close (groups->socket, NULL);
      groups->socket = -1;
    }
}

/* @leader's group (its process id) is killed if the hub dies. */
void
ly_process_groups_add (LyProcessGroups *groups,
                       GPid             leader)
{
  g_return_if_fail (leader > 0);

  /* the parent sets it too, so that it holds before the child runs */
  if (setpgid (leader, leader) < 0 && errno != EACCES && errno != ESRCH)
    g_debug ("setpgid (%d): %s", leader, g_strerror (errno));

  if (groups->n_kept >= MAX_GROUPS)
    {
      g_warning ("More than %u children: process %d’s group is not killed if the hub dies",
                 MAX_GROUPS, leader);
      return;
    }
  groups->n_kept++;
  tell_keeper (groups, leader);
}

void
ly_process_groups_remove (LyProcessGroups *groups,
                          GPid             leader)
{
  g_return_if_fail (leader > 0);

  if (groups->n_kept > 0)
    groups->n_kept--;
  tell_keeper (groups, -leader);
}

/* Signals every process still in @leader's group (the leader too,
 * unless it left it). */
void
ly_process_groups_signal (GPid leader,
                          int  signo)
{
  g_return_if_fail (leader > 0);

  kill (-leader, signo);
}

void
ly_process_groups_enter_own (void)
{
  setpgid (0, 0);
}
