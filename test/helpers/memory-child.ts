/**
 * A child process with memory the test knows: python3 allocates `pages` private anonymous
 * pages (mmap), fills page i with byte (i % 251) + 1, maps `zeroPages` more private pages that
 * are only read (the kernel maps its shared zero page there), prints both addresses, then on
 * each line "w <page> <byte>" of stdin fills that page with <byte> and answers "ok".
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface, type Interface } from 'node:readline';

const SCRIPT = `
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
PAGE = 4096
pages, zero_pages = int(sys.argv[1]), int(sys.argv[2])
def private(n):
    addr = libc.mmap(None, n * PAGE, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    assert addr not in (None, ctypes.c_void_p(-1).value)
    return addr
data = private(pages)
for i in range(pages):
    ctypes.memset(data + i * PAGE, (i % 251) + 1, PAGE)
zero = private(zero_pages) if zero_pages else 0
for i in range(zero_pages):
    ctypes.string_at(zero + i * PAGE, 1)
print(data, zero, flush=True)
for line in sys.stdin:
    _, page, byte = line.split()
    ctypes.memset(data + int(page) * PAGE, int(byte), PAGE)
    print('ok', flush=True)
`;

export interface MemoryChild {
  readonly pid: number;
  /** Address of the filled pages. */
  readonly data: number;
  /** Address of the read-only (zero) pages, 0 when none. */
  readonly zero: number;
  /** Fills page `page` of the data with `byte`. */
  write(page: number, byte: number): Promise<void>;
  /** What page `page` holds right after start. */
  initial(page: number): Buffer;
  stop(): Promise<void>;
}

export async function startMemoryChild(pages: number, zeroPages = 0): Promise<MemoryChild> {
  const child: ChildProcessWithoutNullStreams = spawn('python3', ['-c', SCRIPT, String(pages), String(zeroPages)]);
  const lines: Interface = createInterface({ input: child.stdout });
  const iterator = lines[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await iterator.next();
    if (done) throw new Error('memory child exited');
    return value as string;
  };
  const [data, zero] = (await next()).split(' ').map(Number) as [number, number];
  return {
    pid: child.pid as number,
    data,
    zero,
    async write(page, byte) {
      child.stdin.write(`w ${page} ${byte}\n`);
      expectOk(await next());
    },
    initial: (page) => Buffer.alloc(4096, (page % 251) + 1),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}

function expectOk(line: string): void {
  if (line !== 'ok') throw new Error(`memory child answered ${line}`);
}
