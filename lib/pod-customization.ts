/**
 * What platform teams add to the pods of Keycloak, the databases and the migration Jobs without
 * forking: scheduling (tolerations, node selector, affinity, topology spread, priority class),
 * metadata (pod annotations and labels), extra environment, volumes and sidecars, pull secrets.
 *
 * The constructs synthesize raw `k8s.Kube*` objects (cdk8s-plus-27 has no volumeClaimTemplates, no
 * podFailurePolicy and no `capabilities.drop: [ALL]`), so this is their one escape hatch for the pod
 * template, applied as JSON patches to the synthesized object — the same mechanism
 * `ApiObject.of(x).addJsonPatch(...)` offers for anything not covered here. Every customization is
 * validated: labels may not replace the selector's, env may not override the construct's own
 * variables, and the resulting pod must still meet the Pod Security "restricted" profile.
 */
import { ApiObject, JsonPatch } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import { restrictedProfileViolations } from './pod-security.js';
import { validateDnsLabel, validateDnsSubdomain, validateLabels } from './validation.js';

/** Additions to a pod template. Everything is optional and added to what the construct sets. */
export interface PodCustomization {
  /**
   * Tolerations, e.g. for a dedicated node pool.
   *
   * @default - none
   */
  readonly tolerations?: readonly k8s.Toleration[];
  /**
   * Node labels the pods must run on.
   *
   * @default - none
   */
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /**
   * Node and pod (anti-)affinity, added to the construct's: each term list is appended to the one
   * the construct sets (the PostgreSQL and Pgpool pods keep their soft anti-affinity, which spreads
   * them over nodes).
   *
   * @default - none
   */
  readonly affinity?: k8s.Affinity;
  /**
   * Topology spread constraints, e.g. one replica per zone. A constraint without a
   * `labelSelector` gets the workload's own selector labels.
   *
   * @default - none
   */
  readonly topologySpreadConstraints?: readonly k8s.TopologySpreadConstraint[];
  /**
   * PriorityClass of the pods.
   *
   * @default - the cluster's default
   */
  readonly priorityClassName?: string;
  /**
   * Annotations on the pods (not on the workload object).
   *
   * @default - none
   */
  readonly podAnnotations?: Readonly<Record<string, string>>;
  /**
   * Extra labels on the pods. They may not change a label the workload's selector uses.
   *
   * @default - none
   */
  readonly podLabels?: Readonly<Record<string, string>>;
  /**
   * Extra environment variables of the workload's main container(s). Names the construct sets
   * itself are refused.
   *
   * @default - none
   */
  readonly extraEnv?: readonly k8s.EnvVar[];
  /**
   * Extra volumes of the pod (restricted-profile types only: configMap, secret, emptyDir,
   * projected, downwardAPI, persistentVolumeClaim, csi, ephemeral).
   *
   * @default - none
   */
  readonly extraVolumes?: readonly k8s.Volume[];
  /**
   * Extra mounts of the main container(s), e.g. of {@link extraVolumes}.
   *
   * @default - none
   */
  readonly extraVolumeMounts?: readonly k8s.VolumeMount[];
  /**
   * Sidecar containers. Each must satisfy the restricted profile itself (non-root,
   * `allowPrivilegeEscalation: false`, `capabilities.drop: [ALL]`) and have cpu/memory requests
   * and a memory limit.
   *
   * @default - none
   */
  readonly sidecars?: readonly k8s.Container[];
  /**
   * Image pull secrets (names of `kubernetes.io/dockerconfigjson` Secrets).
   *
   * @default - none
   */
  readonly imagePullSecrets?: readonly string[];
}

/** Where the pod template lives in each kind the constructs synthesize. */
const POD_TEMPLATE_PATH: Readonly<Record<string, string>> = {
  StatefulSet: '/spec/template',
  Deployment: '/spec/template',
  Job: '/spec/template',
};

/**
 * Applies `customization` to the pod template of `workload` (a StatefulSet, Deployment or Job
 * synthesized by this library). `field` names the prop in error messages; `mainContainers` are the
 * containers that get `extraEnv` and `extraVolumeMounts` (default: every container the construct made).
 */
