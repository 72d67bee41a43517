/**
 * Hosts that already exist (bare metal, VMs, or several agents on one machine): each with an
 * id, the address its agent listens on, and what it offers to shards. No Terraform resources;
 * the plan is the whole deliverable.
 */
import type { Construct } from 'constructs';
import { agentEndpoint } from '../src/contracts/plan-checks';
import type { Host, Pool } from '../src/contracts/plan-schema';
import { parseCapacity, type HostCapacity } from './host-capacity';
import { HostPool, type HostPoolProps } from './host-pool';
import { PropChecker, problemAt } from './prop-checks';

/** One existing host. */
export interface StaticHost {
  /** Host id, unique in the fleet (`^[a-z0-9][a-z0-9-]{0,62}$`). */
  readonly id: string;
  /** Where this host's agent is reached: `10.0.0.5:7100`, `node-1.internal`, `[::1]:7101`. */
  readonly address: string;
  /** What the host offers to shards (leave room for the OS and the agent). */
  readonly capacity: HostCapacity;
  /**
   * Labels of this host; they override the pool's labels of the same key.
   * @default {}
   */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface StaticHostPoolProps extends HostPoolProps {
  /**
   * The pool's hosts; more can be added with `addHost()` until synthesis.
   * @default [] (a pool without hosts fails validation at synth)
   */
  readonly hosts?: readonly StaticHost[];
}


export class StaticHostPool extends HostPool {
  private readonly hosts: Host[] = [];

  constructor(scope: Construct, id: string, props: StaticHostPoolProps = {}) {
    super(scope, id, props);
    (props.hosts ?? []).forEach((host, index) => this.checkHost(this.checks, `hosts[${index}]`, host));
    this.checks.throwIfAny();
    this.node.addValidation({
      validate: () => (this.hosts.length === 0 ? [problemAt(this, 'hosts', 'a static pool needs at least one host; pass hosts or call addHost()')] : []),
    });
  }

  /** Adds an existing host; counts until synthesis (the plan is rendered lazily). */
  addHost(host: StaticHost): this {
    // Not PropChecker.for(this): a bad host must not take the pool out of the tree.
    const checks = new PropChecker(this.node.path);
    if (!checks.literals(host, `addHost(${typeof host?.id === 'string' ? host.id : '?'}).`)) checks.throwIfAny();
    this.checkHost(checks, `addHost(${typeof host?.id === 'string' ? host.id : '?'})`, host);
    checks.throwIfAny();
    return this;
  }

  /** The hosts declared so far, in declaration order. */
  get hostIds(): readonly string[] {
    return this.hosts.map((h) => h.id);
  }

  toPlanPool(): Pool {
    return {
      id: this.poolId,
      kind: 'static',
      costPerHourUsd: this.costPerHourUsd,
      labels: { ...this.labels },
      // Sorted so the plan does not depend on the order hosts were added in.
      hosts: [...this.hosts].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((h) => ({ ...h, capacity: { ...h.capacity }, labels: { ...h.labels } })),
    };
  }

  private checkHost(checks: PropChecker, property: string, host: StaticHost): void {
    if (host === null || typeof host !== 'object') {
      checks.fail(property, host, 'is not a host; use { id, address, capacity: { cpu, memory } }');
      return;
    }
    const id = checks.id(`${property}.id`, host.id);
    // Any port stands in for the fleet's agent port here; duplicates are found at synth.
    const address = checks.require(typeof host.address === 'string' && host.address.length <= 253 && agentEndpoint(host.address, 1) !== undefined, `${property}.address`, host.address, 'is not a host address; use a host name or IP (IPv6 in brackets), optionally with :port from 1 to 65535 (e.g. "127.0.0.1:7101")');
    const capacity = parseCapacity(checks, `${property}.capacity`, host.capacity);
    const labels = checks.labels(`${property}.labels`, host.labels ?? {});
    if (id !== undefined && address && capacity && checks.ok) this.hosts.push({ id, address: host.address, capacity, labels });
  }
}
