import { establishedInodes, socketInodes } from '../../../host-agent/migration/tcp-connections';

// Lines as /proc/net/tcp prints them (proc(5)); st 01 = ESTABLISHED, 0A = LISTEN.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2F0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 22222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D2F2 0100007F:1F90 06 00000000:00000000 03:00000F4A 00000000     0        0 0 3 0000000000000000
`;

describe('established TCP connections of a shard', () => {
  it('finds only established connections (not listeners, not time-wait without an inode)', () => {
    expect([...establishedInodes(TCP)]).toEqual(['22222']);
  });

  it('counts a connection being closed or set up too: CRIU refuses to dump those sockets as it refuses established ones', () => {
    // st 08 = CLOSE_WAIT (the peer closed, the workload has not yet), 05 = FIN_WAIT2, 02 = SYN_SENT, 07 = CLOSE (unconnected, dumpable).
    const closing = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:D2F4 0100007F:1F90 08 00000000:00000000 00:00000000 00000000     0        0 33333 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:D2F6 0100007F:1F90 05 00000000:00000000 00:00000000 00000000     0        0 44444 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D2F8 0100007F:1F90 02 00000000:00000000 00:00000000 00000000     0        0 55555 1 0000000000000000 20 4 30 10 -1
   3: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 66666 1 0000000000000000 20 4 30 10 -1
`;
    expect([...establishedInodes(closing)]).toEqual(['33333', '44444', '55555']);
  });

  it('reads socket inodes from fd link targets and ignores everything else', () => {
    expect([...socketInodes(['socket:[22222]', '/dev/null', 'pipe:[333]', 'socket:[11111]', 'anon_inode:[eventfd]'])]).toEqual(['22222', '11111']);
  });

  it('reads an empty or missing table as no connections', () => {
    expect(establishedInodes('').size).toBe(0);
  });
});
