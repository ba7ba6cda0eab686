// End to end, as an operator runs it: the built server process (dist/server.js, built by
// `pretest`) on a real port, with MCP_CONFIG naming a file like the one in docs/integrations.md
// (server-filesystem over a folder, the everything server behind a scope), the `llm` agent on the
// tests' OpenAI-compatible server choosing an MCP tool and answering from its result, progress
// resumed over SSE by Last-Event-ID, and the MCP processes gone however the gateway stops.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { RunEvent } from '../../src/protocol.js'
import { TEST_SECRET, connect, runProblems, tokenFor } from '../helpers.js'
import { answer, chunk, llmServer, sse, toolCall, usage, type Received } from '../llm-server.js'
import { EVERYTHING_SERVER, FILESYSTEM_SERVER, alive, until } from '../mcp.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
// Every test starts MCP server processes (Node programs of their own): a CI machine busy with other test files is slow at that.
t.setTimeout(300_000)
const dir = await mkdtemp(join(tmpdir(), 'agw-mcp-e2e-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const notes = join(dir, 'notes.txt')
await writeFile(notes, 'The launch is on Tuesday.\n')

async function configFile (name: string, servers: Record<string, unknown>): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, JSON.stringify({ mcpServers: servers }, null, 2))
  return path
}

interface Gateway { child: ChildProcessWithoutNullStreams, url: string, stderr: () => string }

