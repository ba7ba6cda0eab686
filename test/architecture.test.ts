// The architecture guard: the custom ESLint rules (eslint-rules/index.js) fire on violating samples
// and stay quiet on compliant ones, the project's eslint.config.js applies each rule to exactly
// the paths it should, and the jscpd duplication check fails on a clone and passes on src/.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ESLint } from 'eslint'

const root = fileURLToPath(new URL('..', import.meta.url))

const ENV = 'agw/no-process-env'
const SIDE_EFFECTS = 'agw/no-module-side-effects'
const SOCKETS = 'agw/socket-writes-only-in-sinks'
const BOUNDARIES = 'agw/import-boundaries'

// Files that do not exist: samples are linted as if they sat there. The project service only knows
// files on disk, so these are opened in a default project with tsconfig.json's options (needed by
// the type-aware rule). Everything else comes from the project's own eslint.config.js.
const PROBE = {
  plugin: 'src/plugins/architecture-probe.ts',
  route: 'src/routes/architecture-probe.ts',
  store: 'src/stores/architecture-probe.ts',
  cli: 'src/cli/architecture-probe.ts',
  client: 'src/client/architecture-probe.ts',
  test: 'test/architecture-probe.ts'
} as const

// One instance for the whole file: the TypeScript project service is the slow part.
const eslint = new ESLint({
  cwd: root,
  overrideConfig: {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: Object.values(PROBE), defaultProject: 'tsconfig.json' } }
    }
  }
})

interface Finding {
  readonly line: number
  readonly ruleId: string | null
  readonly message: string
}

/** Lints `code` with the project configuration as if it were the file at `path` (relative to the repo). */
async function lint (code: string, path: string): Promise<Finding[]> {
  const [result] = await eslint.lintText(code, { filePath: join(root, path) })
  return (result?.messages ?? []).map(({ line, ruleId, message }) => ({ line, ruleId, message }))
}

function sample (name: string): string {
  return readFileSync(join(root, 'test/fixtures/lint', name), 'utf8')
}

/** `line ruleId` for every line a sample marks with `// expect: <ruleId>`, optionally only some rules. */
function expected (code: string, rules?: readonly string[]): string[] {
  return code.split('\n').flatMap((text, index) => {
    const ruleId = /\/\/ expect: (\S+)/.exec(text)?.[1]
    return ruleId !== undefined && (rules === undefined || rules.includes(ruleId)) ? [`${index + 1} ${ruleId}`] : []
  })
}

/** Every finding as `line ruleId`: a parse error (ruleId null) or any other rule shows up too. */
function found (findings: readonly Finding[]): string[] {
  return findings.map(({ line, ruleId }) => `${line} ${String(ruleId)}`)
}

t.setTimeout(180_000)

t.test('eslint.config.js lints src/ and test/ and ignores the deliberately bad fixtures', async (t) => {
  t.equal(await eslint.isPathIgnored(join(root, 'test/fixtures/lint/wiring.ts')), true, 'lint fixtures are ignored')
  t.equal(await eslint.isPathIgnored(join(root, 'test/fixtures/jscpd/first.ts')), true, 'jscpd fixtures are ignored')
  t.equal(await eslint.isPathIgnored(join(root, PROBE.plugin)), false)
  t.equal(await eslint.isPathIgnored(join(root, 'test/architecture.test.ts')), false)
  t.equal(await eslint.isPathIgnored(join(root, 'dist/app.js')), true)
  const config = await eslint.calculateConfigForFile(join(root, PROBE.route)) as { languageOptions?: { parserOptions?: { projectService?: unknown } } }
  t.ok(config.languageOptions?.parserOptions?.projectService, 'type-aware linting is on for src/')
})

t.test(`${ENV}: reports every way of reaching process.env`, async (t) => {
  const code = sample('process-env.bad.ts')
  const findings = await lint(code, PROBE.plugin)
  t.strictSame(found(findings), expected(code))
  t.equal(findings.length, 12)
  for (const { message } of findings) {
    t.match(message, 'process.env is read only in src/config.ts')
    t.match(message, 'Add the variable to ConfigSchema in src/config.ts and read it from `fastify.config`')
  }
})

t.test(`${ENV}: stays quiet on other uses of process and other env properties`, async (t) => {
  t.strictSame(found(await lint(sample('process-env.good.ts'), PROBE.plugin)), [])
})

