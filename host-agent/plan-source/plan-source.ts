/**
 * GitOps plan source: keeps the agent on the newest good plan its source offers. Starts from the
 * last good plan in the state directory, then checks the source now, on file events, and every
 * `pollIntervalSeconds`. A new generation replaces the running plan only if it validates and
 * goes forward (plan-judgement.ts); otherwise the old plan keeps running and the refusal is
 * logged once, counted in shardform_plan_rejected_total{reason} and shown by GET /v1/plan.
 */
import type { Plan } from '../../src/contracts/plan-schema';
import { CoalescedTask } from '../coalesced-task';
import type { AgentLogger } from '../log';
import type { AgentMetrics } from '../metrics/agent-metrics';
import { lastGoodPlanPath, loadLastGoodPlan, saveLastGoodPlan } from './last-good-plan';
import { FilePlanFetcher } from './file-plan-fetcher';
import { isUrl, type PlanFetcher } from './plan-fetcher';
import type { FieldError } from '../../src/errors';
import { judgePlanText, unreadable, unusableHere, type PlanJudgement, type PlanRejection } from './plan-judgement';
import { UrlPlanFetcher } from './url-plan-fetcher';

export interface PlanStatus {
  readonly source: string;
  /** The plan being run; absent until a first good plan. */
  readonly running?: {
    readonly fleet: string;
    readonly generation: number;
    readonly digest: string;
    /** When this agent accepted it (or loaded it from the state directory). */
    readonly appliedAt: string;
    readonly from: 'source' | 'state-dir';
  };
  readonly lastRejection?: PlanRejection;
  readonly rejectedTotal: number;
  readonly lastCheckAt?: string;
}

export interface PlanSourceOptions {
  readonly fetcher: PlanFetcher;
  readonly stateDir: string;
  readonly logger: AgentLogger;
  readonly metrics?: Pick<AgentMetrics, 'setPlan' | 'planRejected'>;
  readonly clock?: () => Date;
  /** Periodic check (fallback for file events, the only trigger for URLs); default 5 s. 0 disables it. */
  readonly pollIntervalSeconds?: number;
  /** Subscribe to the fetcher's change hints (file events); default true. Tests that drive check() turn it off. */
  readonly watch?: boolean;
}

export function planFetcherFor(source: string): PlanFetcher {
  return isUrl(source) ? new UrlPlanFetcher(source) : new FilePlanFetcher(source);
}

export class PlanSource {
  private plan: Plan | undefined;
  private running: PlanStatus['running'];
  private lastRejection: PlanRejection | undefined;
  private rejectedTotal = 0;
  private lastCheckAt: string | undefined;
  private readonly listeners: ((plan: Plan) => void)[] = [];
  private readonly checks = new CoalescedTask(() => this.checkOnce());
  private timer: NodeJS.Timeout | undefined;
  private stopWatch: (() => void) | undefined;
  private readonly clock: () => Date;
  /** What load() found; accepted plans are saved only once start() runs (until then `unsaved`). */
  private first: PlanJudgement | undefined;
  private saving = false;
  private unsaved: Plan | undefined;
  private usableHere: ((plan: Plan) => FieldError | undefined) | undefined;

  constructor(private readonly options: PlanSourceOptions) {
    this.clock = options.clock ?? (() => new Date());
  }

  /**
   * Loads the last good plan from the state directory and checks the source once, writing
   * nothing: an accepted plan is saved by start(). The agent validates what the plan points at
   * (token, this host's address) in between, so a start refused for those changes nothing.
   */
  async load(): Promise<PlanJudgement> {
    this.loadSaved();
    this.first = await this.check();
    return this.first;
  }

  /** load() unless done, saves the plan it accepted as the last good plan, then watches the source. */
  async start(): Promise<PlanJudgement> {
    const first = this.first ?? (await this.load());
    this.saving = true;
    if (this.unsaved) await saveLastGoodPlan(this.options.stateDir, this.unsaved);
    this.unsaved = undefined;
    const interval = this.options.pollIntervalSeconds ?? 5;
    if (this.options.watch ?? true) this.stopWatch = this.options.fetcher.watch(() => void this.check().catch(() => {}));
    if (interval > 0) {
      this.timer = setInterval(() => void this.check().catch(() => {}), interval * 1000);
      this.timer.unref();
    }
    return first;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopWatch?.();
    this.stopWatch = undefined;
    await this.checks.idle();
  }

  current(): Plan | undefined {
    return this.plan;
  }

