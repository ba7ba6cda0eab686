// The abort side of a run on its own. Its AbortSignal is made on first use, so what an agent or
// a tool sees must not depend on when it first looked: before the stop, after it, or never.
import t from 'tap'
import { RunError } from '../../src/contracts.js'
import { RunStopper } from '../../src/engine/execute.js'

t.test('a signal taken before the stop is aborted by it, with the reason as a RunError', async (t) => {
  const stopper = new RunStopper()
  const { signal } = stopper
  let heard = 0
  signal.addEventListener('abort', () => { heard++ })
  t.equal(signal.aborted, false)
  stopper.stop('timeout')
  t.equal(signal.aborted, true)
  t.equal(heard, 1, 'listeners are told once')
  t.ok(signal.reason instanceof RunError)
  t.equal((signal.reason as RunError).code, 'TIMEOUT')
  t.equal(stopper.signal, signal, 'always the same signal')
})

t.test('a signal first asked for after the stop is already aborted, for the first reason', async (t) => {
  const stopper = new RunStopper()
  stopper.stop('cancelled')
  stopper.stop('shutdown')
  t.equal(stopper.reason, 'cancelled', 'the first reason counts')
  t.equal(stopper.signal.aborted, true)
  t.equal((stopper.signal.reason as RunError).code, 'CANCELLED')
})

t.test('the onStop listener is told once, on the stop, whether it was registered before or after', async (t) => {
  const early = new RunStopper()
  let calls = 0
  early.onStop({ stopped: () => { calls++ } })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(calls, 0, 'not before the stop')
  early.stop('disconnected')
  t.equal(calls, 1, 'on the stop')
  early.stop('cancelled')
  t.equal(calls, 1, 'once: a second stop changes nothing')
  t.equal(early.signal.aborted, true, 'the signal made later agrees')

  const late = new RunStopper()
  late.stop('shutdown')
  let lateCalls = 0
  late.onStop({ stopped: () => { lateCalls++ } })
  t.equal(lateCalls, 1, 'a stopper stopped before anyone asked calls at once')

  const replaced = new RunStopper()
  const heard: string[] = []
  replaced.onStop({ stopped: () => { heard.push('first') } })
  replaced.onStop({ stopped: () => { heard.push('second') } })
  replaced.stop('timeout')
  t.same(heard, ['second'], 'a later registration replaces an earlier one')
})
