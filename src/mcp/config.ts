// The MCP servers to mount, in the `mcpServers` format every MCP host reads (Claude Desktop,
// Cursor, Claude Code …): a stdio server is `{ command, args?, env?, cwd? }`, a Streamable HTTP
// server `{ url, headers? }`, and our own optional fields are `scope`, `timeoutMs`, `include` and
// `exclude`. Checked once at start-up: an unknown field, a bad name or an unreadable file stops
// it with one line that names the problem.
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { Type, type Static } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'
import { McpConfigInvalidError } from '../errors.js'

/** Between the server's name and the tool's in the name agents call: `<server>__<tool>`. */
export const TOOL_NAME_SEPARATOR = '__'
const MAX_TOOL_NAME = 64
// At least one character of the tool's name must fit after `<server>__`.
const MAX_SERVER_NAME = MAX_TOOL_NAME - TOOL_NAME_SEPARATOR.length - 1
const SERVER_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/

const toolNames = Type.Array(Type.String({ minLength: 1 }))
const ours = {
  scope: Type.Optional(Type.String({ minLength: 1, description: 'Only users whose token carries this scope may call the server\'s tools.' })),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000, description: 'Deadline of one call (TOOL_TIMEOUT_MS when omitted); the run\'s deadline still applies.' })),
  include: Type.Optional(toolNames),
  exclude: Type.Optional(toolNames)
}
const strings = Type.Record(Type.String(), Type.String())

export const McpStdioServer = Type.Object({
  type: Type.Optional(Type.Literal('stdio')),
  command: Type.String({ minLength: 1 }),
  args: Type.Optional(Type.Array(Type.String())),
  env: Type.Optional(strings),
  cwd: Type.Optional(Type.String({ minLength: 1 })),
  ...ours
}, { additionalProperties: false })

export const McpHttpServer = Type.Object({
  type: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('streamable-http')])),
  url: Type.String({ pattern: '^https?://' }),
  headers: Type.Optional(strings),
  ...ours
}, { additionalProperties: false })

/** One server as written in the configuration. */
export type McpServerConfig = Static<typeof McpStdioServer> | Static<typeof McpHttpServer>
/** What `mcpServers` holds: servers by name. */
export type McpServersConfig = Readonly<Record<string, McpServerConfig>>

/** One server, checked and normalised. */
export interface McpServerEntry {
  readonly name: string
  readonly transport: 'stdio' | 'http'
  /** stdio: the process to start (its environment is `env` plus a minimal base, nothing else). */
  readonly command?: string
  readonly args: readonly string[]
  readonly env: Readonly<Record<string, string>>
  readonly cwd?: string
  /** Streamable HTTP: the endpoint and the headers sent with every request. */
  readonly url?: URL
  readonly headers: Readonly<Record<string, string>>
  readonly scope?: string
  readonly timeoutMs?: number
  /** The tools (by the server's own names) to offer: all when undefined, minus `exclude`. */
  readonly include?: ReadonlySet<string>
  readonly exclude: ReadonlySet<string>
}

/** The qualified name agents call a server's tool by. */
export function qualifiedName (server: string, tool: string): string {
  return `${server}${TOOL_NAME_SEPARATOR}${tool}`
}