export function customizePod(workload: ApiObject, field: string, customization: PodCustomization | undefined, mainContainers?: readonly string[]): void {
  if (customization === undefined) return;
  if (typeof customization !== 'object' || customization === null || Array.isArray(customization)) {
    throw new Error(`${field} must be an object of pod customizations (tolerations, nodeSelector, sidecars, ...), got ${JSON.stringify(customization)}`);
  }
  const templatePath = POD_TEMPLATE_PATH[workload.kind];
  if (!templatePath) throw new Error(`${field}: pods of a ${workload.kind} cannot be customized here; use ApiObject.of(...).addJsonPatch(...)`);
  // The raw objects' JSON patches apply to their props before the L1 class converts them to the
  // API's spelling (quantities and int-or-strings are still objects then), so the template is
  // read, changed and written back in that shape; the user's k8s.* structs are in that shape too.
  const manifest = ApiObject.prototype.toJson.call(workload) as { spec: { selector?: { matchLabels?: Record<string, string> }; template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, any> } } };
  const template = structuredClone(manifest.spec.template);
  const spec = template.spec;
  const selector = manifest.spec.selector?.matchLabels ?? {};
  const containerNames = (spec.containers as Array<{ name: string }>).map((container) => container.name);
  const targets = mainContainers ?? containerNames;

  const arrayOf = <T>(key: keyof PodCustomization): readonly T[] => listProp<T>(field, customization, key);
  const mapOf = (key: keyof PodCustomization): Record<string, string> => mapProp(field, customization, key);

  const labels = validateLabels(`${field}.podLabels`, mapOf('podLabels'));
  for (const [key, value] of Object.entries(labels)) {
    if (key in selector && selector[key] !== value) {
      throw new Error(`${field}.podLabels.${key} is ${JSON.stringify(value)}, but the workload's selector needs ${JSON.stringify(selector[key])}: choose another label key`);
    }
  }
  if (Object.keys(labels).length > 0) template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, ...labels } };
  const annotations = mapOf('podAnnotations');
  if (Object.keys(annotations).length > 0) template.metadata = { ...template.metadata, annotations: { ...template.metadata?.annotations, ...annotations } };

  const tolerations = arrayOf<k8s.Toleration>('tolerations');
  if (tolerations.length > 0) spec.tolerations = [...(spec.tolerations ?? []), ...tolerations];
  const nodeSelector = mapOf('nodeSelector');
  if (Object.keys(nodeSelector).length > 0) spec.nodeSelector = { ...spec.nodeSelector, ...nodeSelector };
  if (customization.affinity !== undefined) spec.affinity = mergeAffinity(field, spec.affinity, customization.affinity);
  const spread = arrayOf<k8s.TopologySpreadConstraint>('topologySpreadConstraints');
  validateSpread(field, spread);
  if (spread.length > 0) {
    spec.topologySpreadConstraints = [
      ...(spec.topologySpreadConstraints ?? []),
      ...spread.map((constraint) => ({ ...constraint, labelSelector: constraint.labelSelector ?? { matchLabels: selector } })),
    ];
  }
  if (customization.priorityClassName !== undefined) spec.priorityClassName = validatePriorityClassName(field, customization.priorityClassName);
  const pullSecrets = pullSecretNames(field, customization);
  if (pullSecrets.length > 0) spec.imagePullSecrets = [...(spec.imagePullSecrets ?? []), ...pullSecrets.map((name) => ({ name }))];

  const volumes = arrayOf<k8s.Volume>('extraVolumes');
  const volumeNames = new Set((spec.volumes ?? []).map((volume: { name: string }) => volume.name));
  volumes.forEach((volume, index) => {
    if (!volume || typeof volume.name !== 'string' || volumeNames.has(volume.name)) {
      throw new Error(`${field}.extraVolumes[${index}].name ${JSON.stringify(volume?.name)} is missing or already used by the pod (${[...volumeNames].join(', ')}): choose another name`);
    }
    volumeNames.add(volume.name);
  });
  if (volumes.length > 0) spec.volumes = [...(spec.volumes ?? []), ...volumes];

  const env = arrayOf<k8s.EnvVar>('extraEnv');
  const mounts = arrayOf<k8s.VolumeMount>('extraVolumeMounts');
  mounts.forEach((mount, index) => {
    if (!mount || !volumeNames.has(mount.name)) {
      throw new Error(`${field}.extraVolumeMounts[${index}] mounts volume ${JSON.stringify(mount?.name)}, which the pod does not have: add it to ${field}.extraVolumes`);
    }
  });
  for (const container of spec.containers as Array<{ name: string; env?: unknown[]; volumeMounts?: unknown[] }>) {
    if (!targets.includes(container.name)) continue;
    const taken = new Set((container.env ?? []).map((variable) => (variable as { name: string }).name));
    env.forEach((variable, index) => {
      if (!variable || typeof variable.name !== 'string' || variable.name === '') {
        throw new Error(`${field}.extraEnv[${index}] needs a name, got ${JSON.stringify(variable)}`);
      }
      if (taken.has(variable.name)) {
        throw new Error(`${field}.extraEnv[${index}] sets ${variable.name}, which the construct sets itself on container ${container.name}: use the construct's prop for it instead`);
      }
    });
    if (env.length > 0) container.env = [...(container.env ?? []), ...env];
    if (mounts.length > 0) container.volumeMounts = [...(container.volumeMounts ?? []), ...mounts];
  }

  const sidecars = arrayOf<k8s.Container>('sidecars');
  sidecars.forEach((sidecar, index) => {
    if (!sidecar || typeof sidecar !== 'object') throw new Error(`${field}.sidecars[${index}] must be a container, got ${JSON.stringify(sidecar)}`);
    validateDnsLabel(`${field}.sidecars[${index}].name`, sidecar.name);
    if (containerNames.includes(sidecar.name)) {
      throw new Error(`${field}.sidecars[${index}].name ${JSON.stringify(sidecar.name)} is taken by the pod's containers (${containerNames.join(', ')}): choose another name`);
    }
    if (typeof sidecar.image !== 'string' || sidecar.image === '') throw new Error(`${field}.sidecars[${index}].image is required`);
    containerNames.push(sidecar.name);
  });
  if (sidecars.length > 0) spec.containers = [...spec.containers, ...sidecars];

  workload.addJsonPatch(JsonPatch.replace(templatePath, template));
  const rendered = workload.toJson() as { spec: { template: { spec: Record<string, any> } } };
  const violations = restrictedProfileViolations(rendered.spec.template.spec);
  if (violations.length > 0) {
    throw new Error(
      `${field} makes the pod break the Pod Security "restricted" profile: ${violations.join('; ')}. ` +
        'Give sidecars runAsNonRoot, allowPrivilegeEscalation: false, capabilities.drop [ALL], cpu/memory requests and a memory limit; use only restricted volume types',
    );
  }
}

