/**
 * Pending rows: what a model (or the selection) noted at each of the last steps+1 grid steps,
 * kept until the horizon's peak that followed is known, as rows of `stride` numbers in one
 * Float64Array (row = step mod steps+1). Saved state keeps each part of the rows as its own
 * array (the format from before the parts shared one array).
 */

/** `count` rows of `stride` values with nothing pending: each row starts with `head`, the rest is `fill`. */
export function emptyRows(count: number, stride: number, head: readonly number[], fill: number): Float64Array {
  const rows = new Float64Array(count * stride).fill(fill);
  for (let row = 0; row < rows.length; row += stride) rows.set(head, row);
  return rows;
}

/** `count` values at `offset` of every row, one row after the other, each through `save`. */
export function rowParts<T>(rows: Float64Array, stride: number, offset: number, count: number, save: (value: number) => T): T[] {
  const values: T[] = [];
  for (let row = 0; row < rows.length; row += stride) for (let k = 0; k < count; k++) values.push(save(rows[row + offset + k]));
  return values;
}

/** Whether two rows arrays hold the same values (NaN equal to NaN): a loaded state with nothing pending. */
export function sameRows(a: Float64Array, b: Float64Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

/**
 * Loads a saved part back: `count` values per row at `offset`, each through `load`. Values past
 * the last row are dropped, as the typed arrays the parts were kept in before dropped them.
 */
export function setRowParts<T>(rows: Float64Array, stride: number, offset: number, count: number, saved: readonly T[], load: (value: T) => number): void {
  const rowCount = rows.length / stride;
  saved.forEach((value, i) => {
    const row = Math.floor(i / count);
    if (row < rowCount) rows[row * stride + offset + (i % count)] = load(value);
  });
}
