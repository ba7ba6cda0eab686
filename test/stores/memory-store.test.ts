import { FrameLog } from '../../src/stores/frame-log.js'
import t from 'tap'
import type { EventStore } from '../../src/contracts.js'
import { encodeRunEvent, eventTimestamp, runFrameHead } from '../../src/protocol.js'
import { frameHeadBytes } from '../../src/stores/frame-bytes.js'
import { createMemoryStore } from '../../src/stores/memory-store.js'
import { createLogMemory } from '../../src/stores/log-memory.js'
import { eventStoreContract } from './contract.js'
import { gc } from '../gc.js'

t.test('the EventStore contract', async (t) => {
  eventStoreContract(t, async ({ historyTtlMs }) => createMemoryStore({ historyTtlMs }))
})

t.test('expiry follows the clock exactly, and tombstones are bounded', async (t) => {
  let now = 1_000_000
  const store = createMemoryStore({ historyTtlMs: 1000, now: () => now, tombstoneTtlMs: 5000, maxTombstones: 2 })
  t.teardown(() => store.close())
  for (const runId of ['a', 'b', 'c']) {
    await store.createRun({ runId, threadId: 't', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 10 })
    await store.endRun(runId, 'completed')
  }
  now += 999
  t.match(await store.getRun('a'), { state: 'found' }, 'not a millisecond early')
  now += 1
  t.same(await store.getRun('c'), { state: 'expired', ownerId: 'alice' })
  t.same(await store.getRun('b'), { state: 'expired', ownerId: 'alice' })
  t.same(await store.getRun('a'), { state: 'missing' }, 'beyond maxTombstones the oldest tombstone is forgotten')
  await t.rejects(store.createRun({ runId: 'b', threadId: 't', agent: 'demo', ownerId: 'x' }, { maxActivePerOwner: 10 }), 'a remembered id is not reused')
  now += 5000
  t.same(await store.getRun('c'), { state: 'missing' }, 'tombstones expire too')
  await t.resolves(store.createRun({ runId: 'c', threadId: 't', agent: 'demo', ownerId: 'x' }, { maxActivePerOwner: 10 }))
})

t.test('a closed store is not ready', async (t) => {
  const store = createMemoryStore({ historyTtlMs: 1000 })
  await store.close()
  await t.rejects(store.ping(), /closed/)
})

/** Where the frame logs of these tests get their bytes: one, as for the runs of one store. */
const memory = createLogMemory()

/** A frame log of a run, and the frames the protocol says it must hold. */
function frameLog (runId: string): { log: FrameLog, frame: (seq: number, at: number, dataJson: string, type?: 'agent_thinking' | 'agent_message') => string } {
  const head = runFrameHead(runId, `thread-${runId}`)
  return {
    log: new FrameLog(frameHeadBytes(runId, `thread-${runId}`), memory),
    frame: (seq, at, dataJson, type = 'agent_thinking') => encodeRunEvent(head, type, seq, eventTimestamp(at), dataJson)
  }
}

t.test('the frame log keeps every frame byte for byte across its chunks, before and after it is sealed', async (t) => {
  const { log, frame } = frameLog('run-1')
  const frames: string[] = []
  const types: string[] = []
  // Sizes from a few bytes to well past the first chunk, with multi-byte characters among them
  // (two-byte, three-byte and four-byte ones: the room check must hold for each).
  for (let i = 0; i < 600; i++) {
    const dataJson = JSON.stringify({ n: i, pad: `${'é'.repeat(i % 7)}${'€😀'.repeat(i % 5)}${'x'.repeat((i * 37) % 3000)}` })
    const type = i % 3 === 0 ? 'agent_message' : 'agent_thinking'
    frames.push(frame(i + 1, 1000 + i, dataJson, type))
    types.push(type)
    const event = log.append(type, dataJson, 1000 + i)
    t.equal(event.seq, i + 1)
    if (event.frame.toString('utf8') !== frames[i]) t.fail(`frame ${i + 1} as appended`)
  }
  const check = (label: string): void => {
    const all = [...log.read(0, 250), ...log.read(250, 250), ...log.read(500, 250)]
    t.equal(all.length, 600, `${label}: every event read`)
    t.ok(all.every((event, i) => event.seq === i + 1 && event.at === 1000 + i && event.type === types[i] && event.frame.toString('utf8') === frames[i]), `${label}: every frame, type and time identical, in seq order`)
    t.same(log.read(598, 10).map((event) => event.seq), [599, 600], `${label}: a read past the end stops at the end`)
  }
  check('open')
  log.seal()
  check('sealed')
})

