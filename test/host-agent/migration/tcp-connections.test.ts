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

  it('reads socket inodes from fd link targets and ignores everything else', () => {
    expect([...socketInodes(['socket:[22222]', '/dev/null', 'pipe:[333]', 'socket:[11111]', 'anon_inode:[eventfd]'])]).toEqual(['22222', '11111']);
  });

  it('reads an empty or missing table as no connections', () => {
    expect(establishedInodes('').size).toBe(0);
  });
});
