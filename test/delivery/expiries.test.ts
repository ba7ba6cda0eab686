// The expiry schedule: one timer closes every connection whose token ran out, at its second.
import { mock } from 'node:test'
import t from 'tap'
import { ExpirySchedule, type Expiring } from '../../src/delivery/expiries.js'

// Date and setTimeout on a clock the test moves (node:test's mock timers).
mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
t.teardown(() => { mock.timers.reset() })

/** Moves the clock in steps of 1 s (node:test's tick runs the timers at the end time of its step). */
function advance (ms: number): void {
  for (let left = ms; left > 0; left -= 1_000) mock.timers.tick(Math.min(1_000, left))
}

function recorder (): { expired: string[], item: (name: string) => Expiring } {
  const expired: string[] = []
  return { expired, item: (name) => ({ expire: () => { expired.push(`${name}@${Date.now()}`) } }) }
}

t.test('each item expires at its whole second, in order, never before', async (t) => {
  const schedule = new ExpirySchedule()
  const { expired, item } = recorder()
  // Added out of order, two in one second, one at a fraction of a second (rounded up).
  schedule.add(item('c'), 1_009_000)
  schedule.add(item('a'), 1_003_000)
  schedule.add(item('b1'), 1_005_000)
  schedule.add(item('b2'), 1_005_000)
  schedule.add(item('d'), 1_007_250)
  t.equal(schedule.size, 5)
  mock.timers.tick(2_999)
  t.same(expired, [], 'nothing is due before its second')
  mock.timers.tick(1)
  t.same(expired, ['a@1003000'])
  advance(10_000)
  t.same(expired, ['a@1003000', 'b1@1005000', 'b2@1005000', 'd@1008000', 'c@1009000'])
  t.equal(schedule.size, 0)
  schedule.stop()
})

t.test('a deleted item does not expire; re-added, it expires at its new second', async (t) => {
  const schedule = new ExpirySchedule()
  const { expired, item } = recorder()
  const refreshed = item('refreshed')
  const key = schedule.add(refreshed, Date.now() + 1_000)
  schedule.add(item('other'), Date.now() + 2_000)
  schedule.delete(refreshed, key)
  const later = schedule.add(refreshed, Date.now() + 5_000)
  advance(3_000)
  t.same(expired.map((entry) => entry.split('@')[0]), ['other'])
  schedule.delete(refreshed, later)
  advance(10_000)
  t.same(expired.map((entry) => entry.split('@')[0]), ['other'], 'deleted again: never expires')
  t.equal(schedule.size, 0)
  schedule.stop()
})

t.test('an item already due expires on the next turn; one beyond setTimeout\'s range still expires', async (t) => {
  const schedule = new ExpirySchedule()
  const { expired, item } = recorder()
  schedule.add(item('past'), Date.now() - 60_000)
  mock.timers.tick(0)
  t.same(expired.map((entry) => entry.split('@')[0]), ['past'])
  const farMs = Date.now() + 40 * 86_400_000
  schedule.add(item('far'), farMs)
  mock.timers.tick(2 ** 31 - 1)
  t.equal(expired.length, 1, 'not yet after the longest timer')
  mock.timers.tick(farMs - Date.now())
  t.same(expired.map((entry) => entry.split('@')[0]), ['past', 'far'])
  schedule.stop()
})

t.test('churn in one second leaves one entry for it, not one per add', async (t) => {
  const schedule = new ExpirySchedule()
  const { expired, item } = recorder()
  for (let i = 0; i < 10_000; i++) {
    const each = item(`c${i}`)
    schedule.delete(each, schedule.add(each, Date.now() + 3_000))
  }
  const last = item('last')
  schedule.add(last, Date.now() + 3_000)
  t.equal(schedule.size, 1)
  t.equal(schedule.queuedSeconds, 1)
  advance(3_000)
  t.same(expired.map((entry) => entry.split('@')[0]), ['last'])
  schedule.stop()
})