t.test('a read from any seq, of any length, returns exactly those events, across chunk boundaries', async (t) => {
  const { log, frame } = frameLog('run-reads')
  const frames: string[] = []
  // Frames of very different sizes, so that chunk boundaries fall at many places between the
  // kept positions a read starts its walk from; two are larger than a chunk ever grows (256 KiB).
  for (let i = 0; i < 400; i++) {
    const dataJson = JSON.stringify({ n: i, pad: 'z'.repeat(i === 100 || i === 250 ? 300_000 : (i * 211) % 1700) })
    frames.push(frame(i + 1, 5000 + i, dataJson))
    log.append('agent_thinking', dataJson, 5000 + i)
  }
  const check = (label: string): void => {
    let wrong = 0
    for (let after = 0; after <= 401; after++) {
      for (const limit of [1, 2, 31, 32, 33, 100, 1000]) {
        const events = log.read(after, limit)
        const expected = Math.max(0, Math.min(limit, 400 - after))
        if (events.length !== expected || !events.every((event, i) => event.seq === after + i + 1 && event.at === 5000 + after + i && event.frame.toString('utf8') === frames[after + i])) wrong++
      }
    }
    t.equal(wrong, 0, `${label}: every (afterSeq, limit) read is exact`)
  }
  check('open')
  log.seal()
  check('sealed')
  t.same(log.read(-5, 2).map((event) => event.seq), [1, 2], 'a negative afterSeq reads from the start')
  t.same(log.read(10, 0), [], 'a limit of 0 reads nothing')
})

t.test('the log keeps its events off the JS heap: under 2 bytes of heap per event', async (t) => {
  const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
  const EVENTS = 200_000
  const logs = Array.from({ length: 20 }, (_, i) => new FrameLog(frameHeadBytes(`heap-${i}`, 'thread'), memory))
  const before = heap()
  // Interleaved, as when many runs stream at once.
  for (let i = 0; i < EVENTS; i++) (logs[i % logs.length] as FrameLog).append('agent_message', '{"delta":"tok"}', 1_700_000_000_000 + i)
  const perEvent = (heap() - before) / EVENTS
  // Measured: 0.9 (where every 32nd event's place and each chunk's Buffer object are); two
  // numbers per event in an array, as the log kept before, measured 18.6.
  t.ok(perEvent < 2, `${perEvent.toFixed(2)} bytes of heap per retained event`)
  t.equal(logs.reduce((sum, log) => sum + log.length, 0), EVENTS)
})

t.test('a sealed short log keeps a few hundred bytes of heap, its frames off it', async (t) => {
  const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
  const LOGS = 20_000
  const head = frameHeadBytes('run', 'thread')
  const logs: FrameLog[] = []
  const before = heap()
  for (let i = 0; i < LOGS; i++) {
    const log = new FrameLog(head, memory)
    log.append('agent_started', '{"agent":"demo","input":{"message":"go"}}', 1_700_000_000_000 + i)
    log.append('agent_thinking', '{"thought":"step 1","step":1}', 1_700_000_000_001 + i)
    log.append('agent_completed', '{"status":"completed"}', 1_700_000_000_002 + i)
    log.seal()
    logs.push(log)
  }
  const perLog = (heap() - before) / LOGS
  // Measured: about 280 (the log, its one-chunk array, the view of its bytes in a shared slab,
  // its place in the array above); about 410 when the array of chunks was grown by push, which
  // reserves room for 17.
  t.ok(perLog < 320, `${perLog.toFixed(0)} bytes of heap per sealed log of three events`)
  t.equal(logs.length, LOGS)
})

