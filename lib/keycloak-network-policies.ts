/**
 * KeycloakNetworkPolicies: default-deny NetworkPolicies for Keycloak and the migration Jobs, each
 * opened exactly as far as it needs:
 *
 * - Keycloak: in — HTTP (8080) from {@link KeycloakNetworkPoliciesProps.httpFrom}, management
 *   (9000, health and metrics) from {@link KeycloakNetworkPoliciesProps.managementFrom}, JGroups
 *   (7800) from its peers; out — the database's client pods on the database port, its peers on
 *   7800, DNS.
 * - Migration Jobs: out only — PostgreSQL (source and target) in the namespace, the Kubernetes API
 *   server, DNS. Nothing connects to them.
 *
 * The database's own pods are left to their chart or operator (CloudNativePG's operator must
 * reach its instances; repmgr and Pgpool talk among themselves).
 */
import { k8s } from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import type { DatabaseMigration } from './database-migration.js';
import { KEYCLOAK_HTTP_PORT, KEYCLOAK_JGROUPS_PORT, KEYCLOAK_MANAGEMENT_PORT, type Keycloak } from './keycloak.js';
import type { DatabaseConnection } from './database-connection.js';

/** A database as the policies need it: what {@link PostgresHa} and {@link PostgresStandalone} expose. */
export interface DatabasePods {
  /** How clients connect (its port is opened). */
  readonly connection: DatabaseConnection;
  /** Labels of the pods behind {@link connection}. */
  readonly clientPodSelectorLabels: Readonly<Record<string, string>>;
}

/** A peer of a NetworkPolicy rule, in the API's terms. At least one field must be set. */
export interface NetworkPeer {
  /**
   * Pods with these labels (in {@link namespaceLabels}' namespaces, else in the policy's).
   *
   * @default - any pod (when namespaceLabels is set)
   */
  readonly podLabels?: Readonly<Record<string, string>>;
  /**
   * Namespaces with these labels, e.g. `{ 'kubernetes.io/metadata.name': 'ingress-nginx' }`.
   *
   * @default - the policy's own namespace (when podLabels is set)
   */
  readonly namespaceLabels?: Readonly<Record<string, string>>;
  /**
   * An IP block in CIDR notation, e.g. `10.0.0.0/8`.
   *
   * @default - none
   */
  readonly cidr?: string;
}

/** Where the Kubernetes API server is, for the migration Jobs' egress. */
export interface ApiServerEndpoint {
  /**
   * CIDRs of the API server's endpoints (`kubectl get endpoints kubernetes -n default`), which is
   * what NetworkPolicies see after the Service's address is translated.
   *
   * @default - any address (on `ports`)
   */
  readonly cidrs?: readonly string[];
  /**
   * Ports of those endpoints.
   *
   * @default [443, 6443]
   */
  readonly ports?: readonly number[];
}

/** Properties of {@link KeycloakNetworkPolicies}. */
export interface KeycloakNetworkPoliciesProps {
  /** The Keycloak to protect. */
  readonly keycloak: Keycloak;
  /**
   * The database Keycloak uses: a PostgresHa (Pgpool or the CloudNativePG instances) or a
   * PostgresStandalone.
   */
  readonly database: DatabasePods;
  /**
   * The migration whose Jobs get egress to the databases and the API server.
   *
   * @default - no policy for migration Jobs
   */
  readonly migration?: DatabaseMigration;
  /**
   * Who may reach Keycloak's HTTP port, e.g. the ingress controller's namespace.
   *
   * @default - anyone
   */
  readonly httpFrom?: readonly NetworkPeer[];
  /**
   * Who may reach the management port (health, metrics), e.g. Prometheus' namespace.
   *
   * @default - anyone
   */
  readonly managementFrom?: readonly NetworkPeer[];
  /**
   * The API server, for the migration Jobs.
   *
   * @default - any address on ports 443 and 6443 (the endpoints differ per cluster)
   */
  readonly apiServer?: ApiServerEndpoint;
}

const CIDR = /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$|^[0-9a-fA-F:]+\/\d{1,3}$/;
const DNS_PORTS: k8s.NetworkPolicyPort[] = [
  { protocol: 'UDP', port: k8s.IntOrString.fromNumber(53) },
  { protocol: 'TCP', port: k8s.IntOrString.fromNumber(53) },
];

/** NetworkPolicies for Keycloak and, when given, the migration Jobs. See the module comment. */
export class KeycloakNetworkPolicies extends Construct {
  /** Names of the policies created. */
  public readonly policyNames: readonly string[];

