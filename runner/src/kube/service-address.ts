/**
 * Where the runner connects to reach a Service of its namespace. In a cluster that is the
 * Service's name itself (cluster DNS resolves it, kube-proxy forwards the port). Outside one (the
 * CLI run by hand through `kubectl port-forward svc/<name> 15432:5432`, or the rehearsal, whose
 * Service proxies are its cluster DNS + kube-proxy) `MIGRATION_SERVICE_ADDRESSES` maps names to
 * local addresses: `<service>[:<port>]=<host>:<port>`, comma separated; an entry with the
 * Service port wins over one without.
 *
 * Only names the runner finds at run time go through here (the legacy database it adopts, see
 * phases/adopt-legacy.ts): configured hosts are used as configured.
 */
import { Env } from '../../../lib/contract.js';
import { usageError } from '../errors.js';

export interface ServiceAddress {
  readonly host: string;
  readonly port: number;
}

/** `<service>` or `<service>:<port>` → the address to dial. */
export type ServiceAddressMap = ReadonlyMap<string, ServiceAddress>;

const ENTRY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)(:(\d{1,5}))?=([^\s=,:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/;

function port(raw: string, entry: string, value: string): number {
  const number = Number(raw);
  if (!Number.isInteger(number) || number < 1 || number > 65535) {
    throw usageError(`${Env.serviceAddresses} has a port out of range in "${entry}" (in "${value}")`, `use ports from 1 to 65535`);
  }
  return number;
}

/** Parses MIGRATION_SERVICE_ADDRESSES; unset or empty: no mapping (cluster DNS). */
export function parseServiceAddresses(value: string | undefined): ServiceAddressMap {
  const map = new Map<string, ServiceAddress>();
  for (const entry of (value ?? '').split(',').map((part) => part.trim()).filter((part) => part.length > 0)) {
    const match = ENTRY.exec(entry);
    if (!match) {
      throw usageError(
        `${Env.serviceAddresses} must be comma-separated <service>[:<port>]=<host>:<port> entries, got "${entry}" (in "${value}")`,
        `e.g. keycloak-postgresql=127.0.0.1:15432 while kubectl port-forward svc/keycloak-postgresql 15432:5432 runs; unset it inside the cluster`,
      );
    }
    const key = match[4] === undefined ? match[1]! : `${match[1]}:${port(match[4], entry, value!)}`;
    map.set(key, { host: match[5]!.replace(/^\[|\]$/g, ''), port: port(match[6]!, entry, value!) });
  }
  return map;
}

/** The address of `service`'s port `servicePort`: the mapped one, else the name (cluster DNS). */
export function serviceAddress(map: ServiceAddressMap, service: string, servicePort: number): ServiceAddress {
  return map.get(`${service}:${servicePort}`) ?? map.get(service) ?? { host: service, port: servicePort };
}

/** The map back in its variable's format (the rehearsal writes it for its pods). */
export function formatServiceAddresses(entries: Iterable<readonly [string, ServiceAddress]>): string {
  return [...entries].map(([key, address]) => `${key}=${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`).join(',');
}
