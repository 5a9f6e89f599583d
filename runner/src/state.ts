/**
 * The migration's persisted state: what the state ConfigMap holds as JSON under
 * `StateKey.state` (with the bare phase under `StateKey.phase` for `kubectl -o jsonpath`).
 *
 * Everything here is pure: transitions take a state and return a new one, so the steps decide
 * on a state they read, and the state store (kube/state-store.ts) persists it with
 * compare-and-swap. A step records its phase only after its work is durable, so a resumed run
 * redoes exactly the unfinished step.
 */
import { ExitCode, Phase, StateKey, type PhaseName } from '../../lib/contract.js';
import { RunnerError } from './errors.js';

export const STATE_SCHEMA_VERSION = 1;

/** The order of a successful migration; NotNeeded and Failed stand outside it. */
export const PHASE_ORDER: readonly PhaseName[] = [
  Phase.pending,
  Phase.quiesced,
  Phase.backedUp,
  Phase.backupVerified,
  Phase.legacyProtected,
  Phase.restoring,
  Phase.restored,
  Phase.verified,
  Phase.completed,
];

/** One step that reached a phase. */
export interface PhaseHistoryEntry {
  readonly phase: PhaseName;
  /** When the step leading to this phase started (RFC 3339). */
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  /** Which attempt of that step succeeded (1 = first try). */
  readonly attempt: number;
  readonly detail?: string;
}

/** The verified backup on the backup PVC. */
export interface BackupInfo {
  /** Directory of the dump on the backup volume. */
  readonly dir: string;
  /** SHA-256 of the manifest file, hex: proves the restore reads the backup that was verified. */
  readonly manifestSha256: string;
  readonly bytes: number;
  readonly tableCount: number;
  readonly rows: number;
  /** Name of the PVC holding it. */
  readonly pvc?: string;
  readonly completedAt?: string;
}

/**
 * A backup the runner stopped trusting: the source changed after it was taken (a rollback to the
 * old release wrote to the legacy database), so a new backup replaced it. Its directory is deleted
 * once the migration completes.
 */
export interface SupersededBackup {
  /** Directory of the dump on the backup volume (relative to its mount point). */
  readonly dir: string;
  readonly manifestSha256: string;
  /** The phase the migration had reached when the backup was superseded. */
  readonly phase: PhaseName;
  /** Why, e.g. `12 write(s) to table public.user_entity`. */
  readonly reason: string;
  readonly at: string;
}

/** Result of comparing the restored target with the manifest. */
export interface VerificationResult {
  readonly ok: boolean;
  readonly at: string;
  readonly tablesChecked: number;
  readonly rowsChecked: number;
  /** Tables (or sequences) that differ; empty when ok. */
  readonly mismatches: readonly string[];
}

/** A legacy PVC whose PersistentVolume was set to Retain before anything was deleted. */
export interface ProtectedVolume {
  readonly pvc: string;
  readonly pv: string;
  /** The reclaim policy before the runner changed it (to restore by hand if wanted). */
  readonly previousReclaimPolicy: string;
}

export interface LastError {
  /** The step that failed, e.g. `backup` or `restore`. */
  readonly step: string;
  /** The one-line message (never contains a password). */
  readonly message: string;
  readonly exitCode: number;
  readonly at: string;
}

/** A step in progress, so a resumed run knows what was interrupted. */
export interface CurrentStep {
  readonly name: string;
  readonly startedAt: string;
}

/** A Secret and one of its keys, by name. */
export interface SecretKeyReference {
  readonly name: string;
  readonly key: string;
}

/**
 * The legacy database the runner adopted at decide time because the configured names did not
 * reach it (phases/adopt-legacy.ts): every later Job connects to it, protects it, and `plan` /
 * `status` print it. The password itself is never stored: each Job reads the Secret by name.
 */
