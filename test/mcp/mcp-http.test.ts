// An MCP server over Streamable HTTP: the everything reference server in its own process on a
// real port. It is down when the gateway starts, comes up, goes away mid-life and comes back;
// the gateway reports it, fails its tools clearly meanwhile, and reconnects each time.
import { spawn, type ChildProcess } from 'node:child_process'
import t, { type Test } from 'tap'
import { createUserContext } from '../../src/plugins/user-context.js'
import type { RunEventData } from '../../src/protocol.js'
import { buildApp, runProblems, testEnv } from '../helpers.js'
import { freePort } from '../../scripts/ports.js'
import { EVERYTHING_SERVER, alive, caller, finished, mcpState, ofType, startCalls, until } from '../mcp.js'

/** The everything server's Streamable HTTP transport on `port`; resolves once it listens. */
async function httpServer (t: Test, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [EVERYTHING_SERVER, 'streamableHttp'], { env: { PATH: process.env.PATH ?? '', PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let said = ''
  child.stderr?.on('data', (chunk: Buffer) => { said += chunk.toString() })
  await until(() => said.includes('listening on port') || child.exitCode !== null, 'the HTTP server to listen')
  if (child.exitCode !== null) throw new Error(`the HTTP server exited: ${said}`)
  return child
}

const alice = createUserContext({ sub: 'alice' }, 'req-1')
// Every test starts MCP server processes (Node programs of their own): a CI machine busy with other test files is slow at that.
t.setTimeout(300_000)

t.test('a Streamable HTTP server: down at start, then up, lost, and back; its tools follow it', async (t) => {
  const port = await freePort()
  const app = await buildApp(t, {
    env: testEnv({ TOOL_PROGRESS_INTERVAL_MS: '0' }),
    agents: { caller },
    mcpServers: { remote: { url: `http://127.0.0.1:${port}/mcp`, headers: { 'x-api-key': 'secret-header-value' }, include: ['get-sum', 'trigger-long-running-operation'] } }
  })
  await mcpState(app, 'down')
  t.match(app.mcpServers.status().remote, { transport: 'http', state: 'down', error: String })
  const call = async (calls: Array<[string, unknown]>): Promise<Array<RunEventData<'tool_completed'>>> => {
    const events = await finished(app, await startCalls(app, alice, calls))
    t.same(runProblems(events), [])
    return ofType(events, 'tool_completed').map((event) => event.data)
  }
  t.match(await call([['remote__get-sum', { a: 1, b: 2 }]]), [{ status: 'error', error: { code: 'MCP_UNAVAILABLE', message: /"remote" is not available/ } }])
  const ready = await app.inject('/readyz')
  t.notOk(ready.body.includes('secret-header-value'), 'headers are never shown')

  let server = await httpServer(t, port)
  await mcpState(app, 'ready')
  t.match(await call([['remote__get-sum', { a: 1, b: 2 }]]), [{ status: 'success', result: { text: 'The sum of 1 and 2 is 3.' } }])
  const events = await finished(app, await startCalls(app, alice, [['remote__trigger-long-running-operation', { duration: 0.3, steps: 3 }]]))
  t.same(ofType(events, 'tool_progress').map((event) => [event.data.progress, event.data.total]), [[1, 3], [2, 3], [3, 3]], 'progress over HTTP too')

  server.kill('SIGKILL')
  await until(() => !alive(server.pid as number), 'the HTTP server to be gone')
  t.match(await call([['remote__get-sum', { a: 1, b: 2 }]]), [{ status: 'error', error: { code: 'MCP_UNAVAILABLE' } }], 'the lost session fails the call clearly')
  await mcpState(app, 'down')

  server = await httpServer(t, port)
  await mcpState(app, 'ready')
  t.ok(app.mcpServers.status().remote!.restarts >= 2)
  t.match(await call([['remote__get-sum', { a: 2, b: 2 }]]), [{ status: 'success', result: { text: 'The sum of 2 and 2 is 4.' } }], 'a new session on the server that came back')
})
