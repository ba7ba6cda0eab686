// Closes, when the server closes, the connections that never began a request, and those whose
// last request ends while it closes. Node's HTTP server (20 and 24 alike) leaves the first kind
// open on `server.close()` — `closeIdleConnections()` does not count them as idle — and keeps the
// second for the keep-alive timeout, so a graceful shutdown waits until the client gives up or a
// timeout of Node's cuts it. Browsers open connections like that on their own (speculative
// connections), so without this a shutdown could take a minute, or reach the process's
// forced-exit deadline and skip the store's close. A connection stops being tracked at its first
// request or upgrade; nothing is held for the connections in use.
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/** How often, during shutdown, the plugin looks whether the server has stopped listening. */
const CLOSE_POLL_MS = 25

async function unusedConnections (fastify: FastifyInstance): Promise<void> {
  const { server } = fastify
  const unused = new Set<Socket>()

  // Shared listeners (no closure per connection).
  function forget (this: Socket): void {
    unused.delete(this)
  }
  function used (request: IncomingMessage): void {
    const { socket } = request
    if (unused.delete(socket)) socket.off('close', forget)
  }

  // Over TLS a request's socket is the TLS socket, not the TCP one under it.
  server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => {
    unused.add(socket)
    socket.on('close', forget)
  })
  server.on('request', used)
  server.on('upgrade', used)

  // Fastify calls server.close() right after the preClose hooks, whatever their order. Once the
  // server no longer listens (no connection can be added then), the unused connections are
  // destroyed — and, until it has closed, so is each connection that has gone idle since: Node
  // closes the ones idle when close() is called, and one whose request ends later would be kept
  // for the keep-alive timeout.
  fastify.addHook('preClose', (done) => {
    if (!server.listening) {
      done()
      return
    }
    const timer = setInterval(() => {
      if (server.listening) return
      for (const socket of unused) socket.destroy()
      unused.clear()
      server.closeIdleConnections()
    }, CLOSE_POLL_MS)
    timer.unref()
    server.once('close', () => { clearInterval(timer) })
    done()
  })
}

export default fp(unusedConnections, { name: 'unused-connections', fastify: '5.x' })
