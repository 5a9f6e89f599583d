/**
 * An HTTPS listener in front of the fake API server (which speaks plain HTTP), with a
 * self-signed certificate for 127.0.0.1: client-node's in-cluster configuration always uses https
 * with the mounted ca.crt, as a pod's does, and client-go (helm) sends no bearer token over plain
 * http, so both reach the fake through this front, as they would reach a real API server.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';

import type { FakeKubeApiServer } from './server.js';

export interface TlsFront {
  readonly host: string;
  readonly port: number;
  /** PEM of the self-signed certificate (the CA a client trusts). */
  readonly caCertificate: string;
}

const tlsFronts = new WeakMap<FakeKubeApiServer, Promise<TlsFront>>();

/** The server's HTTPS front, started on first use (one per server, closed with the process). */
export function apiServerTlsFront(server: FakeKubeApiServer): Promise<TlsFront> {
  let front = tlsFronts.get(server);
  if (!front) {
    front = new Promise<TlsFront>((resolveFront, rejectFront) => {
      const { key, certificate } = selfSignedCertificate();
      const upstream = new URL(server.url);
      const listener = createTlsServer({ key, cert: certificate }, (socket) => {
        const backend = connect(Number(upstream.port), upstream.hostname);
        socket.pipe(backend).pipe(socket);
        socket.on('error', () => backend.destroy());
        backend.on('error', () => socket.destroy());
      });
      listener.on('error', rejectFront);
      listener.listen(0, '127.0.0.1', () => {
        listener.unref();
        resolveFront({ host: '127.0.0.1', port: (listener.address() as AddressInfo).port, caCertificate: certificate });
      });
    });
    tlsFronts.set(server, front);
  }
  return front;
}

/**
 * Writes a kubeconfig that reaches the server through its HTTPS front with `token` (admin by
 * default), verifying the front's certificate, as a real cluster's kubeconfig does; returns its path.
 */
export async function writeTlsKubeconfig(server: FakeKubeApiServer, path: string, token: string = server.adminToken, namespace = 'default'): Promise<string> {
  const front = await apiServerTlsFront(server);
  const document = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'fake',
        cluster: { server: `https://${front.host}:${front.port}`, 'certificate-authority-data': Buffer.from(front.caCertificate).toString('base64') },
      },
    ],
    users: [{ name: 'fake-user', user: { token } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake-user', namespace } }],
    'current-context': 'fake',
  };
  writeFileSync(path, JSON.stringify(document, null, 2), { mode: 0o600 });
  return path;
}

let certificateOfProcess: { key: string; certificate: string } | undefined;

/** One key and self-signed certificate for 127.0.0.1 per test process (openssl, ~50 ms). */
function selfSignedCertificate(): { key: string; certificate: string } {
  if (!certificateOfProcess) {
    const dir = mkdtempSync(join(tmpdir(), 'fake-kube-tls-'));
    const keyFile = join(dir, 'key.pem');
    const certificateFile = join(dir, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=kubernetes', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc',
      '-keyout', keyFile, '-out', certificateFile,
    ], { stdio: 'ignore' });
    certificateOfProcess = { key: readFileSync(keyFile, 'utf8'), certificate: readFileSync(certificateFile, 'utf8') };
    rmSync(dir, { recursive: true, force: true });
  }
  return certificateOfProcess;
}
