#!/usr/bin/python3
# ly-bench-python.py: Python to Python, Ly against the peers that a Python
# programmer would use instead, measured in the same run:
#   - conversion of a typical bot event: Ly.to_variant + Ly.from_variant
#     against pickle.dumps + pickle.loads;
#   - one way between two processes, the event dict and 1 MiB of bytes:
#     a Ly.Channel over a socketpair against multiprocessing.Pipe();
#   - round trip of a small string, the same two.
# Prints medians of --runs runs and the ratios.  Not a test: CI does not
# run it.  From the build tree:
#   meson devenv -C build /usr/bin/python3 ../tests/bench/ly-bench-python.py
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import argparse
import multiprocessing
import os
import pickle
import socket
import statistics
import subprocess
import sys
import time

EVENT = {'type': 'message', 'user_id': 123456789, 'group_id': 987654,
         'message': 'hello world ' * 3, 'self_id': 42, 'time': 1700000000,
         'sub_type': 'normal', 'tags': ['a', 'b', 'c']}
MIB = b'\x5a' * (1024 * 1024)


def ly():
    import gi
    gi.require_version('Ly', '1')
    from gi.repository import Ly
    return Ly


# The peer processes -------------------------------------------------------------

def ly_peer(fd, work, count):
    """The other process of a Ly measurement, on fd."""
    Ly = ly()
    channel = Ly.Channel.new_for_fd('bench', fd)
    if work == 'sink':
        channel.receive()                          # warm-up: both run
        channel.send('ready')
        for _ in range(count):
            channel.receive()
        channel.send(count)
        channel.flush()
    elif work == 'echo':
        for _ in range(count + 1):
            channel.send(channel.receive())
        channel.flush()


def pipe_sink(conn, count):
    conn.recv()                                    # warm-up: both run
    conn.send('ready')
    for _ in range(count):
        conn.recv()
    conn.send(count)


def pipe_echo(conn, count):
    for _ in range(count + 1):
        conn.send(conn.recv())


# Measurements ----------------------------------------------------------------

def conversion(count):
    Ly = ly()
    start = time.perf_counter()
    for _ in range(count):
        Ly.from_variant(Ly.to_variant(EVENT))
    ours = (time.perf_counter() - start) / count
    start = time.perf_counter()
    for _ in range(count):
        pickle.loads(pickle.dumps(EVENT))
    theirs = (time.perf_counter() - start) / count
    return ours * 1e6, theirs * 1e6


# A peer is (send, receive, wait): the measuring side's ends of a link to
# a process doing WORK ('sink' or 'echo') for COUNT messages.

def ly_link(work, count):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = subprocess.Popen([sys.executable, __file__, '--peer', work, str(count), str(theirs.fileno())],
                             pass_fds=[theirs.fileno()])
    theirs.close()
    channel = ly().Channel.new_for_fd('bench', ours.detach())

    def send(value):
        while True:
            try:
                return channel.send(value)
            except Exception:                      # FULL: let the queue drain
                channel.flush()
    return send, channel.receive, child.wait


def pipe_link(work, count):
    here, there = multiprocessing.Pipe()
    process = multiprocessing.Process(target=pipe_sink if work == 'sink' else pipe_echo, args=(there, count))
    process.start()
    return here.send, here.recv, process.join


def one_way(link, value, count):
    """Messages per second from here to a sink."""
    send, receive, wait = link('sink', count)
    send(value)
    receive()                                      # both processes run
    start = time.perf_counter()
    for _ in range(count):
        send(value)
    assert receive() == count
    elapsed = time.perf_counter() - start
    wait()
    return count / elapsed


def round_trip(link, value, count):
    """Microseconds from here to an echo and back."""
    send, receive, wait = link('echo', count)
    send(value)
    receive()
    start = time.perf_counter()
    for _ in range(count):
        send(value)
        receive()
    elapsed = time.perf_counter() - start
    wait()
    return elapsed / count * 1e6


def median_of(runs, function, *args):
    return statistics.median(function(*args) for _ in range(runs))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--quick', action='store_true', help='small counts, for a smoke run')
    parser.add_argument('--peer', nargs=3, metavar=('WORK', 'COUNT', 'FD'), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.peer:
        ly_peer(int(options.peer[2]), options.peer[0], int(options.peer[1]))
        return

    scale = 10 if options.quick else 1
    events, big, trips, conversions = 200000 // scale, 2000 // scale, 20000 // scale, 100000 // scale
    runs = options.runs
    rows = []

    convert_ours = statistics.median(conversion(conversions)[0] for _ in range(runs))
    convert_pickle = statistics.median(conversion(conversions)[1] for _ in range(runs))
    rows.append(('event dict: to_variant+from_variant / pickle dumps+loads (us)',
                 convert_ours, convert_pickle, convert_ours / convert_pickle, '<= 3x'))

    ours = median_of(runs, one_way, ly_link, EVENT, events)
    theirs = median_of(runs, one_way, pipe_link, EVENT, events)
    rows.append(('event dict one way (msg/s)', ours, theirs, ours / theirs, '>= 2x'))

    ours = median_of(runs, one_way, ly_link, MIB, big) * len(MIB) / 1e6
    theirs = median_of(runs, one_way, pipe_link, MIB, big) * len(MIB) / 1e6
    rows.append(('1 MiB bytes one way (MB/s)', ours, theirs, ours / theirs, '>= 1x'))

    ours = median_of(runs, round_trip, ly_link, 'ping', trips)
    theirs = median_of(runs, round_trip, pipe_link, 'ping', trips)
    rows.append(('small str round trip (us)', ours, theirs, ours / theirs, '<= 1.2x'))

    print('| measure | Ly | peer | ratio | bar |')
    print('|---|---:|---:|---:|---|')
    for name, ours, theirs, ratio, bar in rows:
        print('| %s | %.2f | %.2f | %.2fx | %s |' % (name, ours, theirs, ratio, bar))
    print('(medians of %d runs; peers: pickle, multiprocessing.Pipe(); same run)' % runs)


if __name__ == '__main__':
    main()
