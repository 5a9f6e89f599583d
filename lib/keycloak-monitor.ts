/**
 * KeycloakMonitor: a Prometheus Operator ServiceMonitor (or PodMonitor) that scrapes Keycloak's
 * metrics on the management port (9000, `/metrics`) — what Bitnami chart users enable with
 * `metrics.serviceMonitor.enabled`. Needs the Prometheus Operator's CRDs in the cluster.
 */
import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import type { Keycloak } from './keycloak.js';
import { validateDnsSubdomain, validateLabels } from './validation.js';

/** Properties of {@link KeycloakMonitor}. */
export interface KeycloakMonitorProps {
  /** The Keycloak to scrape; its `metricsEnabled` must be on (the default). */
  readonly keycloak: Keycloak;
  /**
   * `ServiceMonitor` (through Keycloak's Service) or `PodMonitor` (every pod directly).
   *
   * @default 'ServiceMonitor'
   */
  readonly kind?: 'ServiceMonitor' | 'PodMonitor';
  /**
   * Scrape interval, a Prometheus duration such as `30s` or `1m`.
   *
   * @default '30s'
   */
  readonly interval?: string;
  /**
   * Labels on the monitor, for the Prometheus' `serviceMonitorSelector` / `podMonitorSelector`
   * (e.g. `{ release: 'kube-prometheus-stack' }`).
   *
   * @default - none
   */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Name of the monitor.
   *
   * @default - the Keycloak StatefulSet's name
   */
  readonly name?: string;
}

const PROMETHEUS_DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;

/** A ServiceMonitor or PodMonitor for Keycloak's management port. */
export class KeycloakMonitor extends Construct {
  /** The monitor object, for escape hatches. */
  public readonly monitor: ApiObject;

  public constructor(scope: Construct, id: string, props: KeycloakMonitorProps) {
    super(scope, id);
    const field = 'KeycloakMonitor';
    if (!props || props.keycloak === undefined) throw new Error(`${field} 'keycloak' is required`);
    if (!props.keycloak.metricsEnabled) {
      throw new Error(`${field}: the Keycloak has metricsEnabled: false, so there is nothing to scrape: turn it on or drop the monitor`);
    }
    const kind = props.kind ?? 'ServiceMonitor';
    if (kind !== 'ServiceMonitor' && kind !== 'PodMonitor') throw new Error(`${field} 'kind' must be 'ServiceMonitor' or 'PodMonitor', got ${JSON.stringify(kind)}`);
    const interval = props.interval ?? '30s';
    if (typeof interval !== 'string' || !PROMETHEUS_DURATION.test(interval)) {
      throw new Error(`${field} 'interval' must be a Prometheus duration such as "30s" or "1m", got ${JSON.stringify(interval)}`);
    }
    const name = validateDnsSubdomain(`${field} 'name'`, props.name ?? props.keycloak.statefulSetName);
    const endpoint = { port: 'management', path: '/metrics', interval, scheme: 'http' };
    const selector = { matchLabels: { ...props.keycloak.podSelectorLabels } };
    this.monitor = new ApiObject(this, 'monitor', {
      apiVersion: 'monitoring.coreos.com/v1',
      kind,
      metadata: { name, labels: { ...props.keycloak.podSelectorLabels, ...(props.labels === undefined ? {} : validateLabels(`${field} 'labels'`, props.labels)) } },
      spec:
        kind === 'ServiceMonitor'
          ? { selector, endpoints: [endpoint] }
          : { selector, podMetricsEndpoints: [endpoint] },
    });
  }
}