function startProcess (t: Test, env: Record<string, string>): { child: ChildProcessWithoutNullStreams, stdout: () => string, stderr: () => string } {
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', PORT: '0', LOG_LEVEL: 'info', APP_ENV: 'test', JWT_SECRET: TEST_SECRET, TOOL_PROGRESS_INTERVAL_MS: '0', ...env }
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (data: Buffer) => { out += data.toString() })
  child.stderr.on('data', (data: Buffer) => { err += data.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { child, stdout: () => out, stderr: () => err }
}

/** Starts the gateway and waits until it listens and its MCP servers are connected. */
async function gateway (t: Test, env: Record<string, string>): Promise<Gateway> {
  const started = startProcess(t, env)
  let url = ''
  await until(() => {
    if (started.child.exitCode !== null) throw new Error(`the gateway exited: ${started.stderr()}`)
    url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(started.stdout())?.[1] ?? ''
    return url !== ''
  }, 'the gateway to listen')
  await until(async () => {
    const { mcpServers } = await (await fetch(`${url}/readyz`)).json() as { mcpServers: Record<string, { state: string }> }
    return Object.values(mcpServers).every((server) => server.state === 'ready')
  }, 'the MCP servers to be connected')
  return { child: started.child, url, stderr: started.stderr }
}

/** The processes the gateway started (Linux: /proc lists a task's children). */
async function children (pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')
  return text.trim().split(/\s+/).filter((part) => part !== '').map(Number)
}

/** The model: reads the notes with the filesystem tool, or runs the long job; then answers from the tool's result. */
async function model (t: Test): Promise<{ baseURL: string, requests: Received[] }> {
  return llmServer(t, async (request, res) => {
    const messages = request.body.messages as Array<{ role: string, content: string | null }>
    const last = messages.at(-1) as { role: string, content: string }
    if (last.role === 'tool') {
      const { result } = JSON.parse(last.content) as { result: { text: string } }
      await sse(res, answer(['From the file: ', result.text.trim()]))
    } else if (last.content.includes('notes')) {
      await sse(res, [chunk({ role: 'assistant', content: null }), ...toolCall('call_1', 'fs__read_text_file', [JSON.stringify({ path: notes })]), chunk({}, 'tool_calls'), usage(40, 10)])
    } else {
      await sse(res, [chunk({ role: 'assistant', content: null }), ...toolCall('call_1', 'every__trigger-long-running-operation', ['{"duration":0.4,"steps":4}']), chunk({}, 'tool_calls'), usage(40, 10)])
    }
  })
}

t.test('MCP_CONFIG in a real process on a real port', async (t) => {
  const llm = await model(t)
  const config = await configFile('mcp.json', {
    fs: { command: process.execPath, args: [FILESYSTEM_SERVER, dir] },
    every: { command: process.execPath, args: [EVERYTHING_SERVER, 'stdio'], scope: 'tools:everything', include: ['trigger-long-running-operation'] }
  })
  const gw = await gateway(t, { MCP_CONFIG: config, LLM_BASE_URL: llm.baseURL, LLM_MODEL: 'test-model' })

  t.test('the llm agent reads a file through server-filesystem and answers from it', async (t) => {
  const client = await connect(t, `${gw.url.replace('http', 'ws')}/ws`, { token: tokenFor('alice') })
  client.send({ type: 'run', agent: 'llm', input: { message: 'What do my notes say?' } })
  const { runId } = await client.nextOf('run_accepted')
  const events = await client.runEvents(runId, 60_000)
  t.same(runProblems(events), [])
  t.match(events.find((event) => event.type === 'tool_executing'), { data: { tool: 'fs__read_text_file', args: { path: notes } } })
  t.match(events.find((event) => event.type === 'tool_completed'), { data: { tool: 'fs__read_text_file', status: 'success', result: { text: 'The launch is on Tuesday.\n' } } })
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'completed', output: { answer: 'From the file: The launch is on Tuesday.' } } })

  const offered = (llm.requests[0]?.body.tools as Array<{ function: { name: string, parameters: any } }>)
  const names = offered.map((tool) => tool.function.name)
  t.ok(names.includes('calculator'), 'the built-in tools')
  t.ok(names.includes('fs__read_text_file'), 'and the MCP tools')
  t.match(offered.find((tool) => tool.function.name === 'fs__read_text_file')?.function.parameters, { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] }, 'with the server\'s JSON Schema')
  t.notOk(names.some((name) => name.startsWith('every__')), 'not the tools of a server whose scope the user lacks')
  })

  t.test('progress of an MCP call is in the run\'s log: it streams over SSE and resumes by Last-Event-ID', async (t) => {
  const requestsBefore = llm.requests.length
  const token = tokenFor('bob', { scope: 'tools:everything' })
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
  const { runId } = await (await fetch(`${gw.url}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ agent: 'llm', input: { message: 'Run the long job' } }) })).json() as { runId: string }
  const frames = async (lastEventId?: number): Promise<RunEvent[]> => {
    const response = await fetch(`${gw.url}/v1/runs/${runId}/events`, { headers: { authorization: `Bearer ${token}`, ...(lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) }) } })
    return (await response.text()).split('\n').filter((line) => line.startsWith('data: ')).map((line) => JSON.parse(line.slice(6)) as RunEvent)
  }
  const events = await frames()
  t.same(runProblems(events), [])
  const progress = events.filter((event) => event.type === 'tool_progress')
  t.same(progress.map((event) => event.data), [1, 2, 3, 4].map((step) => ({ toolCallId: (events.find((event) => event.type === 'tool_executing')?.data as { toolCallId: string }).toolCallId, progress: step, total: 4 })))
  t.ok((llm.requests[requestsBefore]?.body.tools as Array<{ function: { name: string } }>).some((tool) => tool.function.name === 'every__trigger-long-running-operation'), 'offered to a user with the scope')
  const resumed = await frames(progress[1]!.seq)
  t.same(resumed.map((event) => event.seq), events.filter((event) => event.seq > progress[1]!.seq).map((event) => event.seq), 'exactly the events after the one it had')
  t.same(resumed[0], progress[2], 'starting with the next progress event')
  })

  t.test('on SIGTERM the gateway stops its MCP processes; killed outright it leaves none behind', async (t) => {
  const killed = await gateway(t, { MCP_CONFIG: await configFile('mcp-kill.json', { fs: { command: process.execPath, args: [FILESYSTEM_SERVER, dir] } }) })
  const stopped = gw
  const stoppedChildren = await children(stopped.child.pid as number)
  const killedChildren = await children(killed.child.pid as number)
  t.equal(stoppedChildren.length, 2)
  t.equal(killedChildren.length, 1)

  stopped.child.kill('SIGTERM')
  const [code] = await once(stopped.child, 'exit') as [number | null]
  t.equal(code, 0, 'a clean shutdown')
  await until(() => stoppedChildren.every((pid) => !alive(pid)), 'the stopped gateway\'s servers to be gone')
  t.same(stoppedChildren.filter(alive), [])

  killed.child.kill('SIGKILL')
  await once(killed.child, 'exit')
  // Their stdin closes with the gateway: MCP stdio servers exit on end of input.
  await until(() => killedChildren.every((pid) => !alive(pid)), 'the killed gateway\'s servers to exit')
  t.same(killedChildren.filter(alive), [])
  })
})

t.test('a bad MCP_CONFIG stops the process before it listens, with one line that names the problem', async (t) => {
  const cases: Array<[string, RegExp]> = [
    // The other refusals are in mcp-config.test.ts; these show that any of them stops the process.
    [await configFile('field.json', { fs: { command: 'node', cwd: '.', timeout: 5 } }), /mcpServers\.fs: unknown field "timeout"/],
    [join(dir, 'missing.json'), /MCP_CONFIG \(.*missing\.json\): cannot be read \(ENOENT\)/]
  ]
  // Started side by side: each is a whole Node process.
  const processes = cases.map(([path]) => startProcess(t, { MCP_CONFIG: path }))
  const codes = await Promise.all(processes.map(async (started) => started.child.exitCode ?? (await once(started.child, 'exit') as [number | null])[0]))
  t.same(codes, cases.map(() => 1), 'every one exits with 1')
  for (const [index, [, message]] of cases.entries()) {
    const started = processes[index]!
    const lines = started.stderr().trim().split('\n')
    t.equal(lines.length, 1, 'one line')
    t.match(lines[0], /^agent-gateway: Invalid MCP server configuration: /)
    t.match(lines[0], message)
    t.notMatch(started.stdout(), /Server listening/)
  }
})
