// `npm run client -- --token <jwt> "What is 12 * (3 + 4)?"` — connects to a gateway, starts a
// run and prints its events as they arrive: the quickest way to watch an agent work.
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { PROTOCOL, type RunEvent, type ServerMessage } from '../protocol.js'

const usage = 'usage: npm run client -- --token <jwt> [--url ws://127.0.0.1:3000/ws] [--agent <name>] [--json] "<message>"'

function fail (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

function describe (event: RunEvent): string {
  switch (event.type) {
    case 'agent_started': return `${event.data.agent} ← ${JSON.stringify(event.data.input.message)}`
    case 'agent_thinking': return event.data.thought
    case 'tool_executing': return `${event.data.tool} ${JSON.stringify(event.data.args)}`
    case 'tool_completed': {
      const detail = event.data.status === 'success' ? JSON.stringify(event.data.result) : `${event.data.error?.code ?? ''} ${event.data.error?.message ?? ''}`
      return `${event.data.tool} ${event.data.status} ${detail} (${event.data.durationMs} ms)`
    }
    case 'tool_progress': {
      const { progress, total, message } = event.data
      return `${progress}${total === undefined ? '' : ` of ${total}`}${message === undefined ? '' : ` ${message}`}`
    }
    case 'agent_message': return JSON.stringify(event.data.delta)
    case 'agent_completed': {
      const error = event.data.error === undefined ? '' : ` ${event.data.error.code}: ${event.data.error.message}`
      return `${event.data.status}${error} in ${event.data.durationMs} ms`
    }
  }
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string', default: 'ws://127.0.0.1:3000/ws' },
    token: { type: 'string' },
    agent: { type: 'string' },
    json: { type: 'boolean', default: false }
  }
})
const message = positionals.join(' ')
if (values.token === undefined || message === '') fail(usage)

const socket = new WebSocket(values.url, [PROTOCOL], { headers: { authorization: `Bearer ${values.token}` } })
socket.on('unexpected-response', (_request, response) => {
  let body = ''
  response.on('data', (chunk: Buffer) => { body += chunk.toString() })
  response.on('end', () => { fail(`connection refused: HTTP ${response.statusCode} ${body}`) })
})
socket.on('error', (err) => { fail(`connection failed: ${err.message}`) })
socket.on('close', (code, reason) => { fail(`connection closed: ${code} ${reason.toString()}`) })
socket.on('message', (data: Buffer) => {
  const frame = data.toString()
  const msg = JSON.parse(frame) as ServerMessage
  if (values.json) process.stdout.write(`${frame}\n`)
  switch (msg.type) {
    case 'welcome':
      socket.send(JSON.stringify({ type: 'run', id: 'cli', input: { message }, ...(values.agent === undefined ? {} : { agent: values.agent }) }))
      return
    case 'run_accepted':
      if (!values.json) process.stdout.write(`run ${msg.runId} accepted (agent ${msg.agent}, thread ${msg.threadId})\n`)
      return
    case 'error':
      fail(`error ${msg.code}: ${msg.message}`)
      break
    case 'agent_started': case 'agent_thinking': case 'tool_executing': case 'tool_progress': case 'tool_completed': case 'agent_message': case 'agent_completed':
      if (!values.json) process.stdout.write(`  #${String(msg.seq).padEnd(3)} ${msg.type.padEnd(16)} ${describe(msg)}\n`)
      if (msg.type === 'agent_completed') {
        socket.removeAllListeners('close')
        socket.close(1000)
      }
  }
})
