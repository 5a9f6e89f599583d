/**
 * Kubernetes' protobuf encoding of the kinds clients send as protobuf, decoded to the JSON form
 * the fake stores.
 *
 * client-go's typed clientsets send built-in kinds as `application/vnd.kubernetes.protobuf`; helm 3
 * and 4 store their releases through one (`pkg/storage/driver/secrets.go`), so the release Secrets
 * arrive in protobuf. The wire format (k8s.io/apimachinery `runtime/serializer/protobuf`): the
 * 4-byte magic `k8s\0`, then a `runtime.Unknown` message (1: TypeMeta{1 apiVersion, 2 kind},
 * 2: raw bytes of the object's own message, 3: contentEncoding, 4: contentType). Field numbers
 * below are those of k8s.io/api/core/v1/generated.proto and apimachinery's meta/v1.
 *
 * Only Secret, ConfigMap and DeleteOptions are decoded (what the project's clients send so); another
 * kind is answered 415 with the real server's list of media types, so a new need shows at once.
 */

export class ProtobufError extends Error {}

/** The magic prefix of Kubernetes' protobuf envelope. */
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

interface Field {
  readonly number: number;
  /** Varint value (wire type 0) or bytes (wire type 2); fixed-size fields are skipped. */
  readonly value: bigint | Buffer;
}

function readVarint(buffer: Buffer, offset: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  for (let index = offset; index < buffer.length; index++) {
    const byte = buffer[index] as number;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, next: index + 1 };
    shift += 7n;
  }
  throw new ProtobufError('truncated varint');
}

function fields(buffer: Buffer): Field[] {
  const result: Field[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    const key = readVarint(buffer, offset);
    offset = key.next;
    const number = Number(key.value >> 3n);
    const wireType = Number(key.value & 7n);
    if (wireType === 0) {
      const varint = readVarint(buffer, offset);
      result.push({ number, value: varint.value });
      offset = varint.next;
    } else if (wireType === 2) {
      const length = readVarint(buffer, offset);
      const end = length.next + Number(length.value);
      if (end > buffer.length) throw new ProtobufError(`field ${number} runs past the end of the message`);
      result.push({ number, value: buffer.subarray(length.next, end) });
      offset = end;
    } else if (wireType === 1) {
      offset += 8;
    } else if (wireType === 5) {
      offset += 4;
    } else {
      throw new ProtobufError(`unsupported wire type ${wireType} for field ${number}`);
    }
  }
  return result;
}

function bytesOf(field: Field): Buffer {
  if (!Buffer.isBuffer(field.value)) throw new ProtobufError(`field ${field.number} is not length-delimited`);
  return field.value;
}

function string(field: Field): string {
  return bytesOf(field).toString('utf8');
}

/** A `map<string, V>` entry: key 1, value 2. */
function mapEntry(field: Field): [string, Buffer] {
  let key = '';
  let value: Buffer = Buffer.alloc(0);
  for (const inner of fields(bytesOf(field))) {
    if (inner.number === 1) key = string(inner);
    if (inner.number === 2) value = bytesOf(inner);
  }
  return [key, value];
}

function objectMeta(buffer: Buffer): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  const finalizers: string[] = [];
  for (const field of fields(buffer)) {
    switch (field.number) {
      case 1: metadata.name = string(field); break;
      case 2: metadata.generateName = string(field); break;
      case 3: metadata.namespace = string(field); break;
      case 5: metadata.uid = string(field); break;
      case 6: metadata.resourceVersion = string(field); break;
      case 11: { const [k, v] = mapEntry(field); labels[k] = v.toString('utf8'); break; }
      case 12: { const [k, v] = mapEntry(field); annotations[k] = v.toString('utf8'); break; }
      case 14: finalizers.push(string(field)); break;
      default: break; // server-owned or unused here (timestamps, generation, managedFields, ownerReferences)
    }
  }
  for (const key of ['name', 'generateName', 'namespace', 'uid', 'resourceVersion']) if (metadata[key] === '') delete metadata[key];
  if (Object.keys(labels).length > 0) metadata.labels = labels;
  if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
  if (finalizers.length > 0) metadata.finalizers = finalizers;
  return metadata;
}

