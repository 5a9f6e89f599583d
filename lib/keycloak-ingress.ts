/**
 * KeycloakIngress: an Ingress in front of Keycloak's Service — what Bitnami keycloak chart users
 * have with `ingress.enabled=true` (class, host, TLS, annotations).
 */
import { k8s } from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import type { Keycloak } from './keycloak.js';
import { isQualifiedName, validateDnsSubdomain } from './validation.js';

/** TLS of {@link KeycloakIngress}. */
export interface KeycloakIngressTls {
  /**
   * Secret (`kubernetes.io/tls`) holding the certificate for {@link KeycloakIngressProps.host}; with
   * cert-manager, the name its Certificate writes to.
   */
  readonly secretName: string;
}

/** Properties of {@link KeycloakIngress}. */
export interface KeycloakIngressProps {
  /** The Keycloak whose Service (port `http`) the Ingress routes to. */
  readonly keycloak: Keycloak;
  /** Public host name, e.g. `sso.example.com` (a leading `*.` wildcard is allowed). */
  readonly host: string;
  /**
   * IngressClass name, e.g. `nginx`.
   *
   * @default - the cluster's default IngressClass
   */
  readonly ingressClassName?: string;
  /**
   * Serve TLS with this certificate.
   *
   * @default - no TLS at the Ingress
   */
  readonly tls?: KeycloakIngressTls;
  /**
   * Annotations, e.g. `cert-manager.io/cluster-issuer` or controller-specific settings.
   *
   * @default - none
   */
  readonly annotations?: Readonly<Record<string, string>>;
  /**
   * Path prefix routed to Keycloak.
   *
   * @default '/'
   */
  readonly path?: string;
  /**
   * Name of the Ingress.
   *
   * @default - the Keycloak Service's name
   */
  readonly name?: string;
}

/** An Ingress for Keycloak's HTTP port. Validates host, class, TLS Secret and path at synth. */
export class KeycloakIngress extends Construct {
  /** Name of the Ingress. */
  public readonly name: string;
  /** The Ingress object, for escape hatches. */
  public readonly ingress: k8s.KubeIngress;

  public constructor(scope: Construct, id: string, props: KeycloakIngressProps) {
    super(scope, id);
    const field = 'KeycloakIngress';
    if (!props || props.keycloak === undefined) throw new Error(`${field} 'keycloak' is required: pass the Keycloak construct to route to`);
    if (typeof props.host !== 'string' || props.host === '') {
      throw new Error(`${field} 'host' is required: the public host name users reach Keycloak at, e.g. "sso.example.com"`);
    }
    validateDnsSubdomain(`${field} 'host'`, props.host.startsWith('*.') ? props.host.slice(2) : props.host);
    if (props.ingressClassName !== undefined) validateDnsSubdomain(`${field} 'ingressClassName'`, props.ingressClassName);
    if (props.tls !== undefined) {
      if (typeof props.tls !== 'object' || props.tls === null || typeof props.tls.secretName !== 'string') {
        throw new Error(`${field} 'tls' must be { secretName: "<tls Secret>" }, got ${JSON.stringify(props.tls)}`);
      }
      validateDnsSubdomain(`${field} 'tls.secretName'`, props.tls.secretName);
    }
    for (const [key, value] of Object.entries(props.annotations ?? {})) {
      if (!isQualifiedName(key) || typeof value !== 'string') {
        throw new Error(`${field} 'annotations' must map annotation keys such as "cert-manager.io/cluster-issuer" to strings, got ${JSON.stringify(key)}: ${JSON.stringify(value)}`);
      }
    }
    const path = props.path ?? '/';
    if (typeof path !== 'string' || !path.startsWith('/')) throw new Error(`${field} 'path' must start with "/", got ${JSON.stringify(path)}`);
    this.name = validateDnsSubdomain(`${field} 'name'`, props.name ?? props.keycloak.serviceName);

    this.ingress = new k8s.KubeIngress(this, 'ingress', {
      metadata: {
        name: this.name,
        labels: { ...props.keycloak.podSelectorLabels },
        ...(props.annotations ? { annotations: { ...props.annotations } } : {}),
      },
      spec: {
        ...(props.ingressClassName !== undefined ? { ingressClassName: props.ingressClassName } : {}),
        ...(props.tls ? { tls: [{ hosts: [props.host], secretName: props.tls.secretName }] } : {}),
        rules: [
          {
            host: props.host,
            http: {
              paths: [
                {
                  path,
                  pathType: 'Prefix',
                  // By port name, so the route survives a change of the Service's port number.
                  backend: { service: { name: props.keycloak.serviceName, port: { name: 'http' } } },
                },
              ],
            },
          },
        ],
      },
    });
  }
}
