// Target (b): the naive limit of the stack. A plain `ws` server on node:http that verifies the
// JWT at the handshake and writes each event to the socket that started the run: one
// JSON.stringify and one send per event, nothing else (no log, no routing, no heartbeats).
//   env: BENCH_SECRET
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { verifyToken } from '../shared/jwt.js'
import { BaselineRuns, type BaselinePeer } from '../shared/baseline.js'
import { serveControl } from '../shared/control.js'

const PROTOCOL = 'agent-events.v1'
const secret = process.env.BENCH_SECRET ?? ''
const runs = new BaselineRuns()
const server = createServer((_request, response) => { response.writeHead(404).end() })
const wss = new WebSocketServer({
  noServer: true,
  clientTracking: false,
  handleProtocols: (protocols: Set<string>) => (protocols.has(PROTOCOL) ? PROTOCOL : false)
})

server.on('upgrade', (request, socket, head) => {
  const header = request.headers.authorization ?? ''
  const userId = verifyToken(secret, header.startsWith('Bearer ') ? header.slice(7) : undefined)
  if (userId === undefined) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    return
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    const write = (message: object): void => { ws.send(JSON.stringify(message)) }
    const peer: BaselinePeer = { userId, reply: write, live: write, replayed: write }
    ws.on('error', () => {})
    // Client frames are small text frames: ws hands each over as one Buffer.
    ws.on('message', (data: Buffer) => {
      let message: Record<string, unknown>
      try {
        message = JSON.parse(data.toString()) as Record<string, unknown>
      } catch {
        write({ type: 'error', code: 'BAD_MESSAGE', message: 'not JSON' })
        return
      }
      runs.handle(peer, message)
    })
  })
})

server.listen(0, '127.0.0.1', () => {
  serveControl((server.address() as { port: number }).port, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
})
