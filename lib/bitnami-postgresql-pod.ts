import { k8s } from 'cdk8s-plus-27';

/*
 * The pod layout the Bitnami PostgreSQL images (`postgresql` and `postgresql-repmgr`) need under
 * a read-only root filesystem, shared by PostgresStandalone and PostgresHa's repmgr flavor so
 * that both keep matching the charts they imitate. Each image's own extra directories stay with
 * its construct.
 */

/** Where the Bitnami image keeps its data volume and PGDATA. */
export const BITNAMI_POSTGRESQL_VOLUME_DIR = '/bitnami/postgresql';

/** Environment telling the Bitnami image where its data volume and PGDATA are (inside the `data` mount). */
export function bitnamiPostgresqlDataDirEnv(): k8s.EnvVar[] {
  return [
    { name: 'POSTGRESQL_VOLUME_DIR', value: BITNAMI_POSTGRESQL_VOLUME_DIR },
    { name: 'PGDATA', value: `${BITNAMI_POSTGRESQL_VOLUME_DIR}/data` },
  ];
}

/**
 * Volume mounts of a Bitnami PostgreSQL container: the writable directories every such image
 * needs, then `imageSpecificWritableDirs` (e.g. repmgr's), then shared memory and the data volume.
 * The order follows the Bitnami charts.
 */
export function bitnamiPostgresqlVolumeMounts(imageSpecificWritableDirs: readonly k8s.VolumeMount[] = []): k8s.VolumeMount[] {
  return [
    { name: 'empty-dir', mountPath: '/tmp', subPath: 'tmp-dir' },
    { name: 'empty-dir', mountPath: '/opt/bitnami/postgresql/conf', subPath: 'app-conf-dir' },
    { name: 'empty-dir', mountPath: '/opt/bitnami/postgresql/tmp', subPath: 'app-tmp-dir' },
    ...imageSpecificWritableDirs,
    { name: 'dshm', mountPath: '/dev/shm' },
    { name: 'data', mountPath: BITNAMI_POSTGRESQL_VOLUME_DIR },
  ];
}

/** The pod volumes behind {@link bitnamiPostgresqlVolumeMounts} (the data volume comes from the claim template). */
export function bitnamiPostgresqlVolumes(): k8s.Volume[] {
  return [
    { name: 'empty-dir', emptyDir: {} },
    // PostgreSQL's parallel queries use shared memory; the container default of 64Mi is too small.
    { name: 'dshm', emptyDir: { medium: 'Memory' } },
  ];
}

/**
 * The StatefulSet's `data` volume claim template; its PVCs are named `data-<statefulSet>-<ordinal>`,
 * which the migration relies on.
 *
 * @param storageClass - `undefined` leaves the field out: the cluster's default storage class
 */
export function dataVolumeClaimTemplate(storageSize: string, storageClass: string | undefined): k8s.KubePersistentVolumeClaimProps {
  return {
    metadata: { name: 'data' },
    spec: {
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: k8s.Quantity.fromString(storageSize) } },
      ...(storageClass !== undefined ? { storageClassName: storageClass } : {}),
    },
  };
}
