// Target (c): Socket.IO 4, the common alternative, used the common way: the JWT is checked by a
// middleware on the handshake's `auth` payload, every socket joins a room named after its user,
// and a run's events are emitted to that room, one emit per event.
//   env: BENCH_SECRET
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { verifyToken } from '../shared/jwt.js'
import { BaselineRuns, type BaselinePeer } from '../shared/baseline.js'
import { serveControl } from '../shared/control.js'

const secret = process.env.BENCH_SECRET ?? ''
const runs = new BaselineRuns()
const server = createServer()
const io = new Server(server, { serveClient: false })

io.use((socket, next) => {
  const userId = verifyToken(secret, (socket.handshake.auth as { token?: string }).token)
  if (userId === undefined) {
    next(new Error('unauthorized'))
    return
  }
  ;(socket.data as { userId?: string }).userId = userId
  next()
})

io.on('connection', (socket) => {
  const { userId } = socket.data as { userId: string }
  const room = `user:${userId}`
  void socket.join(room)
  const peer: BaselinePeer = {
    userId,
    reply: (message) => { socket.emit('msg', message) },
    live: (event) => { io.to(room).emit('event', event) },
    replayed: (event) => { socket.emit('event', event) }
  }
  socket.on('msg', (message: Record<string, unknown>) => { runs.handle(peer, message) })
})

server.listen(0, '127.0.0.1', () => {
  serveControl((server.address() as { port: number }).port, () => io.close())
})