t.test('sealed short logs are packed into shared slabs, holding nothing of Node\'s buffer pool', async (t) => {
  const logs: Array<{ log: FrameLog, frames: string[] }> = []
  // The pools Node handed out slices of while the logs were live: a live log's first chunk is
  // a slice of the pool current when it was made (seen just before and just after).
  const pools = new Set<ArrayBufferLike>()
  let bytes = 0
  for (let r = 0; r < 300; r++) {
    pools.add(Buffer.allocUnsafe(1).buffer)
    const { log, frame } = frameLog(`run-${r}`)
    const frames: string[] = []
    // From one small frame to past the first chunk (a log of two chunks, the first pooled).
    for (let i = 0; i < 1 + (r % 12); i++) {
      const dataJson = `{"run":${r},"n":${i},"pad":"${'y'.repeat((r * 131 + i * 57) % 600)}"}`
      frames.push(frame(i + 1, i, dataJson))
      bytes += Buffer.byteLength(frames[i] as string)
      if (i === 0) pools.add(Buffer.allocUnsafe(1).buffer)
      log.append('agent_thinking', dataJson, i)
      if (i === 0) pools.add(Buffer.allocUnsafe(1).buffer)
    }
    log.seal()
    logs.push({ log, frames })
  }
  const read = logs.map(({ log }) => log.read(0, 100))
  t.ok(read.every((events, r) => events.length === logs[r]?.frames.length && events.every((event, i) => event.frame.toString('utf8') === logs[r]?.frames[i])), 'every frame of every sealed log is intact')
  const backing = new Set(read.flat().map((event) => event.frame.buffer))
  t.notOk([...backing].some((buffer) => pools.has(buffer)), "no sealed log keeps a pool of Node's (a finished run would hold memory other code allocated)")
  // Packed: a few slabs for all 300 logs, not a buffer per log.
  t.ok(backing.size <= Math.ceil(bytes / 32_768) + 2, `${backing.size} buffers hold ${bytes} bytes of 300 logs`)
})

t.test('bounded size: the over-budget owner loses their own oldest finished runs first, never running ones', async (t) => {
  const kib = 'x'.repeat(1000)
  const frame = JSON.stringify({ thought: kib })
  const store = createMemoryStore({ historyTtlMs: 3_600_000, maxBytes: 16_000, maxBytesPerOwner: 5_000 })
  t.teardown(() => store.close())
  async function finishedRun (runId: string, ownerId: string, events: number): Promise<void> {
    await store.createRun({ runId, threadId: 't', agent: 'demo', ownerId }, { maxActivePerOwner: 100 })
    for (let i = 0; i < events; i++) await store.append(runId, 'agent_thinking', frame)
    await store.endRun(runId, 'completed')
  }
  await finishedRun('bob-1', 'bob', 3)
  const bobBytes = store.sizeBytes?.() ?? 0
  t.ok(bobBytes > 3000 && bobBytes < 4000, `the store counts its frames (${bobBytes} bytes)`)
  await finishedRun('carol-1', 'carol', 3)
  await finishedRun('heavy-1', 'heavy', 3)
  await finishedRun('heavy-2', 'heavy', 3)
  t.same(await store.getRun('heavy-1'), { state: 'expired', ownerId: 'heavy' }, "past the owner's budget, the owner's oldest finished run is evicted")
  t.match(await store.getRun('heavy-2'), { state: 'found' })
  t.match(await store.getRun('bob-1'), { state: 'found' }, "and nobody else's")
  t.same(await store.read('heavy-1', 0, 10), [], 'its events are gone')

  // A running run is never evicted, even over the owner's budget: the bound holds once it ends.
  await store.createRun({ runId: 'heavy-3', threadId: 't', agent: 'demo', ownerId: 'heavy' }, { maxActivePerOwner: 100 })
  for (let i = 0; i < 6; i++) await store.append('heavy-3', 'agent_thinking', frame)
  t.match(await store.getRun('heavy-3'), { state: 'found', meta: { status: 'running', lastSeq: 6 } })
  t.same(await store.getRun('heavy-2'), { state: 'expired', ownerId: 'heavy' })
  t.match(await store.getRun('bob-1'), { state: 'found' }, 'still nobody else is evicted while the heavy user has runs to give up')
  await store.endRun('heavy-3', 'completed')
  t.same(await store.getRun('heavy-3'), { state: 'expired', ownerId: 'heavy' }, 'finished and over budget: evicted')

  // Past the total, with no finished run of the appending owner left: the oldest finished of anyone.
  await finishedRun('dave-1', 'dave', 4)
  await finishedRun('erin-1', 'erin', 4)
  await finishedRun('frank-1', 'frank', 4)
  t.ok((store.sizeBytes?.() ?? 0) <= 16_000, `the total stays within its bound (${store.sizeBytes?.() ?? 0} bytes)`)
  t.same(await store.getRun('bob-1'), { state: 'expired', ownerId: 'bob' }, 'the oldest finished run went first')
  t.match(await store.getRun('erin-1'), { state: 'found' })
  t.match(await store.getRun('frank-1'), { state: 'found' })
})

