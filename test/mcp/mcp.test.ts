// MCP servers as a tool source, against the real reference servers from the npm registry
// (@modelcontextprotocol/server-everything and server-filesystem, over stdio) and a small server
// built on the official SDK (test/fixtures/mcp) for a tool list that changes on demand and for
// the cancellations a server receives. The gateway is the real one; processes are checked by PID.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import { Type } from 'typebox'
import { configPlugin } from '../../src/config.js'
import mcpTools from '../../src/plugins/mcp-tools.js'
import toolDispatcher from '../../src/plugins/tool-dispatcher.js'
import { defineTool } from '../../src/contracts.js'
import { createRunContext, createUserContext, type UserContext } from '../../src/plugins/user-context.js'
import type { RunEventData } from '../../src/protocol.js'
import { buildApp, runProblems, testEnv } from '../helpers.js'
import { alive, caller, dynamic, everything, filesystem, finished, logged, mcpState, ofType, startCalls, until } from '../mcp.js'

const RESULT_MAX_BYTES = 4096
// Every test starts MCP server processes (Node programs of their own): a CI machine busy with other test files is slow at that.
t.setTimeout(300_000)
// Present in the gateway's own environment: a stdio server must never see them.
process.env.AGW_TEST_CANARY = 'canary-4f1d9b'
process.env.JWT_SECRET = 'never-for-children-7c2e91d0a4b3f5e6'

const dir = await mkdtemp(join(tmpdir(), 'agw-mcp-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
await writeFile(join(dir, 'notes.txt'), 'The launch is on Tuesday.\n')
await writeFile(join(dir, 'big.txt'), 'all work and no play '.repeat(1000))

const alice = createUserContext({ sub: 'alice' }, 'req-1')
const reader = createUserContext({ sub: 'rita', scope: 'files:read' }, 'req-2')

const app = await buildApp(t, {
  env: testEnv({ TOOL_PROGRESS_INTERVAL_MS: '0', MCP_RESULT_MAX_BYTES: String(RESULT_MAX_BYTES) }),
  agents: { caller },
  mcpServers: {
    every: everything(),
    fs: filesystem(dir, { scope: 'files:read' }),
    dyn: dynamic(),
    slow: dynamic({ timeoutMs: 1500 }),
    envcheck: everything({ env: { GREETING: 'hello' }, include: ['get-env'] }),
    victim: everything({ include: ['echo', 'trigger-long-running-operation'] })
  }
})
await mcpState(app, 'ready')

function toolsOf (user: UserContext): string[] {
  const context = createRunContext(user, { runId: 'run-x', threadId: 'thread-x', agent: 'caller' })
  return app.createToolDispatcher({ context, events: { emit: () => true }, signal: new AbortController().signal }).list().map((tool) => tool.name)
}

async function calls (user: UserContext, list: Array<[string, unknown]>): Promise<Array<RunEventData<'tool_completed'>>> {
  const events = await finished(app, await startCalls(app, user, list))
  if (runProblems(events).length > 0) throw new Error(runProblems(events).join('; '))
  return ofType(events, 'tool_completed').map((event) => event.data)
}

t.test('each server\'s tools are offered as <server>__<tool>, with the server\'s description and JSON Schema', async (t) => {
  const names = toolsOf(reader)
  for (const name of ['every__echo', 'every__get-sum', 'every__get-structured-content', 'every__trigger-long-running-operation', 'fs__read_text_file', 'fs__list_directory', 'dyn__add_tool', 'envcheck__get-env']) {
    t.ok(names.includes(name), name)
  }
  t.notOk(names.includes('every__simulate-research-query'), 'a tool that needs MCP tasks is left out')
  t.same(names.filter((name) => name.startsWith('envcheck__')), ['envcheck__get-env'], '`include` keeps only the tools it names')
  t.same(names.filter((name) => name.startsWith('victim__')).sort(), ['victim__echo', 'victim__trigger-long-running-operation'])
  t.ok(names.every((name) => /^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name)))
  const context = createRunContext(reader, { runId: 'run-x', threadId: 'thread-x', agent: 'caller' })
  const sum = app.createToolDispatcher({ context, events: { emit: () => true }, signal: new AbortController().signal }).list().find((tool) => tool.name === 'every__get-sum')
  t.match(sum, { description: 'Returns the sum of two numbers', parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] } })

  const ready = await app.inject('/readyz')
  t.equal(ready.statusCode, 200)
  const body = ready.json()
  t.equal(body.status, 'ready')
  t.match(body.mcpServers.every, { transport: 'stdio', state: 'ready', restarts: 0 })
  t.equal(body.mcpServers.envcheck.tools, 1)
  t.notOk(JSON.stringify(body).includes(dir), 'no command line, path or environment in /readyz')
})

