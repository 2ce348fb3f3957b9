#!/usr/bin/python3
# bench-pipe.py: the same work as ly-bench-channel over Python's
# multiprocessing.Pipe(), the transport of the original liteyuki.comm.
# It sends Python objects with send()/recv() (pickled), as the original's
# Channel does.  Prints the seconds taken.
#
# Usage: bench-pipe.py throughput|roundtrip SIZE COUNT
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import multiprocessing
import sys
import time


def receiver(conn, count):
    conn.send(conn.recv())  # warm-up: both processes are running
    for _ in range(count):
        conn.recv()
    conn.send(count)


def echo(conn, count):
    for _ in range(count + 1):
        conn.send(conn.recv())


def main():
    work, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    payload = b'\x5a' * size
    parent, child = multiprocessing.Pipe()
    target = receiver if work == 'throughput' else echo
    process = multiprocessing.Process(target=target, args=(child, count))
    process.start()
    parent.send(b'')
    parent.recv()

    start = time.monotonic()
    if work == 'throughput':
        for _ in range(count):
            parent.send(payload)
        assert parent.recv() == count
    else:
        for _ in range(count):
            parent.send(payload)
            parent.recv()
    elapsed = time.monotonic() - start

    process.join()
    print('%.6f' % elapsed)


if __name__ == '__main__':
    main()
