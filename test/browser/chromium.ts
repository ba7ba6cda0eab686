// Debian's chromium for the browser tests (driven by playwright-core, which never downloads one):
// required in CI, where a skip would count as a failure; skipped with a reason elsewhere.
import { existsSync } from 'node:fs'
import type { Test } from 'tap'

export const CHROMIUM = '/usr/bin/chromium'

/** The `skip` option of a browser test file: false when chromium is there. */
export function chromiumSkip (t: Test): false | string {
  if (existsSync(CHROMIUM)) return false
  if (process.env.CI !== undefined) {
    t.fail(`${CHROMIUM} is not installed: the browser tests are required in CI (.ci/run installs chromium)`)
    return false
  }
  return `${CHROMIUM} is not installed (apt-get install -y chromium); skipping the browser tests`
}
