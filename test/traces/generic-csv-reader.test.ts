import { parseGenericCsv, GENERIC_HEADER } from '../../src/traces/generic-csv-reader';

const T = 1_700_006_400;

describe('generic CSV reader', () => {
  it('resamples irregular rows onto the grid (mean per grid point), keeps gaps and empty fields missing', () => {
    const text = [
      GENERIC_HEADER,
      `${T},web,1,100,10,5`,
      `${T + 100},web,3,300,10,5`, // nearest grid point is still T (100 < 150)
      `${T + 310},web,2,,10,5`, // memory not measured
      `${T + 1200},web,4,400,10,5`, // T + 600 and T + 900 are a gap
      `2023-11-15T00:00:00Z,db,0.5,1000,1,1`,
    ].join('\n');
    const [web, db] = parseGenericCsv(text, 'g.csv', 300);
    expect(web.applicationId).toBe('web');
    expect(Array.from(web.cpuCores)).toEqual([2, 2, NaN, NaN, 4]);
    expect(web.memoryBytes[1]).toBeNaN();
    expect(web.memoryBytes[0]).toBe(200);
    expect(db.startSeconds).toBe(Date.parse('2023-11-15T00:00:00Z') / 1000);
  });

  it('reads decimal cells in every spelling (1e3, .5, 2.) and the last day of February in a leap year', () => {
    const [web] = parseGenericCsv(`${GENERIC_HEADER}\n2024-02-29T23:00:00Z,web,.5,1e3,2.,0\n`, 'g.csv', 300);
    expect([web.cpuCores[0], web.memoryBytes[0], web.readOps[0], web.writeOps[0]]).toEqual([0.5, 1000, 2, 0]);
    expect(web.startSeconds).toBe(Date.parse('2024-02-29T23:00:00Z') / 1000);
  });

  it('reads an RFC 3339 offset as such, whatever the machine\'s time zone', () => {
    const [web] = parseGenericCsv(`${GENERIC_HEADER}\n2023-11-15T02:00:00+02:00,web,1,1,1,1\n`, 'g.csv', 300);
    expect(web.startSeconds).toBe(Date.parse('2023-11-15T00:00:00Z') / 1000);
  });

  it.each([
    ['a bad header', 'time,app\n', 'g.csv: line 1: field "column 1": "time"'],
    ['an invalid application id', `${GENERIC_HEADER}\n${T},Web_1,1,1,1,1\n`, 'g.csv: line 2: field "application_id": "Web_1"'],
    ['a negative cpu', `${GENERIC_HEADER}\n${T},web,1,1,1,1\n${T + 300},web,-1,1,1,1\n`, 'g.csv: line 3: field "cpu_cores": "-1"'],
    ['a bad timestamp', `${GENERIC_HEADER}\nyesterday,web,1,1,1,1\n`, 'g.csv: line 2: field "timestamp": "yesterday"'],
    ['a short row', `${GENERIC_HEADER}\n${T},web,1\n`, 'g.csv: line 2: field "row"'],
    // Without its offset, Date.parse reads the machine's local time: the same file would mean other hours on another host.
    ['a date-time without its offset', `${GENERIC_HEADER}\n2023-11-14T22:18:20,web,1,1,1,1\n`, 'g.csv: line 2: field "timestamp": "2023-11-14T22:18:20" is not Unix seconds or an RFC 3339 date-time with its offset'],
    // A date before 1970 made the grid span two millennia (gigabytes, minutes) instead of failing.
    ['a date-time before 1970', `${GENERIC_HEADER}\n0001-01-01T00:00:00Z,web,1,1,1,1\n`, 'g.csv: line 2: field "timestamp": "0001-01-01T00:00:00Z" is not Unix seconds or an RFC 3339'],
    // One typo'd timestamp made the grid span 53 years: 5.6 million points, 52 s of predict per application.
    ['a timestamp decades from the others', `${GENERIC_HEADER}\n${T},web,1,1,1,1\n17000000,web,1,1,1,1\n${T + 300},web,1,1,1,1\n`, 'g.csv: line 3: field "timestamp": 17000000 is not within 1000000 steps of 300 s of the other samples of web'],
    ['a date-time past the seconds range', `${GENERIC_HEADER}\n2300-01-01T00:00:00Z,web,1,1,1,1\n`, 'g.csv: line 2: field "timestamp": "2300-01-01T00:00:00Z" is not Unix seconds'],
    // Date.parse rolls these over to another day instead of failing.
    ['a day the month does not have', `${GENERIC_HEADER}\n2023-02-31T00:00:00Z,web,1,1,1,1\n`, 'g.csv: line 2: field "timestamp": "2023-02-31T00:00:00Z" is not Unix seconds or an RFC 3339'],
    ['hour 24', `${GENERIC_HEADER}\n2023-11-14T24:00:00Z,web,1,1,1,1\n`, 'g.csv: line 2: field "timestamp": "2023-11-14T24:00:00Z" is not Unix seconds or an RFC 3339'],
    // Number() reads these as 16 and 3 cores.
    ['a hexadecimal cpu', `${GENERIC_HEADER}\n${T},web,0x10,1,1,1\n`, 'g.csv: line 2: field "cpu_cores": "0x10" is not a non-negative number'],
    ['a binary read_ops', `${GENERIC_HEADER}\n${T},web,1,1,0b11,1\n`, 'g.csv: line 2: field "read_ops": "0b11" is not a non-negative number'],
  ])('refuses %s with file, line and field', (_what, text, message) => {
    expect(() => parseGenericCsv(text, 'g.csv', 300)).toThrow(message);
  });
});
