/**
 * Globals the runner sets before any dependency loads (imported first by main.ts).
 *
 * `navigator`: Node 21+ defines it (the runner image's Node 24 does); Node 20, the oldest the
 * package supports and this repository's, does not. pg decides when it loads (lib/stream.js
 * `isCloudflareRuntime`) whether it runs on Cloudflare Workers: without `navigator` it constructs
 * a fetch `Response` to find out, which loads Node's bundled undici — ~30 ms of every runner start
 * on Node 20 (the CLI's, the database gate's and the pre-phase's latency included). Defined as
 * Node 21+ defines it (`userAgent` "Node.js/<major>"), pg stops at its first test; the other
 * dependencies that look at it (debug, openid-client) then take their Node paths, as they do on
 * Node 21+.
 */
if (!('navigator' in globalThis)) {
  Object.defineProperty(globalThis, 'navigator', {
    value: Object.freeze({ userAgent: `Node.js/${process.versions.node.split('.')[0]}` }),
    configurable: true,
    writable: true,
    enumerable: false,
  });
}

export {};
