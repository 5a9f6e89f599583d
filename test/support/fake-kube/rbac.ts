/**
 * RBAC evaluation with the rules of k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac:
 * ClusterRoleBindings grant their ClusterRole everywhere; RoleBindings grant their Role or
 * ClusterRole in the binding's namespace only. A rule matches when its apiGroups, resources
 * (`resource`, `resource/subresource`, `*`, or a star followed by `/subresource`), verbs and resourceNames all match.
 * resourceNames never match a request without a name (create, list, deletecollection), exactly
 * as in Kubernetes. Aggregated ClusterRoles (aggregationRule) are not expanded.
 */

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface RbacSubject {
  kind: string;
  name: string;
  namespace?: string;
  apiGroup?: string;
}

export interface RoleLike {
  metadata: { name: string; namespace?: string };
  rules?: PolicyRule[];
}

export interface BindingLike {
  metadata: { name: string; namespace?: string };
  roleRef: { kind: string; name: string; apiGroup?: string };
  subjects?: RbacSubject[];
}

/** Who is calling, as the authenticator resolved the bearer token. */
export interface UserInfo {
  name: string;
  groups: string[];
  /** Admins bypass authorization (like system:masters). */
  admin?: boolean;
}

/** What is being asked, with the same attributes as authorizer.Attributes. */
export interface RequestAttributes {
  verb: string;
  apiGroup: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace?: string;
}

/** Reads the RBAC objects currently stored. */
export interface RbacObjects {
  roles(namespace: string): RoleLike[];
  roleBindings(namespace: string): BindingLike[];
  clusterRoles(): RoleLike[];
  clusterRoleBindings(): BindingLike[];
}

/** The user name of a ServiceAccount, as the token authenticator reports it. */
export function serviceAccountUser(namespace: string, name: string): UserInfo {
  return {
    name: `system:serviceaccount:${namespace}:${name}`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
  };
}

function subjectMatches(subject: RbacSubject, user: UserInfo, bindingNamespace: string | undefined): boolean {
  switch (subject.kind) {
    case 'ServiceAccount': {
      const namespace = subject.namespace ?? bindingNamespace;
      return user.name === `system:serviceaccount:${namespace}:${subject.name}`;
    }
    case 'User':
      return user.name === subject.name;
    case 'Group':
      return user.groups.includes(subject.name);
    default:
      return false;
  }
}

function includesOrAll(list: string[] | undefined, value: string): boolean {
  return (list ?? []).some((item) => item === '*' || item === value);
}

export function ruleAllows(rule: PolicyRule, request: RequestAttributes): boolean {
  if (!includesOrAll(rule.verbs, request.verb)) return false;
  if (!includesOrAll(rule.apiGroups, request.apiGroup)) return false;
  const combined = request.subresource ? `${request.resource}/${request.subresource}` : request.resource;
  const resourceMatches = (rule.resources ?? []).some(
    (resource) =>
      resource === '*' || resource === combined || (request.subresource !== undefined && resource === `*/${request.subresource}`),
  );
  if (!resourceMatches) return false;
  const names = rule.resourceNames ?? [];
  if (names.length === 0) return true;
  return request.name !== undefined && request.name !== '' && names.includes(request.name);
}

function rulesOf(roleRef: BindingLike['roleRef'], bindingNamespace: string | undefined, objects: RbacObjects): PolicyRule[] {
  if (roleRef.kind === 'ClusterRole') {
    return objects.clusterRoles().find((role) => role.metadata.name === roleRef.name)?.rules ?? [];
  }
  if (roleRef.kind === 'Role' && bindingNamespace) {
    return objects.roles(bindingNamespace).find((role) => role.metadata.name === roleRef.name)?.rules ?? [];
  }
  return [];
}

/** True when some binding grants the request; the caller answers 403 otherwise. */
export function isAllowed(user: UserInfo, request: RequestAttributes, objects: RbacObjects): boolean {
  if (user.admin) return true;
  const grants = (binding: BindingLike): boolean =>
    (binding.subjects ?? []).some((subject) => subjectMatches(subject, user, binding.metadata.namespace)) &&
    rulesOf(binding.roleRef, binding.metadata.namespace, objects).some((rule) => ruleAllows(rule, request));
  if (objects.clusterRoleBindings().some(grants)) return true;
  if (request.namespace && objects.roleBindings(request.namespace).some(grants)) return true;
  return false;
}