  /**
   * From now on, a plan that validates and goes forward is also refused when `problem` finds it
   * unusable on this host (the agent installs its token check once its own start passed it).
   */
  requireUsableHere(problem: (plan: Plan) => FieldError | undefined): void {
    this.usableHere = problem;
  }

  /** Called with every newly accepted plan (not with the one loaded at start; read current()). */
  onPlan(listener: (plan: Plan) => void): void {
    this.listeners.push(listener);
  }

  status(): PlanStatus {
    return {
      source: this.options.fetcher.source,
      ...(this.running ? { running: this.running } : {}),
      ...(this.lastRejection ? { lastRejection: this.lastRejection } : {}),
      rejectedTotal: this.rejectedTotal,
      ...(this.lastCheckAt ? { lastCheckAt: this.lastCheckAt } : {}),
    };
  }

  /** Fetches and judges the source now. Concurrent calls share one pass (plus one more if asked during it). */
  check(): Promise<PlanJudgement> {
    return this.checks.run();
  }

  private async checkOnce(): Promise<PlanJudgement> {
    const { fetcher, logger } = this.options;
    const outcome = await fetcher.fetch();
    const now = this.clock();
    this.lastCheckAt = now.toISOString();
    if (outcome.kind === 'unchanged') return { kind: 'unchanged' };
    let judgement =
      outcome.kind === 'failed' ? unreadable(outcome.message, fetcher.source, now) : judgePlanText(outcome.text, this.plan, fetcher.source, now);
    const problem = judgement.kind === 'accept' ? (this.usableHere?.(judgement.plan) ?? (await this.keep(judgement.plan))) : undefined;
    if (judgement.kind === 'accept' && problem) {
      judgement = unusableHere(judgement.plan, problem, fetcher.source, now);
      // The refusal is about this host, not the document: judge the same document again at the
      // next check, or fixing the host (its token file, its disk) would change nothing until the plan does.
      fetcher.forget();
    }
    if (judgement.kind === 'reject') this.refuse(judgement.rejection);
    if (judgement.kind === 'accept') {
      const plan = judgement.plan;
      const previous = this.plan?.generation;
      this.adopt(plan, 'source', now);
      logger.info({ generation: plan.generation, digest: plan.digest, previous_generation: previous, source: fetcher.source }, 'plan applied');
      for (const listener of this.listeners) listener(plan);
    }
    return judgement;
  }

  /**
   * Saves a plan about to be applied as the last good plan (before start(), holds it for start()).
   * A plan that cannot be saved is not applied: a restart would not know it ran, and would take
   * an older one the source may still serve.
   */
  private async keep(plan: Plan): Promise<FieldError | undefined> {
    if (!this.saving) {
      this.unsaved = plan;
      return undefined;
    }
    try {
      await saveLastGoodPlan(this.options.stateDir, plan);
      return undefined;
    } catch (error) {
      const path = lastGoodPlanPath(this.options.stateDir);
      const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      return { field: '--state-dir', message: `cannot save it as the last good plan ${path}: ${why}`, value: path };
    }
  }

  private refuse(rejection: PlanRejection): void {
    const previous = this.lastRejection;
    this.lastRejection = rejection;
    // The same bad document (or the same outage) is reported once, not on every poll.
    const repeat = previous && previous.reason === rejection.reason && previous.message === rejection.message && previous.digest === rejection.digest;
    if (repeat) return;
    this.rejectedTotal += 1;
    this.options.metrics?.planRejected.inc({ reason: rejection.reason });
    this.options.logger.warn(
      {
        reason: rejection.reason,
        errors: rejection.errors,
        rejected_generation: rejection.generation,
        rejected_digest: rejection.digest,
        generation: this.plan?.generation,
        source: rejection.source,
      },
      `${rejection.message}${this.plan ? `; keeping generation ${this.plan.generation}` : ''}`,
    );
  }

  private loadSaved(): void {
    const saved = loadLastGoodPlan(this.options.stateDir);
    if (saved.problem) this.options.logger.warn({ problem: saved.problem }, 'ignoring the saved plan in the state directory');
    if (!saved.plan) return;
    this.adopt(saved.plan, 'state-dir', this.clock());
    this.options.logger.info({ generation: saved.plan.generation, digest: saved.plan.digest }, 'starting from the last good plan in the state directory');
  }

  private adopt(plan: Plan, from: 'source' | 'state-dir', at: Date): void {
    this.plan = plan;
    this.running = { fleet: plan.fleet, generation: plan.generation, digest: plan.digest, appliedAt: at.toISOString(), from };
    this.options.metrics?.setPlan(plan);
  }
}
