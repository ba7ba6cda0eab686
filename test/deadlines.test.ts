// Deadlines on one timer: each falls due at its own time and in order, a removed one never does,
// and the list keeps no timer while it is empty (a process with no running run can exit) — or,
// unref'd, keeps one armed that holds no process, so that emptying and filling sets no timer.
import t from 'tap'
import { DeadlineList, type Deadline } from '../src/deadlines.js'
import type { Expiring } from '../src/delivery/expiries.js'
import { RunStopper } from '../src/engine/execute.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A target that records when it expired. */
function target (log: Array<{ name: string, at: number }>, name: string): Expiring {
  return { expire: () => { log.push({ name, at: performance.now() }) } }
}

/** Active handles of one kind, as Node counts them. */
function timers (): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
}

t.test('each deadline falls due timeoutMs after it was added, never before, in the order added', async (t) => {
  const list = new DeadlineList(40)
  const log: Array<{ name: string, at: number }> = []
  const added = new Map<string, number>()
  for (const name of ['a', 'b', 'c']) {
    added.set(name, performance.now())
    list.add(target(log, name))
    await sleep(15)
  }
  await sleep(80)
  t.same(log.map((entry) => entry.name), ['a', 'b', 'c'], 'each once, in order')
  for (const { name, at } of log) t.ok(at - (added.get(name) as number) >= 40 - 1, `${name}: not before its deadline`)
  t.equal(list.size, 0)
})

t.test('a removed deadline never falls due; the others still do', async (t) => {
  const list = new DeadlineList(30)
  const log: Array<{ name: string, at: number }> = []
  const first = list.add(target(log, 'first'))
  const middle = list.add(target(log, 'middle'))
  list.add(target(log, 'last'))
  // The first and the middle leave: the timer armed for the first must still serve the last.
  list.remove(first)
  list.remove(middle)
  list.remove(middle)
  t.equal(list.size, 1)
  await sleep(70)
  t.same(log.map((entry) => entry.name), ['last'])
  list.remove(first)
  t.equal(list.size, 0, 'removing one already gone changes nothing')
})

t.test('an empty list holds no timer, so a process with no running run can exit', async (t) => {
  const before = timers()
  const list = new DeadlineList(60_000)
  const deadlines = Array.from({ length: 1000 }, () => list.add({ expire: () => { t.fail('not due') } }))
  t.equal(timers(), before + 1, 'one timer for a thousand deadlines')
  for (const deadline of deadlines) list.remove(deadline)
  t.equal(timers(), before, 'none once the last left')
  list.add({ expire: () => { t.fail('cleared') } })
  list.clear()
  t.equal(timers(), before, 'none after clear')
  t.equal(list.size, 0)
})

t.test('unref\'d: the timer holds no process and stays armed when the list empties; deadlines still fall due', async (t) => {
  const before = timers()
  let set = 0
  const original = globalThis.setTimeout
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    set++
    return original(...args)
  }) as typeof setTimeout
  t.teardown(() => { globalThis.setTimeout = original })
  const list = new DeadlineList(30, { unref: true })
  // A write step waiting on Redis at a time: the list empties and fills again at every step.
  for (let i = 0; i < 1000; i++) list.remove(list.add({ expire: () => { t.fail('removed before due') } }))
  t.equal(set, 1, 'one timer for a list that emptied and filled again a thousand times')
  t.equal(timers(), before, 'and it keeps no process alive')
  const log: Array<{ name: string, at: number }> = []
  const added = performance.now()
  list.add(target(log, 'after emptying'))
  globalThis.setTimeout = original
  await sleep(100)
  t.same(log.map((entry) => entry.name), ['after emptying'], 'a deadline added after the list emptied falls due')
  t.ok((log[0]?.at ?? 0) - added >= 30 - 1, 'not before its time')
  t.equal(list.size, 0)
})

t.test('a target that ends its run while told (removing its deadline) or adds another leaves the list whole', async (t) => {
  const list = new DeadlineList(20)
  const log: string[] = []
  const own: Deadline = list.add({
    expire: () => {
      log.push('first')
      list.remove(own)
      list.add({ expire: () => { log.push('added while told') } })
    }
  })
  list.add({ expire: () => { log.push('second') } })
  await sleep(80)
  t.same(log, ['first', 'second', 'added while told'])
  t.equal(list.size, 0)
})

t.test('a run\'s stopper is stopped for TIMEOUT when its deadline passes', async (t) => {
  const list = new DeadlineList(10)
  const stopper = new RunStopper()
  list.add(stopper)
  await sleep(40)
  t.equal(stopper.reason, 'timeout')
  t.equal(stopper.signal.aborted, true)
})