/**
 * The same customization for a CloudNativePG `Cluster`, whose pods the operator makes: mapped onto
 * the Cluster's own fields (`spec.affinity.{tolerations,nodeSelector,nodeAffinity,
 * additionalPodAffinity,additionalPodAntiAffinity}`, `topologySpreadConstraints`,
 * `priorityClassName`, `inheritedMetadata`, `env`, `imagePullSecrets`). What a Cluster cannot
 * express (sidecars, extra volumes and mounts) is refused, naming the prop.
 */
export function cloudNativePgPodSpec(field: string, customization: PodCustomization | undefined): Record<string, unknown> {
  if (customization === undefined) return {};
  const unsupported = (['sidecars', 'extraVolumes', 'extraVolumeMounts'] as const).filter((key) => customization[key] !== undefined);
  if (unsupported.length > 0) {
    throw new Error(
      `${field} ${unsupported.map((key) => `'${key}'`).join(', ')} cannot be applied to a CloudNativePG Cluster (the operator makes its pods): ` +
        "remove it, or use flavor 'repmgr', or the operator's own plugin mechanism",
    );
  }
  const tolerations = listProp<k8s.Toleration>(field, customization, 'tolerations');
  const nodeSelector = mapProp(field, customization, 'nodeSelector');
  const podLabels = mapProp(field, customization, 'podLabels');
  const podAnnotations = mapProp(field, customization, 'podAnnotations');
  const extraEnv = listProp<k8s.EnvVar>(field, customization, 'extraEnv');
  const pullSecrets = pullSecretNames(field, customization);
  const spread = listProp<k8s.TopologySpreadConstraint>(field, customization, 'topologySpreadConstraints');
  validateSpread(field, spread);
  const affinity = customization.affinity === undefined ? undefined : k8s.toJson_Affinity(customization.affinity);
  const spec: Record<string, unknown> = {};
  const clusterAffinity: Record<string, unknown> = {
    ...(tolerations.length > 0 ? { tolerations: tolerations.map((t) => k8s.toJson_Toleration(t)) } : {}),
    ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector } : {}),
    ...(affinity?.nodeAffinity ? { nodeAffinity: affinity.nodeAffinity } : {}),
    ...(affinity?.podAffinity ? { additionalPodAffinity: affinity.podAffinity } : {}),
    ...(affinity?.podAntiAffinity ? { additionalPodAntiAffinity: affinity.podAntiAffinity } : {}),
  };
  if (Object.keys(clusterAffinity).length > 0) spec.affinity = clusterAffinity;
  if (spread.length > 0) spec.topologySpreadConstraints = spread.map((c) => k8s.toJson_TopologySpreadConstraint(c));
  if (customization.priorityClassName !== undefined) spec.priorityClassName = validatePriorityClassName(field, customization.priorityClassName);
  if (Object.keys(podLabels).length > 0 || Object.keys(podAnnotations).length > 0) {
    spec.inheritedMetadata = {
      ...(Object.keys(podLabels).length > 0 ? { labels: podLabels } : {}),
      ...(Object.keys(podAnnotations).length > 0 ? { annotations: podAnnotations } : {}),
    };
  }
  extraEnv.forEach((variable, index) => {
    if (!variable || typeof variable.name !== 'string' || variable.name === '') throw new Error(`${field}.extraEnv[${index}] needs a name, got ${JSON.stringify(variable)}`);
  });
  if (extraEnv.length > 0) spec.env = extraEnv.map((v) => k8s.toJson_EnvVar(v));
  if (pullSecrets.length > 0) spec.imagePullSecrets = pullSecrets.map((name) => ({ name }));
  return spec;
}

