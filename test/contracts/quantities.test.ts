import { formatBytes, formatDuration, parseBytes, parseCpuCores, parseDurationSeconds } from '../../src/contracts/quantities';

describe('quantities', () => {
  it.each([
    ['2GiB', 2 * 2 ** 30],
    ['512Mi', 512 * 2 ** 20],
    ['1.5G', 1.5e9],
    ['64MiB', 64 * 2 **20],
    [1048576, 1048576],
    ['100', 100],
  ])('parses bytes %p', (text, bytes) => expect(parseBytes(text)).toBe(bytes));

  it.each([
    ['500m', 0.5],
    ['0.25', 0.25],
    [2, 2],
    ['1500m', 1.5],
    ['0.001', 0.001],
    ['1.0m', 0.001],
    ['0.125', 0.125],
  ])('parses cpu %p', (text, cores) => expect(parseCpuCores(text)).toBe(cores));

  it.each([
    ['15m', 900],
    ['1h30m', 5400],
    ['90s', 90],
    ['250ms', 0.25],
    ['7d', 604800],
    [30, 30],
  ])('parses duration %p', (text, seconds) => expect(parseDurationSeconds(text)).toBe(seconds));

  it('names the field and the bad text', () => {
    expect(() => parseBytes('2 gigs', 'web/granularity.memory')).toThrow(
      'web/granularity.memory: "2 gigs" is not a byte quantity such as "512MiB", "2GiB", "1G" or a whole number of bytes',
    );
    expect(() => parseCpuCores('half', 'web/granularity.cpu')).toThrow('web/granularity.cpu: "half" is not a CPU quantity such as "500m", "0.5" or 2 (cores)');
    expect(() => parseDurationSeconds('15 minutes', 'hot/horizon')).toThrow('hot/horizon: "15 minutes" is not a duration');
    expect(() => parseDurationSeconds('', 'hot/horizon')).toThrow('hot/horizon: "" is not a duration');
    expect(() => parseCpuCores(-1, 'cpu')).toThrow('cpu: -1 is not a CPU quantity');
    expect(() => parseBytes(1.5, 'memory')).toThrow('memory: 1.5 is not a byte quantity');
    for (const finer of ['0.0004', '1.5m', '0.0015', '2.0001']) {
      expect(() => parseCpuCores(finer, '--cpu')).toThrow(`--cpu: "${finer}" is not a whole number of millicores (1m = 0.001 cores)`);
    }
    // A number in code is held to the same rule as the text: 0.0004 is no more a size than "0.0004".
    expect(() => parseCpuCores(0.0004, 'web/granularity.cpu')).toThrow('web/granularity.cpu: 0.0004 is not a whole number of millicores (1m = 0.001 cores)');
    expect(parseCpuCores(0.125, 'cpu')).toBe(0.125);
  });

  it('refuses digits too many for a finite number, naming the text', () => {
    const huge = `1${'0'.repeat(400)}`;
    expect(() => parseBytes(huge, 'memory')).toThrow(`memory: "${huge.slice(0, 76)}... is not a byte quantity`);
    expect(() => parseCpuCores(`${huge}m`, 'cpu')).toThrow('cpu: "1000');
    expect(() => parseDurationSeconds(`${huge}s`, 'horizon')).toThrow('horizon: "1000');
  });

  it('formats for people', () => {
    expect(formatBytes(2 * 2 ** 30)).toBe('2GiB');
    expect(formatBytes(1536)).toBe('1.5KiB');
    expect(formatDuration(900)).toBe('15m');
    expect(formatDuration(5400)).toBe('1h30m');
    expect(formatDuration(0.25)).toBe('250ms');
  });
});
