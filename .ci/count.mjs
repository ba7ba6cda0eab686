// Counts the assertions of the last tap run from its raw TAP files (.tap/test-results) and prints
// `passed failed skipped files` for .ci/run. A subtest's closing point summarises its children and
// is not counted again; a file that failed without a failing assertion (a crash, a timeout) counts
// as one failure. With `--report FILE`, it also appends to FILE a line per failed assertion (the
// test file and the names of the subtests leading to it) and the slowest test files, so that the
// end of CI's output says what failed and where the time went.
import { appendFile, readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import process from 'node:process'
import { parseArgs } from 'node:util'
import { Parser } from 'tap-parser'

const { values, positionals } = parseArgs({ options: { report: { type: 'string' }, label: { type: 'string', default: '' } }, allowPositionals: true })
const root = positionals[0] ?? '.tap/test-results'
const SLOWEST = 3

async function files (dir) {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  const nested = await Promise.all(entries.map((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? files(path) : Promise.resolve(entry.name.endsWith('.tap') ? [path] : [])
  }))
  return nested.flat()
}

/** The counts of one file's TAP, the names of its failed points and its time in ms. */
function count (text) {
  return new Promise((resolve) => {
    const totals = { passed: 0, failed: 0, skipped: 0 }
    const failures = []
    const watch = (parser, path) => {
      let child
      parser.on('child', (next) => { child = next; watch(next, [...path, next.name]) })
      parser.on('assert', (result) => {
        if (child !== undefined) {
          // The closing point of the subtest just parsed: its children were counted.
          child = undefined
          return
        }
        if (result.skip || result.todo) totals.skipped++
        else if (result.ok) totals.passed++
        else {
          totals.failed++
          failures.push([...path, result.name].filter((name) => name !== '').join(' > '))
        }
      })
    }
    const parser = new Parser((results) => {
      if (!results.ok && totals.failed === 0) {
        totals.failed = 1
        const reason = results.bailout ? `bailed out: ${results.bailout}` : 'failed without a failed assertion (a crash or a timeout)'
        failures.push(reason)
      }
      resolve({ totals, failures, time: results.time ?? 0 })
    })
    watch(parser, [])
    parser.end(text)
  })
}

const totals = { passed: 0, failed: 0, skipped: 0 }
const found = await files(root)
const report = []
const timed = []
for (const file of found) {
  const name = relative(root, file).replace(/\.tap$/, '')
  const result = await count(await readFile(file, 'utf8'))
  for (const key of Object.keys(totals)) totals[key] += result.totals[key]
  for (const failure of result.failures) report.push(`  not ok: ${name}: ${failure}`)
  timed.push([name, result.time])
}
if (found.length === 0) {
  totals.failed = 1
  report.push(`  not ok: no TAP results in ${root}`)
}
if (values.report !== undefined) {
  const slowest = timed.sort((a, b) => b[1] - a[1]).slice(0, SLOWEST).map(([name, ms]) => `${name} ${(ms / 1000).toFixed(1)} s`)
  const lines = [
    ...report.map((line) => `${values.label}${line}`),
    `${values.label}  slowest files: ${slowest.join(', ')}`
  ]
  await appendFile(values.report, `${lines.join('\n')}\n`)
}
process.stdout.write(`${totals.passed} ${totals.failed} ${totals.skipped} ${found.length}\n`)