export interface AdoptedLegacy {
  readonly statefulSet: string;
  /** The Service to connect to; undefined: the configured SOURCE_PGHOST/PORT. */
  readonly service?: { readonly name: string; readonly port: number };
  /** Where SOURCE_PGUSER's password is; undefined: SOURCE_PGPASSWORD. */
  readonly passwordSecret?: SecretKeyReference;
  /** The adopted StatefulSet's PVCs (found by label). */
  readonly pvcs: readonly string[];
  /** What was found, one line. */
  readonly evidence: string;
}

/**
 * A configured workload that did not exist, found by its labels at prepare time
 * (phases/discover-workloads.ts): every later run quiesces and reports the same one.
 */
export interface AdoptedWorkload {
  /** `statefulset/sso`: the workload found. */
  readonly workload: string;
  /** The selector it was found by. */
  readonly selector: string;
  /** Secrets copied from it: `Secret/<from> → Secret/<to>`. */
  readonly secretCopies: readonly string[];
}

export interface MigrationState {
  readonly schemaVersion: typeof STATE_SCHEMA_VERSION;
  /** Identifies this migration in logs and Events (e.g. the release revision or a random id). */
  readonly migrationId: string;
  readonly phase: PhaseName;
  /** With phase Failed: the phase reached before the failure, where a re-run resumes. */
  readonly resumeFrom?: PhaseName;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly history: readonly PhaseHistoryEntry[];
  /** Attempts started per step name. */
  readonly attempts: Readonly<Record<string, number>>;
  readonly currentStep?: CurrentStep;
  /** `statefulset/keycloak` → replicas before quiesce; restored at unquiesce. */
  readonly originalReplicas: Readonly<Record<string, number>>;
  readonly backup?: BackupInfo;
  /** Earlier backups of this migration that a new one replaced (oldest first). */
  readonly supersededBackups?: readonly SupersededBackup[];
  readonly verification?: VerificationResult;
  readonly protectedVolumes: readonly ProtectedVolume[];
  /**
   * Whether the runner deleted the legacy StatefulSet and PVCs. Recorded (with protectedVolumes)
   * right before the delete, which the step redoes until its phase is recorded: from then on,
   * whatever answers at the legacy names is not the database backed up.
   */
  readonly legacyDeleted: boolean;
  readonly lastError?: LastError;
  /** Why the runner decided what it did, e.g. NotNeeded: "no legacy database". */
  readonly decisionReason?: string;
  /**
   * When the target was found or marked `ready` (ReadyMarker) by this migration: lets later
   * syncs skip the database, notably on NotNeeded where no restore ever writes it.
   */
  readonly readyMarkerAt?: string;
  /** The legacy database adopted from its labels and pod spec; undefined: the configured one. */
  readonly adoptedLegacy?: AdoptedLegacy;
  /** Configured workload key (`statefulset/keycloak`) → the workload found by its labels instead. */
  readonly adoptedWorkloads?: Readonly<Record<string, AdoptedWorkload>>;
}

function timestamp(now: Date): string {
  return now.toISOString();
}

/** A fresh state in phase Pending. */
export function newMigrationState(migrationId: string, now: Date = new Date()): MigrationState {
  const at = timestamp(now);
  return {
    schemaVersion: STATE_SCHEMA_VERSION,
    migrationId,
    phase: Phase.pending,
    createdAt: at,
    updatedAt: at,
    history: [],
    attempts: {},
    originalReplicas: {},
    protectedVolumes: [],
    legacyDeleted: false,
  };
}

/** Completed and NotNeeded: nothing is left to do. Failed is not terminal: a re-run resumes. */
export function isTerminal(state: MigrationState): boolean {
  return state.phase === Phase.completed || state.phase === Phase.notNeeded;
}

/** The phase work resumes from: the phase itself, or for Failed the phase reached before. */
export function effectivePhase(state: MigrationState): PhaseName {
  return state.phase === Phase.failed ? (state.resumeFrom ?? Phase.pending) : state.phase;
}

/** Whether `state` has reached `phase` in the order of a successful migration. */
export function hasReached(state: MigrationState, phase: PhaseName): boolean {
  const current = PHASE_ORDER.indexOf(effectivePhase(state));
  const wanted = PHASE_ORDER.indexOf(phase);
  if (wanted < 0) return state.phase === phase;
  return current >= wanted;
}

