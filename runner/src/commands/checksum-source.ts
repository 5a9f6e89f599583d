/**
 * `checksum-source --dir D`: the source's checksum pass while its application still runs, into
 * D/early-pass.json. A later `backup --dir D` proves in its own snapshot which tables did not
 * change since and checksums only the others, so most of the pass leaves the downtime
 * (pg/early-pass.ts has the proof).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RunnerCommand } from '../../../lib/contract.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { classifyDatabaseError, classifyFilesystemError } from '../errors.js';
import { writeFileDurably } from '../pg/backup.js';
import { connect, describeEndpoint, settingsFromEnv } from '../pg/connection.js';
import { EARLY_PASS_FILE, takeEarlyPass } from '../pg/early-pass.js';

export const checksumSourceCommand = defineCommand({
  name: RunnerCommand.checksumSource,
  summary: 'Checksum the SOURCE_* database before the downtime, for a later backup into --dir',
  description: `
Reads SOURCE_PGHOST, SOURCE_PGPORT, SOURCE_PGUSER, SOURCE_PGPASSWORD, SOURCE_PGDATABASE.
Run it while the application still writes: it checksums every table and the large objects in a
snapshot of their own (one session, no parallel workers) and writes <dir>/early-pass.json. Stop
the application, then run backup --dir <dir>: in the dump's snapshot it proves each table unchanged
(same relfilenode and row count, no row written since that snapshot began) and reuses its
checksum, scanning only the tables that changed. A stale or foreign early-pass.json is not used
(the backup says why); deleting it is always safe.`,
  flags: { dir: CommonFlags.dir },
  async run({ flags, env, log }) {
    const source = settingsFromEnv('SOURCE', env);
    const client = await connect(source, { purpose: 'checksum-source', action: 'checksum' });
    try {
      const pass = await takeEarlyPass(client, source);
      await mkdir(flags.dir, { recursive: true });
      await writeFileDurably(flags.dir, EARLY_PASS_FILE, `${JSON.stringify(pass)}\n`);
      const rows = pass.tables.reduce((sum, table) => sum + table.rows, 0);
      log.info('source checksummed', { file: join(flags.dir, EARLY_PASS_FILE), tables: pass.tables.length, rows, largeObjects: pass.largeObjects.count });
      log.summary([{ step: 'checksum source', durationMs: pass.durationMs, rows, note: `${pass.tables.length} tables, before the downtime` }]);
      return 0;
    } catch (error) {
      throw classifyFilesystemError(error, flags.dir) ?? classifyDatabaseError(error, describeEndpoint(source), 'checksum');
    } finally {
      await client.end().catch(() => undefined);
    }
  },
});
