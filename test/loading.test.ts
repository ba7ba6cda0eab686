// What the built gateway (dist/, built by `pretest`) loads, and when: AG-UI's packages (@ag-ui/core
// with zod, @ag-ui/encoder with protobuf; about 8 MiB of heap) on the AG-UI endpoint's first
// request, and ioredis only when a Redis store connects — neither when the app is built on the
// memory store nor when a host app imports the package's entry, which exports the Redis store.
// A child process records every module the ES module loader resolves, through a resolve hook of
// its own (the packages dist/ imports), and reads CommonJS's module cache, which holds every
// CommonJS package loaded, imported or required (ioredis is one: the Redis store requires it).
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { TEST_SECRET, tokenFor } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))

// The hook runs on the loader's thread and posts each resolved URL to the main thread.
const HOOKS = `
let port
export function initialize (data) { port = data.port }
export async function resolve (specifier, context, next) {
  const resolved = await next(specifier, context)
  port.postMessage(resolved.url)
  return resolved
}
`

// Builds the app as src/server.ts does (memory store, default routes), then reports the packages
// loaded so far; makes one AG-UI request (a body that is not a RunAgentInput: 400 once AG-UI's
// schema has checked it) and reports again; then imports the package's entry and reports again.
// Argument: the bearer token.
const SCRIPT = `
import { createRequire, register } from 'node:module'
import { MessageChannel } from 'node:worker_threads'
const { port1, port2 } = new MessageChannel()
const resolved = new Set()
port1.on('message', (url) => { resolved.add(url) })
port1.unref()
register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOKS)}`)}, { data: { port: port2 }, transferList: [port2] })

const settle = () => new Promise((resolve) => setTimeout(resolve, 200))
// Every module resolved by the ES module loader, and every CommonJS module loaded, imported or required.
const requireCache = createRequire(import.meta.url).cache
const packages = () => [...new Set([...resolved, ...Object.keys(requireCache)].flatMap((url) => {
  const match = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(url)
  return match === null ? [] : [match[1]]
}))].sort()

const { build } = await import(${JSON.stringify(pathToFileURL(join(root, 'dist/app.js')).href)})
const app = await build({ env: { APP_ENV: 'test', JWT_SECRET: ${JSON.stringify(TEST_SECRET)}, LOG_LEVEL: 'silent', EVENT_STORE: 'memory' } })
await app.ready()
await settle()
const atReady = packages()
const answer = await app.inject({ method: 'POST', url: '/v1/ag-ui', headers: { authorization: 'Bearer ' + process.argv[2] }, payload: { messages: 'not a list' } })
await settle()
const afterRequest = packages()
await app.close()
const { createRedisStore } = await import(${JSON.stringify(pathToFileURL(join(root, 'dist/index.js')).href)})
await settle()
const entry = { exportsRedisStore: typeof createRedisStore === 'function', packages: packages() }
console.log(JSON.stringify({ atReady, afterRequest, status: answer.statusCode, code: answer.json().code, entry }))
`

t.test('the built gateway loads AG-UI\'s packages on the endpoint\'s first request, and no Redis client with the memory store', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'agw-loading-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const script = join(dir, 'loading.mjs')
  await writeFile(script, SCRIPT)
  const child = spawn(process.execPath, [script, tokenFor('alice')], { cwd: root, env: { PATH: process.env.PATH ?? '' } })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => { child.on('exit', resolve) })
  t.equal(code, 0, err)
  const report = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as {
    atReady: string[]
    afterRequest: string[]
    status: number
    code: string
    entry: { exportsRedisStore: boolean, packages: string[] }
  }

  t.ok(['fastify', '@fastify/websocket', 'typebox'].every((name) => report.atReady.includes(name)), 'the hook sees the packages the gateway imports')
  t.ok(report.atReady.includes('avvio'), 'and the module cache the packages they require (avvio, Fastify\'s)')
  const agUi = (names: string[]): string[] => names.filter((name) => name.startsWith('@ag-ui/') || name === 'zod' || name.startsWith('@bufbuild/'))
  t.same(agUi(report.atReady), [], 'ready: none of AG-UI\'s packages loaded')
  t.notOk(report.atReady.includes('ioredis'), 'ready on the memory store: no Redis client loaded')

  t.equal(report.status, 400, 'the first AG-UI request is answered')
  t.equal(report.code, 'AGW_ERR_AG_UI_INPUT', 'by AG-UI\'s own schema, loaded for it')
  t.ok(report.afterRequest.includes('@ag-ui/core') && report.afterRequest.includes('@ag-ui/encoder'), 'AG-UI\'s packages loaded by the request')
  t.notOk(report.afterRequest.includes('ioredis'), 'and still no Redis client')

  t.ok(report.entry.exportsRedisStore, 'the package\'s entry exports the Redis store')
  t.notOk(report.entry.packages.includes('ioredis'), 'no Redis client loaded by importing the entry')
})
