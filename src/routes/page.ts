// GET / — the demo page: a chat that shows each run live (src/page/, bundled into dist/page/ by
// `npm run build`). @fastify/static serves it with one route per built file instead of a
// wildcard, so it never shadows a host app's routes, and without decorating `reply`, so it
// never clashes with a host's own @fastify/static.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply } from 'fastify'

export interface PageRouteOptions {
  /** The directory of the built page. Default: this package's dist/page/. */
  root?: string
}

// The page loads only its own files and talks only to its own origin (fetch and WebSocket): no
// CDN, no third party, nothing inline.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'", "connect-src 'self'", "img-src 'self' data:", "object-src 'none'",
  "base-uri 'none'", "form-action 'self'", "frame-ancestors 'self'"
].join('; ')

function setHeaders (reply: FastifyReply, path: string): void {
  reply.header('x-content-type-options', 'nosniff')
  if (path.endsWith('.html')) reply.header('content-security-policy', CONTENT_SECURITY_POLICY)
}

async function pageRoute (fastify: FastifyInstance, opts: PageRouteOptions): Promise<void> {
  // This module runs as src/routes/page.ts from the sources and as dist/routes/page.js when
  // built; two levels up is the package root either way.
  const root = opts.root ?? fileURLToPath(new URL('../../dist/page/', import.meta.url))
  if (!existsSync(join(root, 'index.html'))) {
    // Not fatal: the gateway works without its demo page (e.g. tests run from the sources).
    fastify.log.warn(`the demo page is not built (no index.html in ${root}): run \`npm run build\`; GET / answers 404 until then`)
    return
  }
  await fastify.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    decorateReply: false,
    index: 'index.html',
    setHeaders
  })
}

export default fp(pageRoute, { name: 'routes/page', fastify: '5.x', encapsulate: true })
