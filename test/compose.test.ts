// The gateway inside someone else's Fastify app: their agents, their tools, their routes,
// their own @fastify/jwt — and each plugin of ours registered alone with its dependencies.
import { spawnSync } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { Type } from 'typebox'
import { agentGateway, defineTool, RunError, type Agent } from '../src/index.js'
import { configPlugin } from '../src/config.js'
import authSecret from '../src/plugins/auth-secret.js'
import userContext from '../src/plugins/user-context.js'
import toolDispatcher from '../src/plugins/tool-dispatcher.js'
import telemetry from '../src/plugins/telemetry.js'
import eventStore from '../src/plugins/event-store.js'
import delivery from '../src/plugins/delivery.js'
import mcpTools from '../src/plugins/mcp-tools.js'
import runEngine from '../src/plugins/run-engine.js'
import { OTHER_SECRET, connect, runProblems, testEnv, tokenFor } from './helpers.js'

const lookupOrder = defineTool({
  name: 'lookup_order',
  description: 'Finds an order by its number',
  scope: 'orders:read',
  parameters: Type.Object({ orderId: Type.String({ pattern: '^[0-9]+$' }) }),
  async execute ({ orderId }) {
    if (orderId === '404') throw new RunError('NO_SUCH_ORDER', `There is no order ${orderId}`)
    return { orderId, status: 'shipped' }
  }
})

const support: Agent = async ({ input, think, say, tools }) => {
  think('Looking the order up')
  const orderId = /\d+/.exec(input.message)?.[0] ?? ''
  const outcome = await tools.call('lookup_order', { orderId })
  const text = outcome.status === 'success' ? `Order ${orderId} has shipped.` : `Sorry: ${outcome.error?.message ?? 'unknown problem'}`
  say(text)
  return { text }
}

t.test('a host app registers agentGateway with its own agent and tool next to its own routes and JWT', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyJwt, { secret: OTHER_SECRET })
  app.get('/host/hello', async () => ({ hello: 'from the host' }))
  await app.register(agentGateway, { env: testEnv(), agents: { support }, tools: [lookupOrder] })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })

  t.same(await (await fetch(`${address}/host/hello`)).json(), { hello: 'from the host' })
  t.same(app.runEngine.agents, ['support'])
  t.same(app.toolRegistry.names, ['lookup_order'], 'the demo tools are not added when agents are given')

  const client = await connect(t, address.replace('http', 'ws') + '/ws', { token: tokenFor('carol', { scope: 'orders:read' }) })
  client.send({ type: 'run', input: { message: 'Where is order 1234?' } })
  const { runId, agent } = await client.nextOf('run_accepted')
  t.equal(agent, 'support')
  const events = await client.runEvents(runId)
  t.same(runProblems(events), [])
  t.match(events.find((e) => e.type === 'tool_completed'), { data: { tool: 'lookup_order', status: 'success', result: { status: 'shipped' } } })
  t.match(events.at(-1), { data: { status: 'completed', output: { text: 'Order 1234 has shipped.' } } })

  client.send({ type: 'run', input: { message: 'Where is order 404?' } })
  const second = await client.nextOf('run_accepted')
  const failed = await client.runEvents(second.runId)
  t.match(failed.find((e) => e.type === 'tool_completed'), { data: { status: 'error', error: { code: 'NO_SUCH_ORDER', message: 'There is no order 404' } } })

  const unscoped = await connect(t, address.replace('http', 'ws') + '/ws', { token: tokenFor('dave') })
  unscoped.send({ type: 'run', input: { message: 'Where is order 1?' } })
  const third = await unscoped.nextOf('run_accepted')
  t.match((await unscoped.runEvents(third.runId)).find((e) => e.type === 'tool_completed'), { data: { status: 'error', error: { code: 'FORBIDDEN' } } })

  const hostToken = app.jwt.sign({ sub: 'host-user' })
  t.equal(app.jwt.verify<{ sub: string }>(hostToken).sub, 'host-user', "the host's JWT setup still works")
})

t.test('agentGateway refuses a second @fastify/websocket instead of fighting over upgrades', async (t) => {
  const { default: websocket } = await import('@fastify/websocket')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(websocket)
  app.register(agentGateway, { env: testEnv() })
  await t.rejects(async () => { await app.ready() }, { code: 'AGW_ERR_WEBSOCKET_PRESENT' })
})

/** The dependencies a plugin declares (fastify-plugin's metadata). */
function declared (plugin: unknown): readonly string[] {
  return (plugin as Record<symbol, { dependencies?: string[] } | undefined> | undefined)?.[Symbol.for('plugin-meta')]?.dependencies ?? []
}

