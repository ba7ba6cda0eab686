// The built server process (dist/server.js, built by `pretest`): how it starts, refuses to start,
// and stops.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { RunEvent } from '../src/protocol.js'
import { TEST_SECRET, connect, runProblems, tokenFor } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))

interface Started { child: ChildProcessWithoutNullStreams, stdout: () => string, stderr: () => string }

function start (t: Test, env: Record<string, string>, script = 'dist/server.js', args: string[] = []): Started {
  // A clean environment: nothing of the developer's own JWT_* settings leaks in.
  const child = spawn(process.execPath, [script, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', PORT: '0', LOG_LEVEL: 'info', DEMO_STEP_DELAY_MS: '0', ...env }
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { child, stdout: () => out, stderr: () => err }
}

async function exitCode (started: Started, timeoutMs = 15_000): Promise<number | null> {
  if (started.child.exitCode !== null) return started.child.exitCode
  const timer = setTimeout(() => started.child.kill('SIGKILL'), timeoutMs)
  const [code] = await once(started.child, 'exit') as [number | null]
  clearTimeout(timer)
  return code
}

/** Waits for the process to print a line matching `pattern` on stdout; returns the match. */
async function printed (started: Started, pattern: RegExp, timeoutMs = 15_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const match = pattern.exec(started.stdout())
    if (match !== null) return match
    if (started.child.exitCode !== null) throw new Error(`server exited: ${started.stderr()}`)
    if (Date.now() > deadline) throw new Error(`no ${String(pattern)} in time: ${started.stdout()} ${started.stderr()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

async function address (started: Started): Promise<string> {
  return (await printed(started, /Server listening at (http:\/\/127\.0\.0\.1:\d+)/))[1] as string
}

t.test('the process refuses to start, before listening, on bad secrets or bad configuration', async (t) => {
  // Started side by side: each is a whole Node process.
  const badSecrets = start(t, { APP_ENV: 'production', JWT_SECRET_PRODUCTION: 'changeme', JWT_PREVIOUS_SECRET: 'hunter2hunter2hunter2hunter2hunter2' })
  const noSecret = start(t, { APP_ENV: 'production' })
  const badConfig = start(t, { PORT: 'eighty', HEARTBEAT_MS: '-5' })
  const halfLlm = start(t, { APP_ENV: 'development', LLM_BASE_URL: 'http://127.0.0.1:11434/v1' })
  const all = [badSecrets, noSecret, badConfig, halfLlm]
  const codes = await Promise.all(all.map((started) => exitCode(started)))
  t.same(codes, [1, 1, 1, 1], 'every one exits non-zero')
  for (const started of all) {
    t.match(started.stderr(), /^agent-gateway: /, 'the reason, in the service\'s own words')
    t.notMatch(started.stderr(), /\n\s+at /, 'and no stack trace')
  }
  t.match(halfLlm.stderr(), /LLM_BASE_URL is set but LLM_MODEL is not/)

  const stderr = badSecrets.stderr()
  t.match(stderr, /Refusing to start, the JWT secret configuration is unsafe/)
  t.match(stderr, /- JWT_SECRET_PRODUCTION: needs at least 32 bytes of key material; it has 8 \[rule: min-bytes\]/)
  t.match(stderr, /- JWT_SECRET_PRODUCTION: .*\[rule: not-weak\]/)
  t.match(stderr, /- JWT_PREVIOUS_SECRET: is a repeated pattern .*\[rule: no-repeated-pattern\]/)
  t.notMatch(stderr + badSecrets.stdout(), /changeme|hunter2/, 'no secret value is printed')
  t.notMatch(badSecrets.stdout(), /Server listening/, 'it never listened')

  t.match(noSecret.stderr(), /no JWT secret is configured: set JWT_SECRET_PRODUCTION or JWT_SECRET/)
  t.match(badConfig.stderr(), /Invalid configuration: PORT must be integer; HEARTBEAT_MS must be >= 50/)
})

t.test('development without a secret: a generated secret, a working dev token, and npm run token', async (t) => {
  const server = start(t, { APP_ENV: 'development' })
  const http = await address(server)
  // The banner follows the log's listening line; they can reach the pipe in separate chunks.
  const token = (await printed(server, /Dev token for user "dev".*\n\s+(\S+)\n/))[1] ?? ''
  const banner = server.stdout()
  t.match(banner, /No JWT secret is configured, so this process generated one/)
  t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/)
  t.match(banner, /npm run token -- --user alice/)

  const client = await connect(t, `${http.replace('http', 'ws')}/ws`, { token })
  client.send({ type: 'run', input: { message: 'What is 3 * 4?' } })
  const { runId } = await client.nextOf('run_accepted')
  const events = await client.runEvents(runId)
  t.same(runProblems(events), [])

  const port = new URL(http).port
  const minted = start(t, { APP_ENV: 'development', PORT: port }, 'dist/cli/token.js', ['--user', 'alice', '--ttl', '600'])
  t.equal(await exitCode(minted), 0, minted.stderr())
  const aliceToken = minted.stdout().trim()
  const alice = await connect(t, `${http.replace('http', 'ws')}/ws`, { token: aliceToken })
  t.equal(alice.messages[0]?.type === 'welcome' && alice.messages[0].userId, 'alice', 'the minted token works on the running server')

  server.child.kill('SIGTERM')
  t.match(await client.waitClosed(), { code: 1001 }, 'SIGTERM closes sockets with 1001')
  t.equal(await exitCode(server), 0, 'and the process exits 0')
})

t.test('with a configured secret, npm run token signs locally; /dev/token exists only in development', async (t) => {
  const minted = start(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET }, 'dist/cli/token.js', ['--user', 'bob'])
  t.equal(await exitCode(minted), 0, minted.stderr())
  const server = start(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET })
  const http = await address(server)
  t.notMatch(server.stdout(), /Dev token/, 'no dev token is printed when a secret is configured')
  const bob = await connect(t, `${http.replace('http', 'ws')}/ws`, { token: minted.stdout().trim() })
  t.equal(bob.messages[0]?.type === 'welcome' && bob.messages[0].userId, 'bob')
  const devToken = await fetch(`${http}/dev/token?user=eve`)
  t.equal(devToken.status, 404)
})

t.test('NODE_ENV=production with a real secret and no APP_ENV: /dev/token is not registered, and start-up says why', async (t) => {
  const server = start(t, { NODE_ENV: 'production', JWT_SECRET: TEST_SECRET })
  const http = await address(server)
  const minted = await fetch(`${http}/dev/token?user=victim&ttl=604800`)
  t.equal(minted.status, 404, 'no token mint with a configured secret, whatever APP_ENV defaults to')
  t.match(server.stdout(), /GET \/dev\/token is NOT registered/, 'the mismatch is logged at start-up')
  t.notMatch(await minted.text(), /eyJ/, 'and nothing token-like is answered')
})

t.test('logs are JSON lines for collectors, and human-readable with LOG_FORMAT=pretty', async (t) => {
  const json = start(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET })
  const pretty = start(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, LOG_FORMAT: 'pretty' })
  await address(json)
  const line = (await printed(pretty, /^.*INFO.*Server listening at http:\/\/127\.0\.0\.1:\d+.*$/m))[0]
  t.match(JSON.parse(json.stdout().split('\n').find((text) => text.includes('Server listening')) ?? '{}'), { level: 30, msg: /^Server listening at/ }, 'JSON by default when not on a terminal')
  t.notMatch(line, /^\{/, 'pino-pretty formats the line for a person')
  t.match(line, /^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO/)
})

t.test('SIGTERM: not ready at once, runs still going end with SHUTDOWN after the grace period, sockets close with 1001, exit 0', async (t) => {
  // Each demo step takes 2 s, so the run cannot finish within the 500 ms grace period.
  const server = start(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, DEMO_STEP_DELAY_MS: '2000', SHUTDOWN_GRACE_MS: '500' })
  const http = await address(server)
  // A connection that never sends a request, as browsers open speculatively: Node's server.close()
  // would wait for it, and the process would be killed at its deadline (exit 1) instead of closing.
  const silent = createConnection({ host: '127.0.0.1', port: Number(new URL(http).port) })
  silent.on('error', () => {})
  t.teardown(() => { silent.destroy() })
  await once(silent, 'connect')
  const silentClosed = once(silent, 'close')
  t.equal((await fetch(`${http}/readyz`)).status, 200)
  const client = await connect(t, `${http.replace('http', 'ws')}/ws`, { token: tokenFor('alice') })
  client.send({ type: 'run', input: { message: 'What is 6 * 7?' } })
  const { runId } = await client.nextOf('run_accepted')
  await client.nextOf('agent_started')
  server.child.kill('SIGTERM')
  let readyz = 0
  for (let i = 0; i < 50 && readyz !== 503; i++) {
    readyz = await fetch(`${http}/readyz`).then((response) => response.status, () => 0)
    if (readyz !== 503) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(readyz, 503, '/readyz turns 503 while the server drains')
  const events = await client.runEvents(runId, 10_000)
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'failed', error: { code: 'SHUTDOWN' } } })
  const whole = client.messages.filter((m) => 'seq' in m && m.runId === runId) as RunEvent[]
  t.same(runProblems(whole), [], 'the run is whole: started, then exactly one terminal event')
  t.match(await client.waitClosed(), { code: 1001 })
  t.equal(await exitCode(server), 0)
  await silentClosed
  t.notMatch(server.stdout() + server.stderr(), /killed by timeout/i, 'closed by itself, not killed at the deadline')
})
