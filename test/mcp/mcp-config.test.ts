// The MCP configuration (the `mcpServers` file and option, checked at start-up with one line per
// refusal) and the shape of MCP results in tool_completed (summaries, the size cap).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildApp, testEnv } from '../helpers.js'
import { loadMcpConfigFile, mergeMcpServers, parseMcpServers } from '../../src/mcp/config.js'
import { errorMessage, summariseResult } from '../../src/mcp/result.js'

const dir = await mkdtemp(join(tmpdir(), 'agw-mcp-config-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

async function file (name: string, text: string): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

t.test('a stdio and a Streamable HTTP server, with our own fields, normalised', async (t) => {
  const [stdio, http] = parseMcpServers({
    fs: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-filesystem', '/data'], env: { LOG: '1' }, cwd: 'work', scope: 'files:read', timeoutMs: 5000, exclude: ['write_file'] },
    issues: { type: 'http', url: 'https://mcp.example.com/mcp?team=1', headers: { Authorization: 'Bearer abc' }, include: ['search'] }
  }, 'mcpServers', '/srv/gateway')
  t.same(stdio, {
    name: 'fs', scope: 'files:read', timeoutMs: 5000, exclude: new Set(['write_file']), transport: 'stdio',
    command: 'npx', args: ['-y', '@modelcontextprotocol/server-filesystem', '/data'], env: { LOG: '1' }, cwd: '/srv/gateway/work', headers: {}
  }, 'a relative cwd is taken from the configuration\'s folder')
  t.same(http, {
    name: 'issues', include: new Set(['search']), exclude: new Set(), transport: 'http',
    url: new URL('https://mcp.example.com/mcp?team=1'), headers: { Authorization: 'Bearer abc' }, args: [], env: {}
  })
  t.same(parseMcpServers({}, 'mcpServers'), [])
})

t.test('every refusal is AGW_ERR_MCP_CONFIG_INVALID with one line that names the server and the problem', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /^Invalid MCP server configuration: mcpServers: must be an object of servers by name$/],
    [{ fs: 'node server.js' }, /mcpServers\.fs: must be an object$/],
    [{ fs: { comand: 'node' } }, /mcpServers\.fs: needs "command" \(a stdio server\) or "url" \(a Streamable HTTP server\)$/],
    [{ fs: { command: 'node', url: 'http://x/mcp' } }, /mcpServers\.fs: has both "command" .* and "url"/],
    [{ fs: { command: 'node', timeout: 5 } }, /mcpServers\.fs: unknown field "timeout"$/],
    [{ fs: { command: '' } }, /mcpServers\.fs: command must have a minimum length of 1|command .*1/],
    [{ fs: { command: 'node', args: 'a b' } }, /mcpServers\.fs: args must be array/],
    [{ fs: { command: 'node', env: { PORT: 8080 } } }, /mcpServers\.fs: env\.PORT must be string/],
    [{ fs: { command: 'node', timeoutMs: 0 } }, /mcpServers\.fs: timeoutMs must be >= 1/],
    [{ fs: { command: 'node', scope: '' } }, /mcpServers\.fs: scope/],
    [{ fs: { command: 'node', type: 'http' } }, /mcpServers\.fs: type/],
    [{ api: { url: 'ftp://x/mcp' } }, /mcpServers\.api: url must match pattern/],
    [{ api: { url: 'http://[x/mcp' } }, /mcpServers\.api: url is not a valid URL$/],
    [{ api: { type: 'sse', url: 'http://x/sse' } }, /mcpServers\.api: the SSE transport is not supported/],
    [{ 'my files': { command: 'node' } }, /mcpServers: "my files" is not a usable server name/],
    [{ '9lives': { command: 'node' } }, /"9lives" is not a usable server name/],
    [{ a__b: { command: 'node' } }, /"a__b" is not a usable server name: .*without "__"/],
    [{ ['x'.repeat(62)]: { command: 'node' } }, /at most 61 characters/]
  ]
  for (const [value, message] of cases) {
    t.throws(() => parseMcpServers(value, 'mcpServers'), { code: 'AGW_ERR_MCP_CONFIG_INVALID', message }, JSON.stringify(value).slice(0, 60))
  }
  t.ok(parseMcpServers({ ['x'.repeat(61)]: { command: 'node' } }, 'mcpServers').length === 1, '61 characters leave room for a tool name')
})

