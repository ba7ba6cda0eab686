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

t.test('`stopped` settles on the stop, whether it was asked for before or after', async (t) => {
  const early = new RunStopper()
  let settled = false
  const waiting = early.stopped.then(() => { settled = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(settled, false, 'not before the stop')
  early.stop('disconnected')
  await waiting
  t.equal(settled, true)
  t.equal(early.signal.aborted, true, 'the signal made later agrees')

  const late = new RunStopper()
  late.stop('shutdown')
  await late.stopped
  t.pass('a stopper stopped before anyone waited settles at once')
})
