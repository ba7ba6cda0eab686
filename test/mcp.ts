// Helpers of the MCP tests: the real reference servers from the npm registry (installed as
// devDependencies) and the small SDK-built server in test/fixtures/mcp, an agent that makes the
// tool calls a test asks for, and waits that poll states rather than time anything.
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import type { Agent, UserContext } from '../src/contracts.js'
import type { RunEvent } from '../src/protocol.js'
import type { McpServerConfig } from '../src/mcp/config.js'

const require = createRequire(import.meta.url)
const packageDir = (name: string): string => dirname(require.resolve(`${name}/package.json`))

export const EVERYTHING_SERVER = join(packageDir('@modelcontextprotocol/server-everything'), 'dist', 'index.js')
export const FILESYSTEM_SERVER = join(packageDir('@modelcontextprotocol/server-filesystem'), 'dist', 'index.js')
export const DYNAMIC_SERVER = fileURLToPath(new URL('fixtures/mcp/dynamic-server.mjs', import.meta.url))

/** The everything server over stdio. */
export const everything = (extra: Partial<McpServerConfig> = {}): McpServerConfig =>
  ({ command: process.execPath, args: [EVERYTHING_SERVER, 'stdio'], ...extra }) as McpServerConfig

/** The filesystem server over `dir`. */
export const filesystem = (dir: string, extra: Partial<McpServerConfig> = {}): McpServerConfig =>
  ({ command: process.execPath, args: [FILESYSTEM_SERVER, dir], ...extra }) as McpServerConfig

export const dynamic = (extra: Partial<McpServerConfig> = {}): McpServerConfig =>
  ({ command: process.execPath, args: [DYNAMIC_SERVER], ...extra }) as McpServerConfig

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls until `condition` holds; fails naming `what` after a generous deadline (a wait, not a timed assertion). */
export async function until (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Waits until every named server (all when none is named) is in `state`. */
export async function mcpState (app: FastifyInstance, state: string, names?: readonly string[]): Promise<void> {
  await until(() => {
    const status = app.mcpServers.status()
    return (names ?? Object.keys(status)).every((name) => status[name]?.state === state)
  }, `MCP servers ${(names ?? []).join(', ')} to be ${state}`)
}

/** True while a process of that id exists (a zombie not yet reaped counts). */
export function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** An agent that calls `input.calls` (`[tool, args]` pairs) in order; its output is the outcomes. */
export const caller: Agent = async ({ input, tools }) => {
  const outcomes = []
  for (const [tool, args] of input.calls as Array<[string, unknown]>) outcomes.push(await tools.call(tool, args))
  return outcomes
}

/** Starts a run of the `caller` agent and returns its id. */
export async function startCalls (app: FastifyInstance, user: UserContext, calls: Array<[string, unknown]>): Promise<string> {
  const { runId } = await app.runEngine.start(user, { agent: 'caller', input: { message: 'calls', calls } })
  return runId
}

/** The events of a run in its log so far. */
export async function logged (app: FastifyInstance, runId: string): Promise<RunEvent[]> {
  return (await app.eventStore.read(runId, 0, 100_000)).map((event) => JSON.parse(event.frame.toString()) as RunEvent)
}

/** The whole log of a run, once it has ended. */
export async function finished (app: FastifyInstance, runId: string): Promise<RunEvent[]> {
  await until(async () => {
    const lookup = await app.eventStore.getRun(runId)
    return lookup.state === 'found' && lookup.meta.status !== 'running'
  }, `run ${runId} to end`)
  return logged(app, runId)
}

export const ofType = <T extends RunEvent['type']>(events: readonly RunEvent[], type: T): Array<Extract<RunEvent, { type: T }>> =>
  events.filter((event): event is Extract<RunEvent, { type: T }> => event.type === type)