  public constructor(scope: Construct, id: string, props: KeycloakNetworkPoliciesProps) {
    super(scope, id);
    const field = 'KeycloakNetworkPolicies';
    if (!props || props.keycloak === undefined) throw new Error(`${field} 'keycloak' is required`);
    if (props.database === undefined || props.database.clientPodSelectorLabels === undefined) {
      throw new Error(`${field} 'database' is required: pass the PostgresHa or PostgresStandalone Keycloak uses`);
    }
    const keycloakPods = { matchLabels: { ...props.keycloak.podSelectorLabels } };
    const httpFrom = peers(`${field} 'httpFrom'`, props.httpFrom);
    const managementFrom = peers(`${field} 'managementFrom'`, props.managementFrom);
    const databasePort = props.database.connection.port;
    const tcp = (port: number): k8s.NetworkPolicyPort => ({ protocol: 'TCP', port: k8s.IntOrString.fromNumber(port) });

    const keycloakName = props.keycloak.statefulSetName;
    new k8s.KubeNetworkPolicy(this, 'keycloak', {
      metadata: { name: keycloakName, labels: { ...props.keycloak.podSelectorLabels } },
      spec: {
        podSelector: keycloakPods,
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          { ports: [tcp(KEYCLOAK_HTTP_PORT)], ...(httpFrom ? { from: httpFrom } : {}) },
          { ports: [tcp(KEYCLOAK_MANAGEMENT_PORT)], ...(managementFrom ? { from: managementFrom } : {}) },
          { ports: [tcp(KEYCLOAK_JGROUPS_PORT)], from: [{ podSelector: keycloakPods }] },
        ],
        egress: [
          { ports: [tcp(databasePort)], to: [{ podSelector: { matchLabels: { ...props.database.clientPodSelectorLabels } } }] },
          { ports: [tcp(KEYCLOAK_JGROUPS_PORT)], to: [{ podSelector: keycloakPods }] },
          { ports: DNS_PORTS },
        ],
      },
    });
    const names = [keycloakName];

    if (props.migration !== undefined) {
      const apiServer = apiServerRule(`${field} 'apiServer'`, props.apiServer);
      const name = `${props.migration.name}-jobs`;
      new k8s.KubeNetworkPolicy(this, 'migration-jobs', {
        metadata: { name, labels: { ...props.migration.jobPodSelectorLabels } },
        spec: {
          podSelector: { matchLabels: { ...props.migration.jobPodSelectorLabels } },
          policyTypes: ['Egress'],
          egress: [
            // Source and target: the legacy PostgreSQL is found at run time (an adopted release's
            // Service may differ from the configured one), so any pod of the namespace, on the
            // ports of both sides and PostgreSQL's default.
            { ports: [...new Set([5432, databasePort, ...props.migration.databasePorts])].map(tcp), to: [{ podSelector: {} }] },
            apiServer,
            { ports: DNS_PORTS },
          ],
        },
      });
      names.push(name);
    }
    this.policyNames = names;
  }
}

function peers(field: string, given: readonly NetworkPeer[] | undefined): k8s.NetworkPolicyPeer[] | undefined {
  if (given === undefined) return undefined;
  if (!Array.isArray(given) || given.length === 0) {
    throw new Error(`${field} must be a non-empty list of peers, or left out to allow anyone; got ${JSON.stringify(given)}`);
  }
  return given.map((peer, index) => {
    const where = `${field}[${index}]`;
    if (!peer || (peer.podLabels === undefined && peer.namespaceLabels === undefined && peer.cidr === undefined)) {
      throw new Error(`${where} names nothing: set podLabels, namespaceLabels or cidr (an empty peer would match no one or everyone)`);
    }
    if (peer.cidr !== undefined) {
      if (peer.podLabels !== undefined || peer.namespaceLabels !== undefined) {
        throw new Error(`${where} sets cidr together with labels: the API allows an IP block alone; make them two peers`);
      }
      if (!CIDR.test(peer.cidr)) throw new Error(`${where}.cidr must be CIDR notation such as "10.0.0.0/8", got ${JSON.stringify(peer.cidr)}`);
      return { ipBlock: { cidr: peer.cidr } };
    }
    for (const key of ['podLabels', 'namespaceLabels'] as const) {
      const labels = peer[key];
      if (labels !== undefined && (typeof labels !== 'object' || Object.keys(labels).length === 0)) {
        throw new Error(`${where}.${key} must hold at least one label (an empty selector matches every ${key === 'podLabels' ? 'pod' : 'namespace'}); got ${JSON.stringify(labels)}`);
      }
    }
    return {
      ...(peer.podLabels ? { podSelector: { matchLabels: { ...peer.podLabels } } } : {}),
      ...(peer.namespaceLabels ? { namespaceSelector: { matchLabels: { ...peer.namespaceLabels } } } : {}),
    };
  });
}

function apiServerRule(field: string, apiServer: ApiServerEndpoint | undefined): k8s.NetworkPolicyEgressRule {
  const ports = apiServer?.ports ?? [443, 6443];
  if (!Array.isArray(ports) || ports.length === 0 || ports.some((port) => !Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new Error(`${field}.ports must be a non-empty list of port numbers, got ${JSON.stringify(ports)}`);
  }
  const tcp = ports.map((port) => ({ protocol: 'TCP', port: k8s.IntOrString.fromNumber(port) }));
  if (apiServer?.cidrs === undefined) return { ports: tcp };
  if (!Array.isArray(apiServer.cidrs) || apiServer.cidrs.length === 0) {
    throw new Error(`${field}.cidrs must list the API server's endpoint addresses (kubectl get endpoints kubernetes -n default), got ${JSON.stringify(apiServer.cidrs)}`);
  }
  for (const [index, cidr] of apiServer.cidrs.entries()) {
    if (typeof cidr !== 'string' || !CIDR.test(cidr)) throw new Error(`${field}.cidrs[${index}] must be CIDR notation such as "172.18.0.2/32", got ${JSON.stringify(cidr)}`);
  }
  return { ports: tcp, to: apiServer.cidrs.map((cidr) => ({ ipBlock: { cidr } })) };
}