t.test(`${SIDE_EFFECTS}: reports objects and timers created at import time`, async (t) => {
  const code = sample('module-side-effects.bad.ts')
  const findings = await lint(code, PROBE.plugin)
  t.strictSame(found(findings), expected(code))
  t.equal(findings.length, 9)
  const messages = findings.map(({ message }) => message)
  t.match(messages[0], /^`new Map\(…\)` runs when this plugin module is imported\. Plugins create nothing at import time/)
  t.match(messages[2], /^`setInterval\(…\)` starts a timer when this plugin module is imported/)
  t.match(messages[5], /^`globalThis\.setTimeout\(…\)` starts a timer/)
  t.match(messages[7], /^`new Registry\(…\)` runs when/, 'a static field initialiser runs at import')
  t.match(messages[8], /^`new Date\(…\)` runs when/, 'a static block runs at import')
  for (const message of messages) t.match(message, /inside the plugin function.*onClose hook/)
})

t.test(`${SIDE_EFFECTS}: stays quiet on symbols, constants and anything created inside functions`, async (t) => {
  t.strictSame(found(await lint(sample('module-side-effects.good.ts'), PROBE.plugin)), [])
})

t.test(`${SOCKETS}: reports writes to a ws WebSocket however it is typed, and to its _socket`, async (t) => {
  const code = sample('socket-writes.bad.ts')
  const findings = await lint(code, PROBE.plugin)
  t.strictSame(found(findings), expected(code))
  t.equal(findings.length, 14)
  const messages = findings.map(({ message }) => message)
  t.match(messages[0], /^`\.send\(\)` on a ws WebSocket outside src\/delivery\/websocket-sink\.ts\. The sinks are the only writers to sockets/)
  t.match(messages[3], /^`\.close\(\)` on a ws WebSocket/)
  t.match(messages[4], /^`\.terminate\(\)` on a ws WebSocket/)
  t.match(messages[10], /^`\._socket\.write\(\)` writes to the TCP socket under a ws WebSocket/)
  t.match(messages[12], /^`\._socket\.destroy\(\)`/)
  for (const message of messages) t.match(message, 'src/delivery/websocket-sink.ts')
})

t.test(`${SOCKETS}: stays quiet on reply.send, EventEmitter, plain objects, net sockets and reads`, async (t) => {
  t.strictSame(found(await lint(sample('socket-writes.good.ts'), PROBE.plugin)), [])
})

t.test('eslint.config.js applies each architecture rule to the right paths', async (t) => {
  const code = sample('wiring.ts')
  const cases: Array<[path: string, rules: string[], why: string]> = [
    [PROBE.plugin, [SIDE_EFFECTS, SOCKETS, ENV], 'a plugin gets all three rules'],
    [PROBE.route, [SOCKETS, ENV], 'a route module may create things at import time, nothing else'],
    [PROBE.store, [SOCKETS, ENV], 'so may a store module'],
    ['src/config.ts', [SOCKETS], 'src/config.ts is the one reader of process.env'],
    ['src/plugins/delivery.ts', [SIDE_EFFECTS, SOCKETS, ENV], 'the delivery plugin wires sinks but writes to no socket itself'],
    ['src/delivery/websocket-sink.ts', [ENV], 'the WebSocket sink is the one writer to sockets'],
    ['src/delivery/sse-sink.ts', [SOCKETS, ENV], 'the SSE sink writes HTTP responses, never a WebSocket'],
    ['src/cli/client.ts', [ENV], 'the CLI client writes to its own outgoing socket'],
    [PROBE.cli, [SOCKETS, ENV], 'only that one CLI file is exempt from the socket rule'],
    [PROBE.client, [ENV], 'the client library writes to its own outgoing socket, and reads no environment'],
    [PROBE.test, [], 'tests are not under the architecture rules']
  ]
  for (const [path, rules, why] of cases) {
    t.strictSame(found(await lint(code, path)), expected(code, rules), `${path}: ${why}`)
  }
})