t.test('results carry the text and structured content; images and resources are summarised, never inlined', async (t) => {
  const [sum, weather, image, blob] = await calls(alice, [
    ['every__get-sum', { a: 2, b: 3 }],
    ['every__get-structured-content', { location: 'Chicago' }],
    ['every__get-tiny-image', {}],
    ['every__get-resource-reference', { resourceType: 'Blob', resourceId: 2 }]
  ])
  t.match(sum, { tool: 'every__get-sum', status: 'success', result: { text: 'The sum of 2 and 3 is 5.' } })
  t.match(weather, { status: 'success', result: { structuredContent: { temperature: Number, conditions: String, humidity: Number } } })
  t.match(image?.result, { attachments: [{ type: 'image', mimeType: 'image/png', bytes: Number }] })
  t.ok(JSON.stringify(image?.result).length < 500, 'the image is described, not carried as base64')
  t.match(blob?.result, { attachments: [{ type: 'resource', uri: String, bytes: Number }] })
  t.notOk(JSON.stringify(blob?.result).includes('"blob"'))
})

t.test('a result larger than MCP_RESULT_MAX_BYTES is cut and marked truncated', async (t) => {
  const [small, big] = await calls(reader, [
    ['fs__read_text_file', { path: join(dir, 'notes.txt') }],
    ['fs__read_text_file', { path: join(dir, 'big.txt') }]
  ])
  t.same(small?.result, { text: 'The launch is on Tuesday.\n', structuredContent: { content: 'The launch is on Tuesday.\n' } })
  const result = big?.result as { text: string, truncated: { totalBytes: number } }
  t.ok(Buffer.byteLength(JSON.stringify(result)) <= RESULT_MAX_BYTES, 'within the cap')
  t.ok(result.truncated.totalBytes > 21_000, 'says how big the whole result was')
  t.ok(result.text.startsWith('all work and no play all work'), 'keeps the beginning of the text')
  t.notOk('structuredContent' in result, 'structured content too big for the cap is left out whole')
})

t.test('an error result ends the call error with the server\'s message; bad arguments are refused before the server is asked', async (t) => {
  const [outside, badArgs, missing, unknown] = await calls(reader, [
    ['fs__read_text_file', { path: '/etc/hostname' }],
    ['every__get-sum', { a: '2', b: 3 }],
    ['every__get-sum', { a: 2 }],
    ['every__no_such_tool', {}]
  ])
  t.match(outside, { status: 'error', error: { code: 'MCP_TOOL_ERROR', message: /Access denied|outside allowed directories/ } })
  t.match(badArgs, { status: 'error', error: { code: 'INVALID_ARGS', message: 'Invalid arguments: a must be number' } })
  t.match(missing, { status: 'error', error: { code: 'INVALID_ARGS', message: /required/ } })
  t.match(unknown, { status: 'error', error: { code: 'UNKNOWN_TOOL' } }, 'a name under a connected server that it does not offer')
})

t.test('progress notifications become tool_progress events between tool_executing and tool_completed', async (t) => {
  const events = await finished(app, await startCalls(app, alice, [['every__trigger-long-running-operation', { duration: 0.4, steps: 4 }]]))
  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'tool_executing', 'tool_progress', 'tool_progress', 'tool_progress', 'tool_progress', 'tool_completed', 'agent_completed'])
  const [executing] = ofType(events, 'tool_executing')
  t.same(ofType(events, 'tool_progress').map((event) => event.data), [1, 2, 3, 4].map((progress) => ({ toolCallId: executing?.data.toolCallId, progress, total: 4 })))
  t.match(ofType(events, 'tool_completed')[0]?.data, { status: 'success', result: { text: /Long running operation completed/ } })
})

t.test('cancelling the run sends notifications/cancelled for the request and ends the call cancelled', async (t) => {
  const runId = await startCalls(app, alice, [['dyn__wait', {}]])
  await until(async () => ofType(await logged(app, runId), 'tool_progress').length === 1, 'the call to be in flight at the server')
  await app.runEngine.cancel(alice, runId)
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  t.same(events.slice(-2).map((event) => [event.type, (event.data as { status: string }).status]), [['tool_completed', 'cancelled'], ['agent_completed', 'cancelled']])
  await until(async () => {
    const [seen] = await calls(alice, [['dyn__cancellations', {}]])
    return JSON.parse((seen?.result as { text: string }).text).length === 1
  }, 'the server to have received the cancellation')
  const [after] = await calls(alice, [['dyn__cancellations', {}]])
  t.match(JSON.parse((after?.result as { text: string }).text), [{ reason: /cancel/i }], 'the server saw one cancellation, with the run\'s reason')
})