let validators: { stdio: Validator, http: Validator } | undefined
function validatorsOnce (): { stdio: Validator, http: Validator } {
  validators ??= { stdio: Compile(McpStdioServer), http: Compile(McpHttpServer) }
  return validators
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

function invalid (where: string, problem: string): never {
  throw new McpConfigInvalidError(`${where}: ${problem}`)
}

/** The first problem of `value` against `validator`, in a configuration's words. */
function firstProblem (validator: Validator, value: unknown): string {
  for (const error of validator.Errors(value)) {
    const params = error.params as Record<string, unknown>
    const where = error.instancePath === '' ? '' : `${error.instancePath.slice(1).replaceAll('/', '.')} `
    if (Array.isArray(params.additionalProperties)) return `unknown field ${JSON.stringify(params.additionalProperties[0])}`
    // TypeBox reports an additional property twice; the keyword form above says it better.
    if (error.keyword === 'boolean') continue
    return `${where}${error.message}`
  }
  /* c8 ignore next -- a failed Check always reports an error */
  return 'invalid'
}

function checkServerName (name: string, where: string): void {
  if (!SERVER_NAME.test(name) || name.includes(TOOL_NAME_SEPARATOR) || name.length > MAX_SERVER_NAME) {
    invalid(where, `${JSON.stringify(name)} is not a usable server name: letters, digits, "_" and "-", starting with a letter, without "__", at most ${MAX_SERVER_NAME} characters (it prefixes its tools' names)`)
  }
}

function entryOf (name: string, value: unknown, where: string, baseDir: string): McpServerEntry {
  checkServerName(name, where)
  const at = `${where}.${name}`
  if (!isObject(value)) invalid(at, 'must be an object')
  if (value.type === 'sse') invalid(at, 'the SSE transport is not supported: use the server\'s Streamable HTTP endpoint ("url") or run it over stdio')
  const stdio = 'command' in value
  if (stdio && 'url' in value) invalid(at, 'has both "command" (a stdio server) and "url" (a Streamable HTTP server): keep one')
  if (!stdio && !('url' in value)) invalid(at, 'needs "command" (a stdio server) or "url" (a Streamable HTTP server)')
  const validator = stdio ? validatorsOnce().stdio : validatorsOnce().http
  if (!validator.Check(value)) invalid(at, firstProblem(validator, value))
  const server = value as McpServerConfig
  const common = {
    name,
    ...(server.scope === undefined ? {} : { scope: server.scope }),
    ...(server.timeoutMs === undefined ? {} : { timeoutMs: server.timeoutMs }),
    ...(server.include === undefined ? {} : { include: new Set(server.include) }),
    exclude: new Set(server.exclude ?? [])
  }
  if ('command' in server) {
    return {
      ...common,
      transport: 'stdio',
      command: server.command,
      args: [...(server.args ?? [])],
      env: { ...server.env },
      ...(server.cwd === undefined ? {} : { cwd: resolve(baseDir, server.cwd) }),
      headers: {}
    }
  }
  let url: URL
  try {
    url = new URL(server.url)
  } catch {
    invalid(at, 'url is not a valid URL')
  }
  return { ...common, transport: 'http', url, headers: { ...server.headers }, args: [], env: {} }
}

/**
 * Checks `mcpServers` (servers by name) and normalises it. `where` names it in errors;
 * a relative `cwd` is taken from `baseDir`. Throws AGW_ERR_MCP_CONFIG_INVALID.
 */
export function parseMcpServers (value: unknown, where: string, baseDir = '.'): McpServerEntry[] {
  if (!isObject(value)) invalid(where, 'must be an object of servers by name')
  return Object.entries(value).map(([name, server]) => entryOf(name, server, where, baseDir))
}

/** Reads and checks the file MCP_CONFIG names: `{ "mcpServers": { … } }`. */
export async function loadMcpConfigFile (path: string): Promise<McpServerEntry[]> {
  const where = `MCP_CONFIG (${path})`
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    invalid(where, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    invalid(where, `is not valid JSON (${(err as Error).message})`)
  }
  if (!isObject(json)) invalid(where, 'must be a JSON object with "mcpServers"')
  const unknown = Object.keys(json).find((key) => key !== 'mcpServers')
  if (unknown !== undefined) invalid(where, `unknown field ${JSON.stringify(unknown)} (the file holds "mcpServers" only)`)
  if (!('mcpServers' in json)) invalid(where, 'has no "mcpServers" object')
  return parseMcpServers(json.mcpServers, `${where} mcpServers`, dirname(resolve(path)))
}

/** The servers of the file and of the option together; a name in both is an error. */
export function mergeMcpServers (fromFile: readonly McpServerEntry[], fromOption: readonly McpServerEntry[]): McpServerEntry[] {
  const names = new Set(fromFile.map((entry) => entry.name))
  const twice = fromOption.find((entry) => names.has(entry.name))
  if (twice !== undefined) invalid('mcpServers', `"${twice.name}" is configured both in MCP_CONFIG and in the mcpServers option`)
  return [...fromFile, ...fromOption]
}
