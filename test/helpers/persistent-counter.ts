/** Python workloads for restart-strategy tests, run as `python3 -c <script>`. */

/**
 * Keeps its counter in memory and in $SHARDFORM_STATE_DIR/counter (every 100 ms and on SIGTERM);
 * starts from the file, so a stop and a start elsewhere with the same state directory counts on.
 */
export const PERSISTENT_COUNTER = [
  'import os, signal, sys, time',
  "path = os.path.join(os.environ['SHARDFORM_STATE_DIR'], 'counter')",
  'counter = int(open(path).read()) if os.path.exists(path) else 0',
  'def save():',
  "    open(path + '.tmp', 'w').write(str(counter)); os.replace(path + '.tmp', path)",
  'def stop(*_):',
  '    save(); sys.exit(0)',
  'signal.signal(signal.SIGTERM, stop)',
  'last = 0.0',
  'while True:',
  '    counter += 1',
  '    if time.monotonic() - last >= 0.1:',
  '        save(); last = time.monotonic()',
  '    time.sleep(0.01)',
].join('\n');

/** A connection to itself over loopback: established on both ends, owned by the workload. */
export const TCP_CONNECTION = [
  'import socket',
  "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(1)",
  'client = socket.create_connection(server.getsockname()); peer, _ = server.accept()',
].join('\n');