t.test('thousands of runs expire and are evicted in order; their tombstones are bounded and expire oldest first', async (t) => {
  let now = 1_000_000
  const frame = JSON.stringify({ thought: 'x'.repeat(200) })
  const total = 3000
  const keep = 400
  const maxTombstones = 2000
  // Ids of one width: every run's frame is the same size.
  const id = (i: number): string => `run-${String(i).padStart(5, '0')}`
  async function finishedRun (store: EventStore, i: number): Promise<void> {
    await store.createRun({ runId: id(i), threadId: 't', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 10 })
    await store.append(id(i), 'agent_thinking', frame)
    await store.endRun(id(i), 'completed')
  }
  // The bytes of one such run, to give the store room for `keep` of them.
  const probe = createMemoryStore({ historyTtlMs: 60_000 })
  await finishedRun(probe, 1000)
  const perRun = probe.sizeBytes?.() ?? 0
  await probe.close()
  const store = createMemoryStore({ historyTtlMs: 60_000, now: () => now, tombstoneTtlMs: 120_000, maxTombstones, maxBytes: perRun * keep })
  t.teardown(() => store.close())
  for (let i = 0; i < total; i++) {
    await finishedRun(store, i)
    now += 10
  }
  const states = async (from: number, to: number): Promise<Record<string, number>> => {
    const count: Record<string, number> = {}
    for (let i = from; i < to; i++) {
      const { state } = await store.getRun(id(i))
      count[state] = (count[state] ?? 0) + 1
    }
    return count
  }
  const evicted = total - keep
  t.same(await states(evicted, total), { found: keep }, 'the newest runs are kept, as many as the byte bound holds')
  t.same(await states(0, evicted - maxTombstones), { missing: evicted - maxTombstones }, 'past maxTombstones, the oldest tombstones are forgotten')
  t.same(await states(evicted - maxTombstones, evicted), { expired: maxTombstones }, 'the other evicted runs are remembered as expired')

  now += 60_000
  t.same(await states(total - maxTombstones, total), { expired: maxTombstones }, 'after the TTL the kept runs expire too')
  t.same(await states(0, total - maxTombstones), { missing: total - maxTombstones }, 'and the oldest tombstones make way for theirs')
  now += 120_000
  t.same(await states(0, total), { missing: total }, 'then the tombstones expire in turn')
  t.equal(store.sizeBytes?.(), 0, 'nothing of them is held')
})

t.test('run metadata: fields by status, and each lookup a new object', async (t) => {
  let now = Date.UTC(2026, 0, 2, 3, 4, 5, 6)
  const store = createMemoryStore({ historyTtlMs: 60_000, now: () => now, nodeId: 'node-1' })
  t.teardown(() => store.close())
  const created = await store.createRun({ runId: 'r', threadId: 'th', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 10 })
  t.same(created, {
    created: true,
    meta: { runId: 'r', threadId: 'th', agent: 'demo', ownerId: 'alice', node: 'node-1', status: 'running', createdAt: '2026-01-02T03:04:05.006Z', lastSeq: 0 }
  })
  await store.append('r', 'agent_thinking', '{"thought":"x","step":1}')
  now += 1500
  await store.endRun('r', 'cancelled')
  const first = await store.getRun('r')
  t.same(first, {
    state: 'found',
    meta: { runId: 'r', threadId: 'th', agent: 'demo', ownerId: 'alice', node: 'node-1', status: 'cancelled', createdAt: '2026-01-02T03:04:05.006Z', endedAt: '2026-01-02T03:04:06.506Z', lastSeq: 1 }
  })
  if (first.state === 'found') (first.meta as { status: string }).status = 'completed'
  t.match(await store.getRun('r'), { meta: { status: 'cancelled' } }, "a caller's change to its copy changes nothing in the store")
  t.match(await store.threadRun('alice', 'th'), { runId: 'r', status: 'cancelled', lastSeq: 1 })
})

