// `npm run docs` regenerates the parts of docs/ that derive from code: the protocol's JSON
// Schema, the configuration table and the error catalogue. A test fails when they are stale.
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { configVariables } from '../config.js'
import * as errors from '../errors.js'
import { protocolJsonSchema } from '../protocol.js'

export interface GeneratedFile {
  readonly path: string
  render(current: string): string
}

const text = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value))

function escapeCell (text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}

/** Replaces what stands between `<!-- name:start -->` and `<!-- name:end -->`. */
export function replaceSection (text: string, name: string, content: string): string {
  const start = `<!-- ${name}:start -->`
  const end = `<!-- ${name}:end -->`
  const from = text.indexOf(start)
  const to = text.indexOf(end)
  if (from === -1 || to < from) throw new Error(`missing ${start} … ${end} markers`)
  return `${text.slice(0, from + start.length)}\n${content}\n${text.slice(to)}`
}

export function configTable (): string {
  const rows = configVariables().map(({ name, schema }) => {
    const type = Array.isArray(schema.enum) ? (schema.enum as string[]).map((value) => `\`${value}\``).join(' \\| ') : text(schema.type)
    const bounds = schema.minimum !== undefined && schema.type === 'integer' ? ` (${text(schema.minimum)}–${text(schema.maximum)})` : ''
    const fallback = schema.writeOnly === true ? '*secret*' : schema.default === undefined ? '—' : `\`${schema.default === '' ? '""' : text(schema.default)}\``
    return `| \`${name}\` | ${type}${bounds} | ${fallback} | ${escapeCell(text(schema.description ?? ''))} |`
  })
  return ['| variable | type | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n')
}

export function errorTable (): string {
  const rows: string[] = []
  for (const value of Object.values(errors)) {
    // Constructors made by @fastify/error carry this marker on their prototype.
    const prototype = (value as { prototype?: Record<symbol, unknown> }).prototype
    if (prototype?.[Symbol.for('fastify-error-generic')] !== true) continue
    // Constructed without arguments, an @fastify/error keeps its `%s` placeholders.
    const { code, statusCode, message } = new (value as new () => { code?: unknown, statusCode?: unknown, message: string })()
    if (typeof code !== 'string' || !code.startsWith('AGW_ERR_')) continue
    rows.push(`| \`${code}\` | ${text(statusCode)} | ${escapeCell(message)} |`)
  }
  return ['| code | status | message |', '| --- | --- | --- |', ...rows.sort()].join('\n')
}

export const generatedFiles: readonly GeneratedFile[] = [
  { path: 'docs/protocol.schema.json', render: () => `${JSON.stringify(protocolJsonSchema(), null, 2)}\n` },
  { path: 'docs/configuration.md', render: (current) => replaceSection(current, 'config', configTable()) },
  { path: 'docs/errors.md', render: (current) => replaceSection(current, 'errors', errorTable()) }
]

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

async function readOrEmpty (path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '')
}

/** Writes every generated file; returns the paths that changed. */
export async function writeDocs (root = repoRoot): Promise<string[]> {
  const changed: string[] = []
  for (const file of generatedFiles) {
    const path = `${root}${file.path}`
    const current = await readOrEmpty(path)
    const next = file.render(current)
    if (next !== current) {
      await writeFile(path, next)
      changed.push(file.path)
    }
  }
  return changed
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const changed = await writeDocs()
  process.stdout.write(changed.length === 0 ? 'docs are up to date\n' : `updated ${changed.join(', ')}\n`)
}