// The plugins in an order that satisfies their dependencies, with the options each needs alone.
const chain = [
  { name: 'telemetry', plugin: telemetry, options: {} },
  { name: 'auth-secret', plugin: authSecret, options: {} },
  { name: 'user-context', plugin: userContext, options: {} },
  { name: 'event-store', plugin: eventStore, options: {} },
  { name: 'tool-dispatcher', plugin: toolDispatcher, options: { tools: [] } },
  { name: 'mcp-tools', plugin: mcpTools, options: {} },
  { name: 'delivery', plugin: delivery, options: {} },
  { name: 'run-engine', plugin: runEngine, options: { agents: { support } } }
] as const

t.test('the plugins declare the dependencies the architecture draws (docs/architecture.md)', async (t) => {
  const graph = Object.fromEntries(chain.map(({ name, plugin }) => [name, [...declared(plugin)].sort()]))
  t.same(graph, {
    telemetry: [],
    'auth-secret': ['config', 'telemetry'],
    'user-context': ['auth-secret', 'telemetry'],
    'event-store': ['config', 'telemetry'],
    'tool-dispatcher': ['config'],
    'mcp-tools': ['config', 'tool-dispatcher'],
    delivery: ['config', 'event-store', 'telemetry'],
    'run-engine': ['config', 'delivery', 'event-store', 'telemetry', 'tool-dispatcher', 'user-context']
  })
})

t.test('each plugin works alone with its declared dependencies, and fails ready() without them', async (t) => {
  const env = { APP_ENV: 'test', JWT_SECRET: testEnv().JWT_SECRET }
  /** The plugin's declared dependencies and theirs. */
  const closure = (name: string, into = new Set<string>()): Set<string> => {
    for (const dep of declared(chain.find((entry) => entry.name === name)?.plugin)) {
      if (!into.has(dep)) { into.add(dep); closure(dep, into) }
    }
    return into
  }
  for (const { name, plugin, options } of chain) {
    const needed = closure(name)
    const withDeps = Fastify()
    t.teardown(() => withDeps.close())
    withDeps.register(configPlugin, { env })
    for (const dep of chain) if (needed.has(dep.name)) withDeps.register(dep.plugin as never, dep.options as never)
    withDeps.register(plugin as never, options as never)
    await t.resolves(async () => { await withDeps.ready() }, `${name} with ${[...needed].join(', ') || 'nothing else'}`)

    if (needed.size === 0) continue
    const bare = Fastify()
    t.teardown(() => bare.close())
    bare.register(plugin as never, options as never)
    await t.rejects(async () => { await bare.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED' }, `${name} alone`)
  }
})

t.test('telemetry cannot be lost to registration order: a plugin registered before it fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', JWT_SECRET: testEnv().JWT_SECRET } })
  app.register(authSecret)
  app.register(telemetry, { prometheus: true })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /telemetry/ })
})

t.test('a host app with its own agents and tools needs neither openai nor the demo tools installed', async (t) => {
  // The built package (npm test builds dist/ first) in a node_modules of its own, next to every
  // dependency but openai, and without its built-in agents and tools: importing the main entry
  // and making an app ready must not touch any of them.
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dir = await mkdtemp(join(tmpdir(), 'agw-host-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const modules = join(dir, 'node_modules')
  const pkg = join(modules, 'agent-gateway')
  await mkdir(pkg, { recursive: true })
  await cp(join(root, 'package.json'), join(pkg, 'package.json'))
  await cp(join(root, 'dist'), join(pkg, 'dist'), { recursive: true, filter: (source) => !/[/\\]dist[/\\](agents|tools|page)([/\\]|$)/.test(source) })
  for (const entry of await readdir(join(root, 'node_modules'))) {
    if (entry === 'openai' || entry === '.bin' || entry.startsWith('.')) continue
    await symlink(join(root, 'node_modules', entry), join(modules, entry))
  }
  const script = join(dir, 'host.mjs')
  await writeFile(script, [
    "import Fastify from 'fastify'",
    "import { agentGateway, defineTool, RunError } from 'agent-gateway'",
    "import { Type } from 'typebox'",
    "const tool = defineTool({ name: 'ping', description: 'Pings', parameters: Type.Object({}), execute: async () => 'pong' })",
    "const app = Fastify()",
    "await app.register(agentGateway, { env: { APP_ENV: 'test', JWT_SECRET: process.argv[2] }, page: false, agents: { mine: async ({ tools }) => (await tools.call('ping')).result }, tools: [tool] })",
    'await app.ready()',
    "let openai = 'missing'",
    "try { await import('openai'); openai = 'present' } catch {}",
    "console.log(JSON.stringify({ agents: app.runEngine.agents, tools: app.toolRegistry.names, openai, runError: typeof RunError }))",
    'await app.close()'
  ].join('\n'))
  const run = spawnSync(process.execPath, [script, testEnv().JWT_SECRET as string], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
  t.equal(run.status, 0, run.stderr)
  t.same(JSON.parse(run.stdout.trim()), { agents: ['mine'], tools: ['ping'], openai: 'missing', runError: 'function' })
})
