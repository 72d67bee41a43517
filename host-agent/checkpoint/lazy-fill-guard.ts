/**
 * A guard for a lazy restore's fill: kills the restored tree when `criu lazy-pages` ends before
 * the agent saw it finish.
 *
 * Why: once the daemon is gone its userfaultfd is closed, and every page it had not put in yet
 * reads as zeros to the restored tree, which then runs on with wrong memory (and may write it
 * into its state directory) until something destroys it. While the agent lives it sees the
 * daemon's exit and kills the tree itself; the guard covers an agent that dies with its daemon:
 * a service manager stopping the agent kills every process of the agent's cgroup, the daemon
 * included (it must run there, not in the shard's cgroup: its buffer can be as large as the
 * shard's largest mapping, which would push the shard past its memory limit).
 *
 * The guard is a shell loop inside the shard's own cgroups and session, so that stop does not
 * reach it, while destroying the shard does. It waits for the daemon to end; then, unless the
 * agent wrote `FILLED_MARK` into the image directory (it does so as soon as it sees the daemon
 * exit 0) within `graceMs`, it kills the tree whose pid CRIU wrote (`restored.pid`), known by its
 * pid and start time from when it first saw it (a tree that died meanwhile leaves its pid to
 * others, which the guard does not kill). Killing a
 * complete copy for a slow agent is safe: the restore then fails and the migration aborts with
 * the source's copy intact. Every loop is bounded.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inCgroups, JOIN_FAILED_EXIT } from './join-cgroups';

/** Written into the image directory by the agent when the daemon exited 0: the guard leaves the tree alone. */
export const FILLED_MARK = 'lazy-pages.filled';

/** Written by the guard into the image directory when it kills the restored tree: what it saw. */
export const GUARD_KILLED = 'lazy-pages.guard-killed';

/** One poll of the guard, ms. */
const POLL_MS = 20;

const GUARD_SCRIPT = [
  'daemon=$1; dir=$2; polls=$3; grace=$4',
  // The daemon is its pid AND its start time (field 22 of /proc/<pid>/stat, after the command in
  // parentheses): the agent reaps it the moment it exits, and the pid may then go to another
  // process, which the guard would wait on (up to the longest a CRIU run may take) and then kill.
  // A zombie still counts as running: its agent has not seen it end yet.
  'started() { stat=; { read -r stat < "/proc/$1/stat"; } 2>/dev/null; rest=${stat##*)}; set -- $rest; at=${20:-}; }',
  'started "$daemon"; born=$at',
  'running() { started "$daemon"; [ -n "$born" ] && [ "$at" = "$born" ]; }',
  // The restored tree likewise, noted once CRIU wrote its pid: a tree that died (its pid free
  // for another process) is not what the guard kills at the end.
  'tree=; tree_born=',
  'note_tree() { [ -z "$tree" ] && [ -s "$dir/restored.pid" ] || return 0; t=$(cat "$dir/restored.pid"); started "$t"; [ -n "$at" ] && { tree=$t; tree_born=$at; }; return 0; }',
  'echo watching',
  'i=0',
  'while running && [ "$i" -lt "$polls" ]; do note_tree; sleep 0.02; i=$((i+1)); done',
  // Still there after the longest a CRIU run may take: hung; it goes too.
  'if running; then kill -9 "$daemon"; fi',
  'j=0',
  `while [ ! -e "$dir/${FILLED_MARK}" ] && [ "$j" -lt "$grace" ]; do note_tree; sleep 0.02; j=$((j+1)); done`,
  `[ -e "$dir/${FILLED_MARK}" ] && exit 0`,
  // A restore that wrote its pid only now (the daemon died during it) is the tree now there.
  'note_tree',
  // Said where an operator looks first (beside CRIU's logs), then done.
  'if [ -n "$tree" ]; then started "$tree"; if [ "$at" = "$tree_born" ]; then',
  `  echo "daemon $daemon ended and the fill was not confirmed within the grace: killed the restored tree $tree" > "$dir/${GUARD_KILLED}"`,
  '  kill -9 "$tree" 2>/dev/null',
  // (a tree on zero pages often crashes by itself first)
  `else echo "daemon $daemon ended and the fill was not confirmed within the grace: the restored tree $tree had already ended" > "$dir/${GUARD_KILLED}"; fi`,
  // Never seen alive: CRIU's restore failed with the daemon gone, and ended the tree itself.
  `else echo "daemon $daemon ended and the fill was not confirmed within the grace: no restored tree was running ($([ -s "$dir/restored.pid" ] && echo "restored.pid names $(cat "$dir/restored.pid")" || echo 'no restored.pid'))" > "$dir/${GUARD_KILLED}"; fi`,
  'exit 1',
].join('\n');

export interface LazyFillGuard {
  /**
   * Tells the guard the fill is complete (the mark) and waits for it to end. Resolves once it
   * ended without touching the tree; rejects when the mark cannot be written or the guard had
   * already decided to kill the tree (an agent slower than the grace): its decision is the one
   * that stands, so the caller never reports a tree that is about to be killed.
   */
  filled(): Promise<void>;
  /** Ends the guard without a word (the agent handles the tree itself). */
  stop(): void;
  /** Resolves when the guard has ended, with its exit code (1: it killed, or would have killed, the tree). */
  readonly ended: Promise<number | null>;
}

/**
 * Starts the guard of `daemonPid`'s fill of the image in `dir`, inside the cgroups of
 * `procsFiles`; resolves once it watches (it is in those cgroups), rejects with why it could not
 * start (a cgroup it could not join).
 */
export function startLazyFillGuard(opts: { daemonPid: number; dir: string; procsFiles: readonly string[]; graceMs: number; maxWatchMs: number }): Promise<LazyFillGuard> {
  const polls = Math.max(1, Math.ceil(opts.maxWatchMs / POLL_MS));
  const grace = Math.max(1, Math.ceil(opts.graceMs / POLL_MS));
  const [file, argv] = inCgroups(opts.procsFiles, '/bin/sh', ['-c', GUARD_SCRIPT, 'shardform-lazy-guard', String(opts.daemonPid), opts.dir, String(polls), String(grace)]);
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
    const ended = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
    const stop = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    let watching = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      if (watching || !chunk.toString('utf8').includes('watching')) return;
      watching = true;
      resolve({
        filled: async () => {
          writeFileSync(join(opts.dir, FILLED_MARK), '');
          const code = await ended;
          if (code !== 0) throw new Error(`the lazy restore's guard ended with ${code === 1 ? 'the restored tree killed: the fill was not confirmed within its grace' : `exit ${code}`}`);
        },
        stop,
        ended,
      });
    });
    child.on('error', (error) => reject(new Error(`the lazy restore's guard could not start: ${error.message}`)));
    void ended.then((code) => {
      if (!watching) reject(new Error(`the lazy restore's guard could not start (exit ${code}${code === JOIN_FAILED_EXIT ? ': it could not join the shard cgroups' : ''})`));
    });
  });
}
