/**
 * Listening ports for the servers tests and rehearsals start (PostgreSQL, Pgpool, ...).
 *
 * Why not `listen(0)`: the kernel hands out listening ports from the ephemeral range
 * (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 here), the same range every outgoing
 * connection's local port comes from. A server that stops and restarts on "its" port (a pod whose
 * volume outlives it) then races every client connection of the run for that port, and on a busy
 * CI machine one wins: `pg_ctl: could not start server`, "Address already in use" in its log. Ports
 * below that range are only ever taken by a bind, so a released port stays free until a picker
 * like this one takes it, and it checks with a bind first.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOWEST = 20_000;

function ephemeralRangeStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) && low > LOWEST + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const HIGHEST = ephemeralRangeStart() - 1;

function bindsNow(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1, below the ephemeral range, that could be bound a moment ago. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST + 1));
    if (await bindsNow(port)) return port;
  }
  throw new Error(`no free TCP port between ${LOWEST} and ${HIGHEST} on 127.0.0.1 after 200 tries`);
}
