// A connection that never began a request (a browser's speculative connection) must not hold a
// graceful shutdown open: Node's server.close() leaves it alone. The gateway closes it once the
// server stops listening; connections in use are left to finish.
import { once } from 'node:events'
import { createConnection, type Socket } from 'node:net'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build } from '../../src/app.js'
import { connect, listen, testEnv, tokenFor } from '../helpers.js'

/** A TCP connection to the server that sends nothing. */
async function silentConnection (url: string): Promise<Socket> {
  const { hostname, port } = new URL(url)
  const socket = createConnection({ host: hostname, port: Number(port) })
  socket.on('error', () => {})
  await once(socket, 'connect')
  return socket
}

/** Resolves with 'closed' when `app.close()` settles, or 'hung' after `ms`. */
async function closeWithin (app: FastifyInstance, ms: number): Promise<'closed' | 'hung'> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(() => { resolve('hung') }, ms) })
  const result = await Promise.race([app.close().then(() => 'closed' as const), hung])
  clearTimeout(timer)
  return result
}

t.test('a connection that never sent a request is closed at shutdown; a request in flight finishes', async (t) => {
  const app = await build({ env: testEnv() })
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  app.get('/slow', async () => { await held; return { done: true } })
  await app.ready()
  const { http, ws } = await listen(t, app)

  const silent = await silentConnection(http)
  const silentClosed = once(silent, 'close')
  // A WebSocket (upgraded: no longer the HTTP server's to close) and a request still running.
  const client = await connect(t, ws, { token: tokenFor('alice') })
  const slow = fetch(`${http}/slow`)
  await new Promise((resolve) => setTimeout(resolve, 100))

  const closing = closeWithin(app, 10_000)
  const silentOutcome = await Promise.race([silentClosed.then(() => 'closed'), closing.then(() => 'left open')])
  t.equal(silentOutcome, 'closed', 'the silent connection was closed by the server')
  t.match(await client.waitClosed(), { code: 1001 }, 'the WebSocket was told the server is going away')
  release()
  const response = await slow
  t.equal(response.status, 200, 'the request in flight got its answer')
  t.same(await response.json(), { done: true })
  t.equal(await closing, 'closed', 'and the server closed')
})

t.test('without listening (inject only), closing is unaffected', async (t) => {
  const app = await build({ env: testEnv() })
  await app.ready()
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
  t.equal(await closeWithin(app, 10_000), 'closed')
})
