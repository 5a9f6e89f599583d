/**
 * `Status` bodies exactly as the real API server writes them for failures: kind, apiVersion,
 * status "Failure", message, reason, details {name, group, kind} and code. Clients (client-node,
 * kubectl) key their behaviour on `reason` and `code`, so these must match.
 */
import { qualifiedResource, type ResourceType } from './resource-types.js';

export interface StatusDetails {
  name?: string;
  group?: string;
  /** The resource (plural), as the real server fills it. */
  kind?: string;
  uid?: string;
  causes?: { reason?: string; message: string; field?: string }[];
  retryAfterSeconds?: number;
}

export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** Thrown inside the fake to answer a request with a Status body. */
export class StatusError extends Error {
  constructor(readonly status: StatusBody) {
    super(status.message);
  }
}

/** HTTP status → the reason the real server uses for it. */
export const REASON_FOR_CODE: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export function failure(code: number, message: string, reason = REASON_FOR_CODE[code] ?? 'Unknown', details?: StatusDetails): StatusError {
  const body: StatusBody = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details) body.details = details;
  return new StatusError(body);
}

function resourceDetails(resourceType: ResourceType, name?: string): StatusDetails {
  const details: StatusDetails = {};
  if (name !== undefined) details.name = name;
  if (resourceType.group) details.group = resourceType.group;
  details.kind = resourceType.plural;
  return details;
}

export function notFound(resourceType: ResourceType, name: string): StatusError {
  return failure(404, `${qualifiedResource(resourceType)} "${name}" not found`, 'NotFound', resourceDetails(resourceType, name));
}

export function alreadyExists(resourceType: ResourceType, name: string): StatusError {
  return failure(409, `${qualifiedResource(resourceType)} "${name}" already exists`, 'AlreadyExists', resourceDetails(resourceType, name));
}

export function conflict(resourceType: ResourceType, name: string): StatusError {
  return failure(
    409,
    `Operation cannot be fulfilled on ${qualifiedResource(resourceType)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    'Conflict',
    resourceDetails(resourceType, name),
  );
}

/** A 422 Invalid; a cause's reason defaults to FieldValueInvalid (FieldValueForbidden for a `Forbidden:` one). */
export function invalid(resourceType: ResourceType, name: string, causes: { field: string; message: string; reason?: string }[]): StatusError {
  // errors.NewInvalid prints the qualified kind: `StatefulSet.apps "x" is invalid: …`, `Service "x" …`.
  const kindLabel = resourceType.group ? `${resourceType.kind}.${resourceType.group}` : resourceType.kind;
  const summary = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
  return failure(422, `${kindLabel} "${name}" is invalid: ${summary}`, 'Invalid', {
    ...resourceDetails(resourceType, name),
    kind: resourceType.kind,
    causes: causes.map((c) => ({ reason: c.reason ?? 'FieldValueInvalid', message: c.message, field: c.field })),
  });
}

export function badRequest(message: string): StatusError {
  return failure(400, message, 'BadRequest');
}

/**
 * The real authorizer's wording, e.g.
 * `statefulsets.apps "web" is forbidden: User "system:serviceaccount:ns:sa" cannot patch resource
 * "statefulsets/scale" in API group "apps" in the namespace "ns"`.
 */
export function forbidden(params: {
  user: string;
  verb: string;
  resourceType: ResourceType;
  subresource?: string;
  name?: string;
  namespace?: string;
}): StatusError {
  const { user, verb, resourceType, subresource, name, namespace } = params;
  const resource = subresource ? `${resourceType.plural}/${subresource}` : resourceType.plural;
  const subject = name ? `${qualifiedResource(resourceType)} "${name}"` : qualifiedResource(resourceType);
  const scope = namespace ? `in the namespace "${namespace}"` : 'at the cluster scope';
  const message = `${subject} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "${resourceType.group}" ${scope}`;
  return failure(403, message, 'Forbidden', resourceDetails(resourceType, name));
}