t.test('a call past the server\'s timeoutMs ends timeout and is cancelled at the server; the run goes on to one terminal event', async (t) => {
  const events = await finished(app, await startCalls(app, alice, [['slow__wait', {}], ['slow__cancellations', {}]]))
  t.same(runProblems(events), [])
  const [timedOut, seen] = ofType(events, 'tool_completed').map((event) => event.data)
  t.match(timedOut, { status: 'timeout', error: { code: 'TIMEOUT', message: '"slow__wait" did not finish within 1500 ms' } })
  t.equal(JSON.parse((seen?.result as { text: string }).text).length, 1, 'notifications/cancelled reached the server')
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'completed' } })
  t.equal(ofType(events, 'agent_completed').length, 1)
})

t.test('a successful call sends no cancellation afterwards', async (t) => {
  const before = JSON.parse(((await calls(alice, [['dyn__cancellations', {}]]))[0]?.result as { text: string }).text).length
  await calls(alice, [['dyn__add_tool', { name: 'noop' }], ['dyn__remove_tool', { name: 'noop' }]])
  const [after] = await calls(alice, [['dyn__cancellations', {}]])
  t.equal(JSON.parse((after?.result as { text: string }).text).length, before)
})

t.test('a user whose token lacks the server\'s scope is not offered its tools and is refused as for any scoped tool', async (t) => {
  t.notOk(toolsOf(alice).some((name) => name.startsWith('fs__')))
  t.ok(toolsOf(reader).includes('fs__list_allowed_directories'))
  const [refused] = await calls(alice, [['fs__list_allowed_directories', {}]])
  t.match(refused, { status: 'error', error: { code: 'FORBIDDEN', message: 'Calling "fs__list_allowed_directories" needs the scope "files:read"' } })
  const [allowed] = await calls(reader, [['fs__list_allowed_directories', {}]])
  t.match(allowed, { status: 'success', result: { text: /agw-mcp-/ } })
})

t.test('a stdio server gets only its entry\'s env and a minimal base, never the gateway\'s variables', async (t) => {
  const [env] = await calls(alice, [['envcheck__get-env', {}]])
  const seen = JSON.parse((env?.result as { text: string }).text) as Record<string, string>
  t.equal(seen.GREETING, 'hello')
  // tap's process tracking adds its own variables to every process a test starts.
  const tap = (key: string): boolean => key.startsWith('_TAPJS_PROCESSINFO_') || (key === 'NODE_OPTIONS' && seen[key]!.includes('@tapjs/processinfo'))
  t.same(Object.keys(seen).filter((key) => !tap(key) && !['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER', 'GREETING'].includes(key)), [])
  t.notOk(JSON.stringify(seen).includes('canary-4f1d9b'))
  t.notOk(JSON.stringify(seen).includes('never-for-children'))
})

t.test('notifications/tools/list_changed refreshes the list', async (t) => {
  t.notOk(toolsOf(alice).includes('dyn__shout'))
  await calls(alice, [['dyn__add_tool', { name: 'shout' }]])
  await until(() => toolsOf(alice).includes('dyn__shout'), 'the new tool to be listed')
  const [said] = await calls(alice, [['dyn__shout', { text: 'hi' }]])
  t.match(said, { status: 'success', result: { text: 'shout: hi' } })
  await calls(alice, [['dyn__remove_tool', { name: 'shout' }]])
  await until(() => !toolsOf(alice).includes('dyn__shout'), 'the removed tool to leave the list')
  const [gone] = await calls(alice, [['dyn__shout', { text: 'hi' }]])
  t.match(gone, { status: 'error', error: { code: 'UNKNOWN_TOOL' } })
})