t.test(`${BOUNDARIES}: each folder behind a boundary is imported only by its owner`, async (t) => {
  const cases: Array<[importer: string, code: string, crossed: boolean, why: string]> = [
    ['src/routes/health.ts', "import { createMemoryStore } from '../stores/memory-store.js'\nexport const s = createMemoryStore", true, 'a route reaches a store implementation'],
    ['src/plugins/run-engine.ts', "import { createRedisStore } from '../stores/redis-store.js'\nexport const s = createRedisStore", true, 'the engine reaches a store implementation'],
    ['src/plugins/event-store.ts', "import { createEventStore } from '../stores/select.js'\nexport const s = createEventStore", false, 'the event-store plugin owns the stores'],
    ['src/index.ts', "export { createMemoryStore } from './stores/memory-store.js'", false, 'the package entry exports a store for host apps'],
    ['src/contracts.ts', "import type { Telemetry } from './plugins/telemetry.js'\nexport type T = Telemetry", true, 'the contracts import a plugin'],
    ['src/agents/demo.ts', "import type { RunEngine } from '../plugins/run-engine.js'\nexport type E = RunEngine", true, 'an agent reaches into the wiring'],
    ['src/tools/calculator.ts', "import { execute } from '../engine/execute.js'\nexport const e = execute", true, 'a tool reaches engine internals'],
    ['src/routes/ws.ts', "import { Fanout } from '../delivery/fanout.js'\nexport const f = Fanout", true, 'a route makes its own fan-out'],
    ['src/routes/ws.ts', "import type { WebSocketSink } from '../delivery/websocket-sink.js'\nexport type S = WebSocketSink", false, 'types of the delivery path may be imported'],
    ['src/plugins/delivery.ts', "import { Fanout } from '../delivery/fanout.js'\nexport const f = Fanout", false, 'the delivery plugin wires its steps'],
    ['src/plugins/run-engine.ts', "export const load = () => import('../routes/ws.js')", true, 'a dynamic import crosses a boundary too'],
    ['src/stores/redis-store.ts', "import type { Config } from '../plugins/telemetry.js'\nexport type C = Config", true, 'a store reaches into the wiring'],
    ['src/routes/health.ts', "import { McpToolSource } from '../mcp/source.js'\nexport const m = McpToolSource", true, 'a route opens MCP connections itself'],
    ['src/plugins/mcp-tools.ts', "export const load = () => import('../mcp/source.js')", false, 'the mcp-tools plugin owns the MCP client'],
    ['src/mcp/source.ts', "import type { ToolRegistry } from '../plugins/tool-dispatcher.js'\nexport type R = ToolRegistry", true, 'the MCP client reaches into the wiring']
  ]
  for (const [importer, code, crossed, why] of cases) {
    const findings = (await lint(code, importer)).filter(({ ruleId }) => ruleId === BOUNDARIES)
    t.equal(findings.length, crossed ? 1 : 0, `${importer}: ${why}`)
    if (crossed) t.match(findings[0]?.message, new RegExp(`^${importer.replaceAll('.', '\\.')} imports src/`), 'the message names both files')
  }
})

t.test('src/contracts.ts imports nothing of the gateway but the protocol', async (t) => {
  const findings = await lint("import type { RunEventType } from './protocol.js'\nimport { ConfigInvalidError } from './errors.js'\nexport type T = RunEventType\nexport const E = ConfigInvalidError\n", 'src/contracts.ts')
  t.same(findings.map(({ line, ruleId }) => `${line} ${String(ruleId)}`), ['2 no-restricted-imports'])
})

/** Runs the project's jscpd (`npm run duplication`, with the repo's .jscpd.json) on `target`. */
function jscpd (target: string): { status: number | null, output: string } {
  const run = spawnSync('npm', ['run', '-s', 'duplication', '--', '--no-colors', target], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000
  })
  // eslint-disable-next-line no-control-regex -- strips ANSI colour codes, which are control characters
  return { status: run.status, output: `${run.stdout}${run.stderr}`.replace(/\u001b\[[0-9;]*m/g, '') }
}

t.test('jscpd fails on a duplicated block and names both files', async (t) => {
  const { status, output } = jscpd('test/fixtures/jscpd')
  t.not(status, 0, 'jscpd exits non-zero on a clone', { output })
  t.equal(status, 1)
  t.match(output, 'Using config from .jscpd.json')
  t.match(output, /Clone found \(typescript\)\s+- first\.ts \[\d+:\d+ - \d+:\d+\] \(\d+ lines, \d+ tokens\)\s+second\.ts \[/)
  t.match(output, 'Found 1 clones.')
})

t.test('jscpd passes on src/', async (t) => {
  const { status, output } = jscpd('src')
  t.equal(status, 0, 'jscpd exits 0 on src/', { output })
  t.match(output, 'Found 0 clones.')
})
