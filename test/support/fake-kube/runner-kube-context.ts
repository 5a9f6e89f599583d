/**
 * A runner KubeContext wired to a fake API server, with the log captured as JSON lines, so tests
 * can assert both what the runner did through the API and what it printed.
 */
import { Writable } from 'node:stream';
import { createKubeContext, type KubeContext, type RetryPolicy } from '../../../runner/src/kube/client.js';
import { createLogger } from '../../../runner/src/log.js';
import type { FakeKubeApiServer } from './server.js';

export interface CapturedLog {
  /** Every line written, parsed. */
  readonly lines: Record<string, unknown>[];
  /** All lines as raw text, for "never printed" checks. */
  text(): string;
}

export interface FakeRunnerKube {
  readonly kube: KubeContext;
  readonly log: CapturedLog;
}

/** Fast retries: a test must not wait seconds for a retried 503. */
export const TEST_RETRY_POLICY: RetryPolicy = { attempts: 4, baseDelayMs: 10 };

export function fakeRunnerKube(
  server: FakeKubeApiServer,
  options: { namespace: string; token?: string; retry?: RetryPolicy },
): FakeRunnerKube {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      raw.push(chunk.toString());
      callback();
    },
  });
  const log = createLogger({ stream, format: 'json', level: 'debug', env: {} });
  const kube = createKubeContext({
    kubeConfig: server.kubeConfig(options.token ?? server.adminToken, options.namespace),
    env: { MIGRATION_NAMESPACE: options.namespace },
    log,
    retry: options.retry ?? TEST_RETRY_POLICY,
  });
  return {
    kube,
    log: {
      get lines() {
        return raw
          .join('')
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      },
      text: () => raw.join(''),
    },
  };
}