t.test('a server killed mid-call: the call ends MCP_UNAVAILABLE, its process is gone, and it is started again', async (t) => {
  const pid = app.mcpServers.pid('victim') as number
  t.type(pid, 'number')
  const runId = await startCalls(app, alice, [['victim__trigger-long-running-operation', { duration: 60, steps: 60 }], ['victim__echo', { message: 'right after' }]])
  await until(async () => ofType(await logged(app, runId), 'tool_progress').length >= 1, 'the long call to report progress')
  process.kill(pid, 'SIGKILL')
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  const [killed, after] = ofType(events, 'tool_completed').map((event) => event.data)
  t.match(killed, { status: 'error', error: { code: 'MCP_UNAVAILABLE', message: /"victim" stopped answering during the call|"victim" is not available/ } })
  t.match(after, { status: 'error', error: { code: 'MCP_UNAVAILABLE' } }, 'its tools fail clearly while it is down')
  await until(() => !alive(pid), 'the killed process to be gone')
  await mcpState(app, 'ready', ['victim'])
  t.not(app.mcpServers.pid('victim'), pid, 'a new process')
  t.ok(app.mcpServers.status().victim!.restarts >= 1)
  const [echo] = await calls(alice, [['victim__echo', { message: 'back' }]])
  t.match(echo, { status: 'success', result: { text: 'Echo: back' } })
})

t.test('a server that cannot start is reported and retried with backoff; the gateway starts and its tools fail clearly', async (t) => {
  const broken = await buildApp(t, {
    env: testEnv(),
    agents: { caller },
    mcpServers: {
      missing: { command: 'agw-no-such-mcp-server' },
      crashing: { command: process.execPath, args: ['-e', 'process.stderr.write("fatal: no licence key\\n"); process.exit(3)'] }
    }
  })
  await mcpState(broken, 'down')
  const ready = await broken.inject('/readyz')
  t.equal(ready.statusCode, 200, 'an MCP server that is down does not take the node out of service')
  t.match(ready.json().mcpServers, {
    missing: { transport: 'stdio', state: 'down', error: /ENOENT/, retryInMs: Number, tools: 0 },
    crashing: { state: 'down', error: /exited.*no licence key/ }
  })
  await until(() => broken.mcpServers.status().crashing!.restarts >= 2 && broken.mcpServers.status().crashing!.state === 'down', 'two more attempts')
  t.ok((broken.mcpServers.status().crashing!.retryInMs as number) <= 30_000, 'waits at most the backoff ceiling')
  const events = await finished(broken, await startCalls(broken, alice, [['missing__anything', {}], ['crashing__x', { a: 1 }]]))
  t.same(runProblems(events), [])
  t.match(ofType(events, 'tool_completed').map((event) => event.data), [
    { status: 'error', error: { code: 'MCP_UNAVAILABLE', message: /The MCP server "missing" is not available: .*ENOENT/ } },
    { status: 'error', error: { code: 'MCP_UNAVAILABLE', message: /"crashing" is not available/ } }
  ])
})

t.test('closing the app ends every session and leaves no child process behind', async (t) => {
  const closing = await buildApp(t, { env: testEnv(), agents: { caller }, mcpServers: { a: everything(), b: filesystem(dir), c: dynamic() } })
  await mcpState(closing, 'ready')
  const pids = ['a', 'b', 'c'].map((name) => closing.mcpServers.pid(name) as number)
  t.ok(pids.every((pid) => alive(pid)))
  await closing.close()
  await until(() => pids.every((pid) => !alive(pid)), 'every child to be gone')
  t.same(pids.filter(alive), [])
  t.same(Object.values(closing.mcpServers.status()).map((status) => status.state), ['closed', 'closed', 'closed'])
})

t.test('tool names that clash with a registered tool, or are too long, stop start-up naming both; no process is left', async (t) => {
  const app = Fastify({ pluginTimeout: 0 })
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', LOG_LEVEL: 'silent' } })
  app.register(toolDispatcher, { tools: [defineTool({ name: 'every__echo', description: 'Ours', parameters: Type.Object({}), execute: () => 'ours' })] })
  app.register(mcpTools, { servers: { every: everything(), [`long${'x'.repeat(40)}`]: everything({ include: ['get-structured-content', 'echo'] }) } })
  const readying = app.ready()
  let pid: number | undefined
  // The plugin decorates when it loads, during ready().
  await until(() => { pid = (app as Partial<typeof app>).mcpServers?.pid('every'); return pid !== undefined }, 'the server process to start')
  const failure = await readying.then(() => undefined, (err: unknown) => err as { code: string, message: string })
  t.equal(failure?.code, 'AGW_ERR_MCP_TOOL_NAME')
  t.match(failure?.message, '"every__echo" (of MCP server "every") has the name of a registered tool')
  t.match(failure?.message, `"long${'x'.repeat(40)}__get-structured-content" (tool "get-structured-content" of MCP server "long${'x'.repeat(40)}") is longer than 64 characters`)
  t.notOk(failure?.message.includes('\n'), 'one line')
  await until(() => !alive(pid as number), 'the started process to be stopped')
})