/** v1.Secret: 1 metadata, 2 data (bytes), 3 type, 4 stringData, 5 immutable. */
function secret(buffer: Buffer): Record<string, unknown> {
  const object: Record<string, unknown> = { metadata: {} };
  const data: Record<string, string> = {};
  const stringData: Record<string, string> = {};
  for (const field of fields(buffer)) {
    if (field.number === 1) object.metadata = objectMeta(bytesOf(field));
    if (field.number === 2) { const [k, v] = mapEntry(field); data[k] = v.toString('base64'); }
    if (field.number === 3) object.type = string(field);
    if (field.number === 4) { const [k, v] = mapEntry(field); stringData[k] = v.toString('utf8'); }
    if (field.number === 5) object.immutable = field.value === 1n;
  }
  if (Object.keys(data).length > 0) object.data = data;
  if (Object.keys(stringData).length > 0) object.stringData = stringData;
  return object;
}

/** v1.ConfigMap: 1 metadata, 2 data, 3 binaryData, 4 immutable. */
function configMap(buffer: Buffer): Record<string, unknown> {
  const object: Record<string, unknown> = { metadata: {} };
  const data: Record<string, string> = {};
  const binaryData: Record<string, string> = {};
  for (const field of fields(buffer)) {
    if (field.number === 1) object.metadata = objectMeta(bytesOf(field));
    if (field.number === 2) { const [k, v] = mapEntry(field); data[k] = v.toString('utf8'); }
    if (field.number === 3) { const [k, v] = mapEntry(field); binaryData[k] = v.toString('base64'); }
    if (field.number === 4) object.immutable = field.value === 1n;
  }
  if (Object.keys(data).length > 0) object.data = data;
  if (Object.keys(binaryData).length > 0) object.binaryData = binaryData;
  return object;
}

/** meta/v1 DeleteOptions: 1 gracePeriodSeconds, 2 preconditions{1 uid, 2 resourceVersion}, 3 orphanDependents, 4 propagationPolicy, 5 dryRun. */
function deleteOptions(buffer: Buffer): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  const dryRun: string[] = [];
  for (const field of fields(buffer)) {
    if (field.number === 1) object.gracePeriodSeconds = Number(field.value as bigint);
    if (field.number === 2) {
      const preconditions: Record<string, string> = {};
      for (const inner of fields(bytesOf(field))) {
        if (inner.number === 1) preconditions.uid = string(inner);
        if (inner.number === 2) preconditions.resourceVersion = string(inner);
      }
      object.preconditions = preconditions;
    }
    if (field.number === 3) object.orphanDependents = field.value === 1n;
    if (field.number === 4) object.propagationPolicy = string(field);
    if (field.number === 5) dryRun.push(string(field));
  }
  if (dryRun.length > 0) object.dryRun = dryRun;
  return object;
}

const DECODERS: Record<string, (buffer: Buffer) => Record<string, unknown>> = {
  'v1/Secret': secret,
  'v1/ConfigMap': configMap,
  'v1/DeleteOptions': deleteOptions,
  'meta.k8s.io/v1/DeleteOptions': deleteOptions,
};

/** Decodes a `application/vnd.kubernetes.protobuf` body into the object's JSON form. */
export function decodeKubernetesProtobuf(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw new ProtobufError('the body does not start with the Kubernetes protobuf magic "k8s\\0"');
  let apiVersion = '';
  let kind = '';
  let raw: Buffer = Buffer.alloc(0);
  for (const field of fields(body.subarray(4))) {
    if (field.number === 1) {
      for (const inner of fields(bytesOf(field))) {
        if (inner.number === 1) apiVersion = string(inner);
        if (inner.number === 2) kind = string(inner);
      }
    }
    if (field.number === 2) raw = bytesOf(field);
  }
  const decode = DECODERS[`${apiVersion}/${kind}`];
  if (!decode) throw new ProtobufError(`protobuf bodies of ${apiVersion} ${kind} are not decoded by the fake API server`);
  return { apiVersion, kind, ...decode(raw) };
}
