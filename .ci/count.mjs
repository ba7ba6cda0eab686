// Counts the assertions of the last tap run from its raw TAP files (.tap/test-results) and prints
// `passed failed skipped` for .ci/run. A subtest's closing point summarises its children and is
// not counted again; a file that failed without a failing assertion (a crash, a timeout) counts as
// one failure.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import process from 'node:process'
import { Parser } from 'tap-parser'

const root = process.argv[2] ?? '.tap/test-results'

async function files (dir) {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  const nested = await Promise.all(entries.map((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? files(path) : Promise.resolve(entry.name.endsWith('.tap') ? [path] : [])
  }))
  return nested.flat()
}

function count (text) {
  return new Promise((resolve) => {
    const totals = { passed: 0, failed: 0, skipped: 0 }
    const watch = (parser) => {
      let childOpen = false
      parser.on('child', (child) => { childOpen = true; watch(child) })
      parser.on('assert', (result) => {
        if (childOpen) { childOpen = false; return }
        if (result.skip || result.todo) totals.skipped++
        else if (result.ok) totals.passed++
        else totals.failed++
      })
    }
    const parser = new Parser((results) => {
      if (!results.ok && totals.failed === 0) totals.failed = 1
      resolve(totals)
    })
    watch(parser)
    parser.end(text)
  })
}

const totals = { passed: 0, failed: 0, skipped: 0 }
const found = await files(root)
for (const file of found) {
  const result = await count(await readFile(file, 'utf8'))
  for (const key of Object.keys(totals)) totals[key] += result[key]
}
if (found.length === 0) totals.failed = 1
process.stdout.write(`${totals.passed} ${totals.failed} ${totals.skipped} ${found.length}\n`)