t.test('a thread\'s latest run outlives the expiry and eviction of the runs before it, whoever else uses the thread id', async (t) => {
  let now = 1_000_000
  // Room for two of the runs below (each logs one event of about 1 KB), not three.
  const store = createMemoryStore({ historyTtlMs: 1000, now: () => now, maxBytesPerOwner: 2500 })
  t.teardown(() => store.close())
  const thought = JSON.stringify({ thought: 'x'.repeat(900), step: 1 })
  const start = async (runId: string, threadId: string, ownerId = 'alice'): Promise<void> => {
    await store.createRun({ runId, threadId, agent: 'demo', ownerId }, { maxActivePerOwner: 10 })
    await store.append(runId, 'agent_thinking', thought)
  }
  await start('first', 'chat')
  await store.endRun('first', 'completed')
  await start('dave-1', 'solo', 'dave')
  await store.endRun('dave-1', 'completed')
  // Thread ids are the clients' own: another owner may use the same one.
  await start('bob-1', 'chat', 'bob')
  now += 600
  await start('second', 'chat')
  await start('dave-2', 'solo', 'dave')
  t.match(await store.threadRun('alice', 'chat'), { runId: 'second', status: 'running' })
  t.match(await store.threadRun('bob', 'chat'), { runId: 'bob-1', status: 'running' }, 'each owner has its own latest run on the thread')
  await store.endRun('bob-1', 'completed')
  now += 600
  t.same(await store.getRun('first'), { state: 'expired', ownerId: 'alice' }, 'the first run\'s history expired')
  t.match(await store.threadRun('alice', 'chat'), { runId: 'second', status: 'running' }, 'its expiry left the thread\'s latest run in place')
  t.same(await store.getRun('dave-1'), { state: 'expired', ownerId: 'dave' })
  t.match(await store.threadRun('dave', 'solo'), { runId: 'dave-2', status: 'running' }, 'on a thread of one owner too')
  await store.endRun('second', 'completed')
  await start('third', 'chat')
  await store.endRun('third', 'failed')
  // Past the owner's bound, its oldest finished run goes first: the thread's latest stays.
  await start('another', 'other')
  await store.endRun('another', 'completed')
  t.same(await store.getRun('second'), { state: 'expired', ownerId: 'alice' }, 'evicted over the owner\'s bound')
  t.match(await store.threadRun('alice', 'chat'), { runId: 'third', status: 'failed' }, 'the eviction left the thread\'s latest run in place')
  t.equal(await store.threadRun('carol', 'chat'), undefined, 'an owner without runs on the thread has none')
  now += 500
  t.same(await store.getRun('bob-1'), { state: 'expired', ownerId: 'bob' })
  t.equal(await store.threadRun('bob', 'chat'), undefined, 'gone once its history expired')
  t.match(await store.threadRun('alice', 'chat'), { runId: 'third', status: 'failed' }, 'another owner\'s expiry on the same thread id left this one\'s in place')
  now += 500
  t.equal(await store.threadRun('alice', 'chat'), undefined, 'gone once its own history expired')
  t.equal(await store.threadRun('alice', 'other'), undefined)
  await start('again', 'chat')
  t.match(await store.threadRun('alice', 'chat'), { runId: 'again', status: 'running' }, 'a thread whose runs were all forgotten starts afresh')
  t.same(
    await store.createRun({ runId: 'busy', threadId: 'chat', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 10, exclusiveThread: true }),
    { created: false, busyRunId: 'again' },
    'and is exclusive again'
  )
  t.match(
    await store.createRun({ runId: 'bob-2', threadId: 'chat', agent: 'demo', ownerId: 'bob' }, { maxActivePerOwner: 10, exclusiveThread: true }),
    { created: true },
    'for its owner only'
  )
  t.match(await store.threadRun('alice', 'chat'), { runId: 'again' })
  t.match(await store.threadRun('bob', 'chat'), { runId: 'bob-2' })
})
