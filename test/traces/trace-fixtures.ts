/** Builds small trace files in the two formats (fixtures by helpers, not copied blobs). */
export const BITBRAINS_HEADER =
  'Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]';

export interface BitbrainsRow {
  atSeconds: number;
  cores?: number;
  capacityMhz?: number;
  usageMhz?: number;
  memoryKb?: number;
  readKbps?: number;
  writeKbps?: number;
}

export function bitbrainsText(rows: readonly BitbrainsRow[]): string {
  const lines = rows.map((r) => {
    const cores = r.cores ?? 2;
    const capacity = r.capacityMhz ?? 5852;
    const usage = r.usageMhz ?? 585.2;
    return [r.atSeconds, cores, capacity, usage, (usage / capacity) * 100, 8218624, r.memoryKb ?? 1048576, r.readKbps ?? 40, r.writeKbps ?? 8, 1, 2].join(';\t');
  });
  return [BITBRAINS_HEADER, ...lines].join('\n') + '\n';
}

/** Rows every 300 s with ~1 s drift, from `start`, skipping the indices in `gaps`. */
export function bitbrainsRows(start: number, n: number, gaps: ReadonlySet<number> = new Set(), extra: Partial<BitbrainsRow> = {}): BitbrainsRow[] {
  const rows: BitbrainsRow[] = [];
  for (let i = 0; i < n; i++) if (!gaps.has(i)) rows.push({ atSeconds: start + i * 300 + (i % 3) - 1, ...extra });
  return rows;
}