/**
 * `added` joined to the construct's `base`: per kind of affinity, term lists are appended; a field
 * that is not a list (a node affinity's required NodeSelector, whose terms are ORed) is taken from
 * whichever sets it, and refused when both do (joining would widen, not narrow, the choice).
 */
function mergeAffinity(field: string, base: Record<string, any> | undefined, added: k8s.Affinity): Record<string, any> {
  if (typeof added !== 'object' || added === null || Array.isArray(added)) {
    throw new Error(`${field}.affinity must be an object (nodeAffinity, podAffinity, podAntiAffinity), got ${JSON.stringify(added)}`);
  }
  const merged: Record<string, any> = { ...base };
  for (const [kind, terms] of Object.entries(added as Record<string, Record<string, unknown> | undefined>)) {
    if (terms === undefined) continue;
    const existing: Record<string, unknown> | undefined = merged[kind];
    if (existing === undefined) {
      merged[kind] = terms;
      continue;
    }
    const joined: Record<string, unknown> = { ...existing };
    for (const [key, value] of Object.entries(terms)) {
      const current = existing[key];
      if (current === undefined) joined[key] = value;
      else if (Array.isArray(current) && Array.isArray(value)) joined[key] = [...current, ...value];
      else {
        throw new Error(
          `${field}.affinity.${kind}.${key} is set by the construct as well, and the two cannot be joined; ` +
            `set it with ApiObject.of(...).addJsonPatch(...) instead`,
        );
      }
    }
    merged[kind] = joined;
  }
  return merged;
}

function validateSpread(field: string, constraints: readonly k8s.TopologySpreadConstraint[]): void {
  constraints.forEach((constraint, index) => {
    if (!constraint || typeof constraint.topologyKey !== 'string' || constraint.topologyKey === '') {
      throw new Error(`${field}.topologySpreadConstraints[${index}].topologyKey must be a node label key such as "topology.kubernetes.io/zone", got ${JSON.stringify(constraint?.topologyKey)}`);
    }
  });
}

/** A PriorityClass name is a DNS-1123 subdomain (`system-cluster-critical`, `team.critical`). */
function validatePriorityClassName(field: string, name: unknown): string {
  return validateDnsSubdomain(`${field}.priorityClassName`, name as string);
}

/** Pull secrets are Secret names: DNS-1123 subdomains. */
function pullSecretNames(field: string, customization: PodCustomization): readonly string[] {
  const names = listProp<string>(field, customization, 'imagePullSecrets');
  names.forEach((name, index) => validateDnsSubdomain(`${field}.imagePullSecrets[${index}]`, name));
  return names;
}

/** A list-valued prop (absent: empty), refused by name when it is not a list. */
function listProp<T>(field: string, customization: PodCustomization, key: keyof PodCustomization): readonly T[] {
  const value = customization[key];
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${field}.${key} must be a list, got ${JSON.stringify(value)}`);
  return value as readonly T[];
}

/** A map-of-strings prop (absent: empty), refused by name when it is anything else. */
function mapProp(field: string, customization: PodCustomization, key: keyof PodCustomization): Record<string, string> {
  const value = customization[key];
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    throw new Error(`${field}.${key} must be a map of strings, got ${JSON.stringify(value)}`);
  }
  return { ...(value as Record<string, string>) };
}
