/**
 * Which strategy moves a shard (pure): what the plan declares for its application, except that a
 * `checkpoint` shard holding established TCP connections moves by `restart` (CRIU would need
 * tcp-established repair and the peer's cooperation; DESIGN.md "Migration protocol").
 */
export type MigrationStrategy = 'checkpoint' | 'restart';

export function chooseStrategy(input: { declared: MigrationStrategy; holdsEstablishedTcp: boolean }): { strategy: MigrationStrategy; why: string } {
  if (input.declared === 'restart') return { strategy: 'restart', why: 'the plan declares the restart strategy' };
  if (input.holdsEstablishedTcp) return { strategy: 'restart', why: 'it holds established TCP connections' };
  return { strategy: 'checkpoint', why: 'the plan declares the checkpoint strategy' };
}
