// The EventStore contract: every implementation runs these same tests.
import type { Test } from 'tap'
import { Compile } from 'typebox/compile'
import { RunEvent } from '../../src/protocol.js'
import type { EventStore, NewRun, StoredEvent } from '../../src/contracts.js'

export interface StoreFactory {
  /** A fresh store whose history expires `historyTtlMs` after a run ends. */
  (options: { historyTtlMs: number }): Promise<EventStore>
}

const validEvent = Compile(RunEvent)
const NO_LIMIT = { maxActivePerOwner: 1_000_000 }
let counter = 0
const newRun = (ownerId = 'alice'): NewRun => ({ runId: `run-${process.pid}-${Date.now()}-${++counter}`, threadId: 'thread-1', agent: 'demo', ownerId })
const data = (n: number): string => JSON.stringify({ thought: `step ${n}`, step: n })

export function eventStoreContract (t: Test, makeStore: StoreFactory): void {
  async function open (t: Test, historyTtlMs = 60_000): Promise<EventStore> {
    const store = await makeStore({ historyTtlMs })
    t.teardown(() => store.close())
    return store
  }

  t.test('createRun then getRun returns the metadata, running with lastSeq 0', async (t) => {
    const store = await open(t)
    const run = newRun()
    const result = await store.createRun(run, NO_LIMIT)
    t.match(result, { created: true, meta: { ...run, status: 'running', lastSeq: 0, node: store.nodeId } })
    t.ok(result.created && Number.isFinite(Date.parse(result.meta.createdAt)))
    t.match(await store.getRun(run.runId), { state: 'found', meta: { ...run, status: 'running', lastSeq: 0, node: store.nodeId } })
    t.same(await store.getRun('no-such-run'), { state: 'missing' })
    await t.rejects(store.createRun(run, NO_LIMIT), 'a runId is created once')
  })

  t.test('append assigns gapless seq from 1 and builds a valid wire frame', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    const appended: StoredEvent[] = []
    for (let n = 1; n <= 5; n++) appended.push(await store.append(run.runId, 'agent_thinking', data(n)))
    t.same(appended.map((e) => e.seq), [1, 2, 3, 4, 5])
    for (const event of appended) {
      t.ok(Buffer.isBuffer(event.frame), 'frames are bytes, encoded once')
      const parsed: unknown = JSON.parse(event.frame.toString('utf8'))
      t.ok(validEvent.Check(parsed), `frame ${event.seq} matches the RunEvent schema`)
      t.match(parsed, { type: 'agent_thinking', runId: run.runId, threadId: run.threadId, seq: event.seq, data: { step: event.seq } })
    }
    t.match(await store.getRun(run.runId), { state: 'found', meta: { lastSeq: 5 } })
  })

  t.test('concurrent appends to one run are assigned seq in call order', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.append(run.runId, 'agent_thinking', data(i + 1))))
    t.same(results.map((e) => e.seq), Array.from({ length: 200 }, (_, i) => i + 1))
    const read = await store.read(run.runId, 0, 1000)
    t.same(read.map((e) => (JSON.parse(e.frame.toString()) as { data: { step: number } }).data.step), Array.from({ length: 200 }, (_, i) => i + 1))
  })

  t.test('read returns events after a seq, in order, at most limit', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    for (let n = 1; n <= 10; n++) await store.append(run.runId, 'agent_thinking', data(n))
    t.same((await store.read(run.runId, 0, 100)).map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    t.same((await store.read(run.runId, 4, 3)).map((e) => e.seq), [5, 6, 7])
    t.same((await store.read(run.runId, 10, 100)), [])
    t.same((await store.read('no-such-run', 0, 100)), [])
  })

  t.test('subscribers receive every later append, in order, until they unsubscribe', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    await store.append(run.runId, 'agent_thinking', data(1))
    const seen: number[] = []
    const subscription = store.subscribe(run.runId, (event) => { seen.push(event.seq) })
    await subscription.ready
    for (let n = 2; n <= 6; n++) await store.append(run.runId, 'agent_thinking', data(n))
    const deadline = Date.now() + 5000
    while (seen.length < 5 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    t.same(seen, [2, 3, 4, 5, 6])
    subscription.unsubscribe()
    await store.append(run.runId, 'agent_thinking', data(7))
    await new Promise((resolve) => setTimeout(resolve, 50))
    t.same(seen, [2, 3, 4, 5, 6], 'nothing after unsubscribe')
  })

  t.test('a throwing subscriber affects neither the log nor other subscribers', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    const seen: number[] = []
    const failing = store.subscribe(run.runId, () => { throw new Error('subscriber bug') })
    const working = store.subscribe(run.runId, (event) => { seen.push(event.seq) })
    await Promise.all([failing.ready, working.ready])
    await store.append(run.runId, 'agent_thinking', data(1))
    const deadline = Date.now() + 5000
    while (seen.length < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    t.same(seen, [1])
    // Left alone, the throwing subscriber still cannot fail an append.
    working.unsubscribe()
    await t.resolves(store.append(run.runId, 'agent_thinking', data(2)), 'an append with only a throwing subscriber')
    t.same((await store.read(run.runId, 0, 10)).map((event) => event.seq), [1, 2], 'and the log has it')
    failing.unsubscribe()
  })

  t.test('endRun records the status; appends after it are refused', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    await store.append(run.runId, 'agent_completed', JSON.stringify({ status: 'completed', durationMs: 1 }))
    await store.endRun(run.runId, 'completed')
    t.match(await store.getRun(run.runId), { state: 'found', meta: { status: 'completed', lastSeq: 1, endedAt: String } })
    await t.rejects(store.append(run.runId, 'agent_thinking', data(2)))
    await t.rejects(store.append('no-such-run', 'agent_thinking', data(1)))
    t.equal((await store.read(run.runId, 0, 10)).length, 1, 'history stays readable')
  })

  t.test('endRun waits for the appends made before it: each is written, with its seq, before the run ends', async (t) => {
    const store = await open(t)
    const run = newRun()
    await store.createRun(run, NO_LIMIT)
    await store.append(run.runId, 'agent_thinking', data(1))
    const settled: string[] = []
    // Not awaited: still on their way when the run ends.
    const appends = [2, 3, 4].map(async (step) => {
      const event = await store.append(run.runId, 'agent_thinking', data(step))
      settled.push(`append ${event.seq}`)
      return event
    })
    await store.endRun(run.runId, 'completed')
    settled.push('end')
    t.same((await Promise.all(appends)).map((event) => event.seq), [2, 3, 4], 'each append written')
    t.same(settled, ['append 2', 'append 3', 'append 4', 'end'], 'before endRun resolved')
    t.match(await store.getRun(run.runId), { state: 'found', meta: { status: 'completed', lastSeq: 4 } })
    t.same((await store.read(run.runId, 0, 10)).map((event) => event.seq), [1, 2, 3, 4], 'and in the log')
  })

  t.test('history expires after the TTL, and the run is then reported as expired to its owner', async (t) => {
    const store = await open(t, 100)
    const run = newRun('bob')
    await store.createRun(run, NO_LIMIT)
    await store.append(run.runId, 'agent_started', JSON.stringify({ agent: 'demo', input: { message: 'hi' } }))
    await store.endRun(run.runId, 'completed')
    t.match(await store.getRun(run.runId), { state: 'found' })
    await new Promise((resolve) => setTimeout(resolve, 250))
    t.same(await store.getRun(run.runId), { state: 'expired', ownerId: 'bob' })
    t.same(await store.read(run.runId, 0, 10), [])
  })

  t.test('owners are compared exactly: ids that a UTF-8 store would fold together stay two owners', async (t) => {
    const store = await open(t, 50)
    // "\ud800" is not well-formed Unicode; encoded as UTF-8 it would become "\ufffd".
    const lone = newRun('\ud800')
    const replacement = newRun('\ufffd')
    const marker = newRun('\u0000x')
    for (const run of [lone, replacement, marker]) await store.createRun(run, { maxActivePerOwner: 1 })
    for (const run of [lone, replacement, marker]) {
      const found = await store.getRun(run.runId)
      t.ok(found.state === 'found' && found.meta.ownerId === run.ownerId, `${JSON.stringify(run.ownerId)} comes back exactly`)
    }
    t.match(await store.createRun(newRun('\ufffd'), { maxActivePerOwner: 1 }), { created: false, active: 1 }, 'each owner has its own count of runs in flight')
    for (const run of [lone, replacement, marker]) await store.endRun(run.runId, 'completed')
    await new Promise((resolve) => setTimeout(resolve, 150))
    for (const run of [lone, replacement, marker]) {
      const expired = await store.getRun(run.runId)
      t.ok(expired.state === 'expired' && expired.ownerId === run.ownerId, `${JSON.stringify(run.ownerId)} owns its expired run, exactly`)
    }
  })

  t.test('the runs an owner has in flight are limited, atomically, and an ended run frees its slot', async (t) => {
    const store = await open(t)
    const owner = `owner-${Date.now()}-${++counter}`
    const attempts = await Promise.all(Array.from({ length: 10 }, () => store.createRun(newRun(owner), { maxActivePerOwner: 3 })))
    const created = attempts.filter((result) => result.created)
    t.equal(created.length, 3, 'ten concurrent starts, three allowed')
    t.match(attempts.find((result) => !result.created), { created: false, active: 3 })
    t.match(await store.createRun(newRun(`${owner}-other`), { maxActivePerOwner: 3 }), { created: true }, 'other owners are counted apart')
    const first = created[0]
    if (first?.created !== true) throw new Error('unreachable')
    await store.endRun(first.meta.runId, 'completed')
    t.match(await store.createRun(newRun(owner), { maxActivePerOwner: 3 }), { created: true }, 'an ended run frees its slot')
    t.match(await store.createRun(newRun(owner), { maxActivePerOwner: 3 }), { created: false, active: 3 })
  })

  t.test('an exclusive thread admits one run of its owner at a time, atomically', async (t) => {
    const store = await open(t)
    const owner = `owner-${Date.now()}-${++counter}`
    const onThread = (ownerId: string, threadId: string): NewRun => ({ ...newRun(ownerId), threadId })
    const exclusive = { ...NO_LIMIT, exclusiveThread: true }
    const attempts = await Promise.all(Array.from({ length: 8 }, () => store.createRun(onThread(owner, 'chat-1'), exclusive)))
    const created = attempts.filter((result) => result.created)
    t.equal(created.length, 1, 'eight concurrent submits to one chat, one admitted')
    const first = created[0]
    if (first?.created !== true) throw new Error('unreachable')
    t.same(attempts.find((result) => !result.created), { created: false, busyRunId: first.meta.runId }, 'the refusal names the run in flight')
    t.match(await store.createRun(onThread(owner, 'chat-2'), exclusive), { created: true }, 'another thread of the owner is free')
    t.match(await store.createRun(onThread(`${owner}-other`, 'chat-1'), exclusive), { created: true }, 'another owner\'s thread of the same id is free')
    await store.endRun(first.meta.runId, 'completed')
    const next = await store.createRun(onThread(owner, 'chat-1'), exclusive)
    t.match(next, { created: true }, 'once the run ended, the thread takes the next')
    t.match(await store.createRun(onThread(owner, 'chat-1'), { maxActivePerOwner: 1_000_000 }), { created: true }, 'a run that does not ask for exclusivity is not refused')
    t.match(await store.createRun(onThread(owner, 'chat-3'), { maxActivePerOwner: 1, exclusiveThread: true }), { created: false, active: 3 }, 'the owner limit still applies')
  })

  t.test('threadRun finds the owner\'s latest run on a thread, running or ended, until its history expires', async (t) => {
    const store = await open(t, 200)
    const owner = `owner-${Date.now()}-${++counter}`
    const threadId = `chat-${counter}`
    t.equal(await store.threadRun(owner, threadId), undefined, 'a thread without runs has none')
    const first = { ...newRun(owner), threadId }
    await store.createRun(first, NO_LIMIT)
    t.match(await store.threadRun(owner, threadId), { runId: first.runId, status: 'running', ownerId: owner, threadId })
    t.equal(await store.threadRun(`${owner}-other`, threadId), undefined, 'another owner sees nothing on the same thread id')
    await store.append(first.runId, 'agent_thinking', data(1))
    await store.endRun(first.runId, 'completed')
    t.match(await store.threadRun(owner, threadId), { runId: first.runId, status: 'completed', lastSeq: 1 }, 'an ended run is still the latest')
    const second = { ...newRun(owner), threadId }
    await store.createRun(second, NO_LIMIT)
    t.match(await store.threadRun(owner, threadId), { runId: second.runId, status: 'running' }, 'the last created is the latest')
    await store.endRun(second.runId, 'cancelled')
    await new Promise((resolve) => setTimeout(resolve, 350))
    t.equal(await store.threadRun(owner, threadId), undefined, 'gone with its history')
  })

  t.test('a stop request reaches the node that executes the run', async (t) => {
    const store = await open(t)
    const stopped: string[] = []
    store.onStopRequest((runId) => { stopped.push(runId) })
    const run = newRun()
    const result = await store.createRun(run, NO_LIMIT)
    if (!result.created) throw new Error('not created')
    await store.requestStop(result.meta)
    const deadline = Date.now() + 5000
    while (stopped.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    t.same(stopped, [run.runId])
  })

  t.test('ping resolves while the store is open', async (t) => {
    const store = await open(t)
    await t.resolves(store.ping())
  })
}
