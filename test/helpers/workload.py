"""A checkpointable test workload: one thread per process, no sockets, no pipes.

Keeps a counter in memory, increments it every 10 ms and writes it to STATE_FILE every
100 ms (atomically, via rename); holds MIB mebibytes of touched memory and writes the sha256
of that memory to STATE_FILE.sha256 at start and on every SIGUSR1.
With CHILDREN > 0 it first forks that many children, each doing the same with its own memory
(other content) and its own files, STATE_FILE.child<N> and STATE_FILE.child<N>.sha256.
usage: workload.py STATE_FILE MIB [CHILDREN]
"""
import hashlib
import os
import signal
import sys
import time


def write_atomically(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def run(state_file, mib, seed):
    # Every page touched, different content per MiB (and per process) so a misplaced page changes the digest.
    memory = bytearray(mib << 20)
    for i in range(mib):
        memory[i << 20:(i + 1) << 20] = hashlib.sha256((seed + str(i)).encode()).digest() * (1 << 15)

    def report_digest(*_):
        write_atomically(state_file + '.sha256', hashlib.sha256(memory).hexdigest())

    signal.signal(signal.SIGUSR1, report_digest)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    report_digest()
    counter = 0
    last_write = 0.0
    while True:
        counter += 1
        now = time.monotonic()
        if now - last_write >= 0.1:
            write_atomically(state_file, str(counter))
            last_write = now
        time.sleep(0.01)


state_file = sys.argv[1]
mib = int(sys.argv[2])
children = int(sys.argv[3]) if len(sys.argv) > 3 else 0
for n in range(children):
    if os.fork() == 0:
        run('%s.child%d' % (state_file, n), mib, 'child%d-' % n)
        os._exit(0)
run(state_file, mib, '')