t.test('the MCP_CONFIG file: unreadable, not JSON, or holding more than mcpServers stops start-up', async (t) => {
  const cases: Array<[string, RegExp]> = [
    [join(dir, 'absent.json'), /MCP_CONFIG \(.*absent\.json\): cannot be read \(ENOENT\)$/],
    [dir, /cannot be read \(EISDIR\)$/],
    [await file('broken.json', '{ "mcpServers": {'), /is not valid JSON \(/],
    [await file('list.json', '[]'), /must be a JSON object with "mcpServers"$/],
    [await file('desktop.json', '{ "mcpServers": {}, "globalShortcut": "Ctrl+Space" }'), /unknown field "globalShortcut" \(the file holds "mcpServers" only\)$/],
    [await file('empty.json', '{}'), /has no "mcpServers" object$/],
    [await file('bad.json', '{ "mcpServers": { "fs": { "command": "node", "arg": [] } } }'), /MCP_CONFIG \(.*bad\.json\) mcpServers\.fs: unknown field "arg"$/]
  ]
  for (const [path, message] of cases) {
    await t.rejects(loadMcpConfigFile(path), { code: 'AGW_ERR_MCP_CONFIG_INVALID', message }, path)
  }
  const fromFile = await loadMcpConfigFile(await file('good.json', JSON.stringify({ mcpServers: { fs: { command: 'node', cwd: 'srv' } } })))
  t.same(fromFile.map((entry) => [entry.name, entry.cwd]), [['fs', join(dir, 'srv')]])
  t.throws(() => mergeMcpServers(fromFile, parseMcpServers({ fs: { url: 'http://x/mcp' } }, 'the mcpServers option')),
    { code: 'AGW_ERR_MCP_CONFIG_INVALID', message: /"fs" is configured both in MCP_CONFIG and in the mcpServers option/ })
})

t.test('the gateway refuses to get ready on a bad MCP_CONFIG or mcpServers option', async (t) => {
  await t.rejects(buildApp(t, { env: testEnv({ MCP_CONFIG: join(dir, 'nowhere.json') }) }), { code: 'AGW_ERR_MCP_CONFIG_INVALID', message: /nowhere\.json/ })
  await t.rejects(buildApp(t, { env: testEnv(), mcpServers: { fs: { command: 'node', bogus: true } as never } }),
    { code: 'AGW_ERR_MCP_CONFIG_INVALID', message: 'Invalid MCP server configuration: the mcpServers option.fs: unknown field "bogus"' })
  const app = await buildApp(t, { env: testEnv() })
  t.same(app.mcpServers.status(), {}, 'no servers: nothing to report')
  t.same((await app.inject('/readyz')).json(), { status: 'ready' })
})

const png = Buffer.alloc(3000, 7).toString('base64')

t.test('results: text and structured content kept, media and resources described with their size', async (t) => {
  t.same(summariseResult({ content: [{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }] }, 65_536), { text: 'one\n\ntwo' })
  t.same(summariseResult({ content: [], structuredContent: { rows: 2 } }, 65_536), { structuredContent: { rows: 2 } })
  t.same(summariseResult({
    content: [
      { type: 'text', text: 'Here:' },
      { type: 'image', data: png, mimeType: 'image/png' },
      { type: 'audio', data: 'AAAA', mimeType: 'audio/wav' },
      { type: 'resource', resource: { uri: 'file:///a.txt', mimeType: 'text/plain', text: 'héllo' } },
      { type: 'resource', resource: { uri: 'file:///b.bin', blob: 'AAE=' } },
      { type: 'resource_link', uri: 'file:///c.pdf', name: 'c.pdf', mimeType: 'application/pdf', size: 12_345 },
      { type: 'resource_link', uri: 'file:///d', name: 'd' }
    ]
  }, 65_536), {
    text: 'Here:',
    attachments: [
      { type: 'image', mimeType: 'image/png', bytes: 3000 },
      { type: 'audio', mimeType: 'audio/wav', bytes: 3 },
      { type: 'resource', uri: 'file:///a.txt', mimeType: 'text/plain', bytes: 6 },
      { type: 'resource', uri: 'file:///b.bin', bytes: 2 },
      { type: 'resource_link', uri: 'file:///c.pdf', name: 'c.pdf', mimeType: 'application/pdf', bytes: 12_345 },
      { type: 'resource_link', uri: 'file:///d', name: 'd' }
    ]
  })
})

t.test('results over the cap: structured content dropped whole when too big, text cut on a character, attachments thinned', async (t) => {
  const max = 1024
  const long = 'ü"\n'.repeat(2000)
  const cut = summariseResult({ content: [{ type: 'text', text: long }], structuredContent: { all: long } }, max)
  t.ok(Buffer.byteLength(JSON.stringify(cut)) <= max)
  t.notOk('structuredContent' in cut)
  t.equal(cut.truncated?.totalBytes, Buffer.byteLength(JSON.stringify({ text: long, structuredContent: { all: long } })))
  t.ok(long.startsWith(cut.text as string) && (cut.text as string).length > 100, 'the beginning of the text, whole characters only')

  const kept = summariseResult({ content: [{ type: 'text', text: 'x'.repeat(2000) }], structuredContent: { small: true } }, max)
  t.same(kept.structuredContent, { small: true }, 'small structured content stays')
  t.ok(Buffer.byteLength(JSON.stringify(kept)) <= max)

  const many = Array.from({ length: 80 }, (_, i) => ({ type: 'resource_link' as const, uri: `file:///${i}.txt`, name: `${i}.txt` }))
  const thinned = summariseResult({ content: many }, max)
  t.ok(Buffer.byteLength(JSON.stringify(thinned)) <= max)
  t.ok((thinned.attachments?.length ?? 0) > 0 && (thinned.attachments?.length ?? 0) < 50, 'as many descriptions as fit')
  t.same(summariseResult({ content: many }, 65_536).attachments?.length, 50, 'at most 50 described')
})

t.test('an error result: its text, on one line and shortened', async (t) => {
  t.equal(errorMessage({ content: [{ type: 'text', text: 'Access denied:\n  /etc' }] }, 'read'), 'Access denied: /etc')
  t.equal(errorMessage({ content: [] }, 'read'), '"read" reported an error without a message')
  t.equal(errorMessage({ content: [{ type: 'text', text: 'y'.repeat(2000) }] }, 'read').length, 1000)
})
