/**
 * Injectable faults: the next N requests that match {verb, resource, name, namespace} answer
 * with an error Status (500, 503, 409, 403, ...) or a dropped connection, and latency for
 * matching requests. Used to prove that the runner retries what is retriable and names what is not.
 */

export interface RequestMatcher {
  /** get, list, create, update, patch, delete, deletecollection. */
  verb?: string;
  /** Plural, or `plural/subresource` (e.g. `statefulsets/scale`). */
  resource?: string;
  name?: string;
  namespace?: string;
}

export interface FaultRule extends RequestMatcher {
  /** HTTP status to answer with, or 'reset' to destroy the connection without an answer. */
  status: number | 'reset';
  /** How many matching requests fail. @default 1 */
  times?: number;
  /** Status reason. @default - the real server's reason for that code */
  reason?: string;
  /** Status message. @default - "injected fault: <code>" */
  message?: string;
}

export interface FaultHandle {
  /** Requests this fault will still fail. */
  readonly remaining: number;
  /** How many requests it failed so far. */
  readonly fired: number;
  cancel(): void;
}

export interface RequestFacts {
  verb: string;
  resource: string;
  name?: string;
  namespace?: string;
}

export function matches(matcher: RequestMatcher, request: RequestFacts): boolean {
  if (matcher.verb !== undefined && matcher.verb !== request.verb) return false;
  if (matcher.resource !== undefined && matcher.resource !== request.resource) return false;
  if (matcher.name !== undefined && matcher.name !== request.name) return false;
  if (matcher.namespace !== undefined && matcher.namespace !== request.namespace) return false;
  return true;
}

interface ActiveFault {
  rule: FaultRule;
  remaining: number;
  fired: number;
}

export class FaultInjector {
  private faults: ActiveFault[] = [];
  private latencies: { matcher: RequestMatcher; ms: number }[] = [];
  private holds: { matcher: RequestMatcher; until: () => Promise<void> }[] = [];

  inject(rule: FaultRule): FaultHandle {
    const fault: ActiveFault = { rule, remaining: rule.times ?? 1, fired: 0 };
    this.faults.push(fault);
    return {
      get remaining() {
        return fault.remaining;
      },
      get fired() {
        return fault.fired;
      },
      cancel: () => {
        this.faults = this.faults.filter((candidate) => candidate !== fault);
      },
    };
  }

  /** The first armed fault matching the request, consumed by one. */
  take(request: RequestFacts): FaultRule | undefined {
    const fault = this.faults.find((candidate) => candidate.remaining > 0 && matches(candidate.rule, request));
    if (!fault) return undefined;
    fault.remaining -= 1;
    fault.fired += 1;
    if (fault.remaining === 0) this.faults = this.faults.filter((candidate) => candidate !== fault);
    return fault.rule;
  }

  addLatency(ms: number, matcher: RequestMatcher = {}): () => void {
    const entry = { matcher, ms };
    this.latencies.push(entry);
    return () => {
      this.latencies = this.latencies.filter((candidate) => candidate !== entry);
    };
  }

  latencyFor(request: RequestFacts): number {
    return this.latencies.filter((entry) => matches(entry.matcher, request)).reduce((total, entry) => total + entry.ms, 0);
  }

  /**
   * Holds the next request matching `matcher` until `until()` resolves (once: the hold is then
   * gone). A cluster leaves such orderings to chance (an image pull, a slow admission); a test
   * pins one by holding, e.g., the creation of a hook Job.
   */
  hold(matcher: RequestMatcher, until: () => Promise<void>): () => void {
    const entry = { matcher, until };
    this.holds.push(entry);
    return () => {
      this.holds = this.holds.filter((candidate) => candidate !== entry);
    };
  }

  /** The hold for this request (consumed), if any. */
  takeHold(request: RequestFacts): (() => Promise<void>) | undefined {
    const hold = this.holds.find((candidate) => matches(candidate.matcher, request));
    if (!hold) return undefined;
    this.holds = this.holds.filter((candidate) => candidate !== hold);
    return hold.until;
  }

  clear(): void {
    this.faults = [];
    this.latencies = [];
    this.holds = [];
  }
}