/** Marks a step as started and counts the attempt. */
export function startStep(state: MigrationState, step: string, now: Date = new Date()): MigrationState {
  const at = timestamp(now);
  return {
    ...state,
    attempts: { ...state.attempts, [step]: (state.attempts[step] ?? 0) + 1 },
    currentStep: { name: step, startedAt: at },
    updatedAt: at,
  };
}

/**
 * Closes the step in progress without reaching a phase: prepare's work (Secrets, backup PVC, early
 * pass) moves no phase, and an operator reading the state between its Job and the backup Job must
 * not see it "in progress". The attempt count stays.
 */
export function closeStep(state: MigrationState, now: Date = new Date()): MigrationState {
  if (!state.currentStep) return state;
  const { currentStep: _closed, ...rest } = state;
  return { ...rest, updatedAt: timestamp(now) };
}

export interface AdvanceOptions {
  readonly now?: Date;
  /** Name of the step that reached the phase (its attempt count goes into history). @default - the current step, else the phase */
  readonly step?: string;
  /** Other changes recorded in the same write (backup info, verification, …). */
  readonly changes?: Partial<Omit<MigrationState, 'phase' | 'history' | 'schemaVersion' | 'migrationId'>>;
}

function illegal(from: PhaseName, to: PhaseName): Error {
  return new Error(`illegal migration state transition ${from} → ${to}: this is a bug in the runner`);
}

/**
 * Records that a phase was reached: appends a history entry (closing the current step), sets the
 * phase, clears `resumeFrom`. Moves only forward in PHASE_ORDER (or to the same phase again, which
 * is a no-op for idempotent re-runs); NotNeeded only from Pending. A transition out of Completed or
 * NotNeeded is a bug and throws.
 */
export function advance(state: MigrationState, phase: PhaseName, detail?: string, options: AdvanceOptions = {}): MigrationState {
  const now = options.now ?? new Date();
  const from = effectivePhase(state);
  if (isTerminal(state)) {
    if (state.phase === phase) return state;
    throw illegal(state.phase, phase);
  }
  if (phase === Phase.failed) throw new Error('use recordFailure to enter the Failed phase');
  if (phase === Phase.notNeeded) {
    if (from !== Phase.pending) throw illegal(from, phase);
  } else {
    const fromIndex = PHASE_ORDER.indexOf(from);
    const toIndex = PHASE_ORDER.indexOf(phase);
    if (toIndex < fromIndex) throw illegal(from, phase);
    if (toIndex === fromIndex && state.phase !== Phase.failed) return { ...state, ...options.changes };
  }
  const step = options.step ?? state.currentStep?.name ?? phase;
  const startedAt = state.currentStep?.startedAt ?? timestamp(now);
  const finishedAt = timestamp(now);
  const entry: PhaseHistoryEntry = {
    phase,
    startedAt,
    finishedAt,
    durationMs: Math.max(0, now.getTime() - Date.parse(startedAt)),
    attempt: Math.max(1, state.attempts[step] ?? 1),
    ...(detail !== undefined ? { detail } : {}),
  };
  const { currentStep: _closed, resumeFrom: _resumed, ...rest } = state;
  return { ...rest, ...options.changes, phase, history: [...state.history, entry], updatedAt: finishedAt };
}

/**
 * Records a failure. With `terminal` (Argo CD's SyncFail, or a non-retriable exit code), the phase
 * becomes Failed and `resumeFrom` keeps where to resume; otherwise only lastError is set and the
 * phase stays, since the Job will retry the step.
 */
export function recordFailure(
  state: MigrationState,
  failure: { step: string; message: string; exitCode: number; terminal?: boolean },
  now: Date = new Date(),
): MigrationState {
  const at = timestamp(now);
  const lastError: LastError = { step: failure.step, message: failure.message, exitCode: failure.exitCode, at };
  if (isTerminal(state) || !failure.terminal) return { ...state, lastError, updatedAt: at };
  return { ...state, phase: Phase.failed, resumeFrom: effectivePhase(state), lastError, updatedAt: at };
}

