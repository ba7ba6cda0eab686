// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by module.
//   node dist-dev/bench/profile.js <file.cpuprofile> [--top 25] [--window <window.json>]
// `npm run bench -- --profile` writes the gateway's profile under workload (a) and prints this.
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
}

interface CpuProfile {
  startTime: number
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export interface SelfTime {
  readonly name: string
  readonly ms: number
  /** Share of the busy time (everything but idle). */
  readonly share: number
}

/** A span of the monotonic clock in µs (the clock of `startTime` in a .cpuprofile). */
export interface ProfileWindow {
  readonly fromUs: number
  readonly toUs: number
}

export interface ProfileSummary {
  readonly busyMs: number
  readonly idleMs: number
  readonly functions: readonly SelfTime[]
  readonly modules: readonly SelfTime[]
}

// npm runs scripts from the project's root.
const root = process.cwd()

/** Where a function lives: a package, a project file, a Node internal, or V8's own bucket. */
function moduleOf (url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  if (url.startsWith('node:')) return 'node: internals'
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  if (inPackage !== null) return inPackage[1] as string
  return relative(root, path).replace(/^dist-dev\//, '')
}

function location (url: string, line: number): string {
  if (url === '') return ''
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const short = path.startsWith('node:') ? path : relative(root, path).replace(/^dist-dev\//, '').replace(/^node_modules\//, '')
  return ` ${short}:${line + 1}`
}

function ranked (totals: Map<string, number>, busy: number, top: number): SelfTime[] {
  return [...totals].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, ms: us / 1000, share: us / busy }))
}

/** Self time of the samples (within `window`, when given), by function and by module. */
export function summariseProfile (file: string, top = 25, window?: ProfileWindow): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<number, number>()
  let at = profile.startTime
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0
    at += delta
    if (window === undefined || (at >= window.fromUs && at <= window.toUs)) selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  })
  const functions = new Map<string, number>()
  const modules = new Map<string, number>()
  let idle = 0
  let busy = 0
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = (nodes.get(id) as ProfileNode).callFrame
    if (functionName === '(idle)') {
      idle += us
      continue
    }
    busy += us
    const name = `${functionName === '' ? '(anonymous)' : functionName}${location(url, lineNumber)}`
    functions.set(name, (functions.get(name) ?? 0) + us)
    const module = moduleOf(url, functionName)
    modules.set(module, (modules.get(module) ?? 0) + us)
  }
  return { busyMs: busy / 1000, idleMs: idle / 1000, functions: ranked(functions, busy, top), modules: ranked(modules, busy, top) }
}

export function formatSummary (summary: ProfileSummary): string {
  const rows = (items: readonly SelfTime[]): string[] =>
    items.map((item) => `  ${(item.share * 100).toFixed(1).padStart(5)} %  ${item.ms.toFixed(0).padStart(7)} ms  ${item.name}`)
  return [
    `busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms`,
    'self time by function:',
    ...rows(summary.functions),
    'self time by module:',
    ...rows(summary.modules)
  ].join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' }, window: { type: 'string' } }, allowPositionals: true })
  const window = values.window === undefined ? undefined : JSON.parse(readFileSync(values.window, 'utf8')) as ProfileWindow
  for (const file of positionals) process.stdout.write(`${file}\n${formatSummary(summariseProfile(file, Number(values.top), window))}\n`)
}
