/** The fake Kubernetes API server for tests and the rehearsal: see server.ts. */
export {
  FakeKubeApiServer,
  startFakeKubeApiServer,
  type ChangeEvent,
  type ChangeInfo,
  type ChangeListener,
  type FakeKubeApiServerOptions,
  type FaultHandle,
  type FaultRule,
  type KubeObject,
  type ObjectReference,
  type RequestMatcher,
  type RequestRecord,
  type UserInfo,
} from './server.js';
export { startWorkloadController, type WorkloadController, type WorkloadControllerOptions } from './workload-controller.js';
export { type ResourceType, BUILT_IN_RESOURCE_TYPES } from './resource-types.js';
export { serviceAccountUser } from './rbac.js';
export { apiServerTlsFront, writeTlsKubeconfig, type TlsFront } from './tls-front.js';
