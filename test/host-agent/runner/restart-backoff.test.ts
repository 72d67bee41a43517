import { DEFAULT_BACKOFF, checkBackoffPolicy, nextRestart } from '../../../host-agent/runner/restart-backoff';
import { HostAgentError } from '../../../host-agent/errors';

describe('restart back-off', () => {
  const policy = { baseSeconds: 1, ceilingSeconds: 8, resetAfterSeconds: 60 };

  it('doubles the delay from the base on consecutive quick failures', () => {
    const delays: number[] = [];
    let failures = 0;
    for (let i = 0; i < 4; i += 1) {
      const d = nextRestart(policy, failures, 0.5);
      delays.push(d.delaySeconds);
      failures = d.attempt;
    }
    expect(delays).toEqual([1, 2, 4, 8]);
  });

  it('stays at the ceiling and reports crash-loop once the ceiling is reached', () => {
    expect(nextRestart(policy, 2, 1)).toEqual({ attempt: 3, delaySeconds: 4, crashLoop: false });
    expect(nextRestart(policy, 3, 1)).toEqual({ attempt: 4, delaySeconds: 8, crashLoop: true });
    expect(nextRestart(policy, 50, 1)).toEqual({ attempt: 51, delaySeconds: 8, crashLoop: true });
    expect(nextRestart(policy, 5000, 1).delaySeconds).toBe(8);
  });

  it('forgets earlier failures after a run that lasted resetAfterSeconds', () => {
    expect(nextRestart(policy, 7, 60)).toEqual({ attempt: 1, delaySeconds: 1, crashLoop: false });
    expect(nextRestart(policy, 7, 59.9).attempt).toBe(8);
  });

  it('defaults follow the documented 1 s base, 300 s ceiling, 600 s reset', () => {
    expect(DEFAULT_BACKOFF).toEqual({ baseSeconds: 1, ceilingSeconds: 300, resetAfterSeconds: 600 });
    expect(nextRestart(DEFAULT_BACKOFF, 8, 0).delaySeconds).toBe(256);
    expect(nextRestart(DEFAULT_BACKOFF, 9, 0)).toEqual({ attempt: 10, delaySeconds: 300, crashLoop: true });
  });

  it('refuses a ceiling below the base, naming the field and value', () => {
    expect(() => checkBackoffPolicy({ baseSeconds: 5, ceilingSeconds: 2, resetAfterSeconds: 1 })).toThrow(
      'backoff.ceilingSeconds: 2 is invalid; use at least backoff.baseSeconds (5)',
    );
    try {
      checkBackoffPolicy({ baseSeconds: 0, ceilingSeconds: 2, resetAfterSeconds: 1 });
    } catch (e) {
      expect(e).toBeInstanceOf(HostAgentError);
      expect((e as HostAgentError).code).toBe('INVALID_OPTION');
      expect((e as HostAgentError).field).toBe('backoff.baseSeconds');
    }
    expect.assertions(4);
  });
});