/**
 * The directory (relative to the backup volume) the next dump of this migration goes to: the
 * migration id, then `<id>.2`, `<id>.3`… once earlier backups were superseded, so that a new dump
 * never overwrites the backup it replaces.
 */
export function nextBackupDirName(state: MigrationState): string {
  const superseded = state.supersededBackups?.length ?? 0;
  return superseded === 0 ? state.migrationId : `${state.migrationId}.${superseded + 1}`;
}

/**
 * Drops the recorded backup because the source changed after it was taken, and takes the migration
 * back to Quiesced so that the next backup-phase dumps again (and the restore redoes its work from
 * the new backup). The history gets an entry saying why; the workloads' original replica counts,
 * the protected volumes and the attempts are kept.
 */
export function supersedeBackup(state: MigrationState, reason: string, now: Date = new Date()): MigrationState {
  if (isTerminal(state)) throw illegal(state.phase, Phase.quiesced);
  const backup = state.backup;
  if (!backup) throw new Error('supersedeBackup without a recorded backup: this is a bug in the runner');
  const at = timestamp(now);
  const from = effectivePhase(state);
  const entry: PhaseHistoryEntry = {
    phase: Phase.quiesced,
    startedAt: at,
    finishedAt: at,
    durationMs: 0,
    attempt: 1,
    detail: `backup ${backup.dir} superseded at ${from}: the legacy database changed after it (${reason})`,
  };
  const { backup: _dropped, verification: _stale, currentStep: _closed, resumeFrom: _resumed, ...rest } = state;
  return {
    ...rest,
    phase: Phase.quiesced,
    history: [...state.history, entry],
    supersededBackups: [...(state.supersededBackups ?? []), { dir: backup.dir, manifestSha256: backup.manifestSha256, phase: from, reason, at }],
    updatedAt: at,
  };
}

/** The state ConfigMap's data for a state. */
export function serializeState(state: MigrationState): Record<string, string> {
  return { [StateKey.phase]: state.phase, [StateKey.state]: JSON.stringify(state, null, 2) };
}

const KNOWN_PHASES = new Set<string>(Object.values(Phase));

/**
 * Reads a state from the ConfigMap's data, checking the fields the runner relies on. A corrupt
 * state (edited by hand, or written by a newer runner) is a configuration error naming the
 * ConfigMap: the runner must not guess where a migration holding production data stands.
 */
export function parseState(data: Record<string, string> | undefined, configMapName: string): MigrationState {
  const raw = data?.[StateKey.state];
  const fail = (problem: string) =>
    new RunnerError(`state ConfigMap ${configMapName} ${problem}`, {
      exitCode: ExitCode.config,
      hint: `inspect it with kubectl get configmap ${configMapName} -o yaml; delete it only if no migration step ran`,
    });
  if (raw === undefined) throw fail(`has no ${StateKey.state} key`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw fail(`holds invalid JSON under ${StateKey.state}`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw fail(`holds no object under ${StateKey.state}`);
  const state = parsed as Partial<MigrationState>;
  if (state.schemaVersion !== STATE_SCHEMA_VERSION) {
    throw fail(`has schemaVersion ${JSON.stringify(state.schemaVersion)}, this runner reads ${STATE_SCHEMA_VERSION}`);
  }
  if (typeof state.phase !== 'string' || !KNOWN_PHASES.has(state.phase)) throw fail(`has an unknown phase ${JSON.stringify(state.phase)}`);
  if (typeof state.migrationId !== 'string') throw fail('has no migrationId');
  if (!Array.isArray(state.history) || typeof state.attempts !== 'object' || typeof state.originalReplicas !== 'object') {
    throw fail('is missing history, attempts or originalReplicas');
  }
  return {
    ...state,
    protectedVolumes: state.protectedVolumes ?? [],
    legacyDeleted: state.legacyDeleted ?? false,
  } as MigrationState;
}
