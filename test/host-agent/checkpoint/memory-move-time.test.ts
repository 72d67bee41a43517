import { timeLimitIn } from '../../../host-agent/checkpoint/criu-at-work';
import { MEMORY_MOVE_BYTES_PER_SECOND, memoryImageBytes, memoryMoveLimitMs } from '../../../host-agent/checkpoint/memory-move-time';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

describe('how long moving memory may take', () => {
  it('keeps the fixed limits for the 256 MiB test shards: 120 s for CRIU, 60 s for a request', () => {
    expect(memoryMoveLimitMs({ memoryBytes: 256 * MiB, floorMs: 120_000 })).toBe(120_000);
    expect(memoryMoveLimitMs({ memoryBytes: 256 * MiB, floorMs: 60_000 })).toBe(60_000);
    expect(memoryMoveLimitMs({ floorMs: 120_000 })).toBe(120_000);
    expect(memoryMoveLimitMs({ memoryBytes: 0, floorMs: 200 })).toBe(200);
  });

  it('gives 64 GiB more than its copy takes at 64 MiB/s: 30 s + 1024 s', () => {
    const copyMs = ((64 * GiB) / MEMORY_MOVE_BYTES_PER_SECOND) * 1000;
    expect(copyMs).toBe(1_024_000);
    expect(memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 120_000 })).toBe(1_054_000);
    expect(memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 60_000 })).toBeGreaterThan(copyMs);
  });

  it("never reaches past the migration's own deadline, and never below the floor", () => {
    expect(memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 120_000, untilDeadlineMs: 600_000 })).toBe(600_000);
    expect(memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 120_000, untilDeadlineMs: -5_000 })).toBe(120_000);
    expect(memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 120_000, untilDeadlineMs: 2_000_000 })).toBe(1_054_000);
  });

  it('gives whole ms, rounded up: the limit goes into a CRIU environment, where recovery believes only a whole number (criu-at-work.ts)', () => {
    // The destination's time left comes from performance.now(): fractional.
    expect(memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 120_000, untilDeadlineMs: 299_999.25 })).toBe(300_000);
    expect(timeLimitIn(`SHARDFORM_CRIU_TIME_LIMIT_MS=${memoryMoveLimitMs({ memoryBytes: 64 * GiB, floorMs: 120_000, untilDeadlineMs: 299_999.25 })}\0`)).toBe(300_000);
  });

  it('counts only memory images (pages files) as memory', () => {
    expect(memoryImageBytes([{ name: 'pages-1.img', bytes: 10 }, { name: 'pages-12.img', bytes: 5 }, { name: 'pagemap-1.img', bytes: 99 }, { name: 'state.tar', bytes: 99 }, { name: 'pages-1.img.tmp', bytes: 99 }])).toBe(15);
  });
});
