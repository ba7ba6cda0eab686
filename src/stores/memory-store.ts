// The embedded EventStore: one process, no dependencies. Runs live in a Map; a finished run's
// history expires `historyTtlMs` after it ends, leaving a small tombstone so its owner is told
// HISTORY_EXPIRED rather than NOT_FOUND. Being the only node, it executes every run itself.
// Its size is bounded, in total and per user: past a bound, the oldest finished runs are evicted
// early (their owners are then told HISTORY_EXPIRED too) — the over-budget user's own first, so
// one heavy user cannot push out anyone else's history before their own.
import { newId } from '../ids.js'
import { eventTimestamp, type RunEventType, type TerminalStatus } from '../protocol.js'
import { frameHeadBytes } from './frame-bytes.js'
import { FrameLog } from './frame-log.js'
import { createLogMemory, type LogMemory } from './log-memory.js'
import { Fifo } from './fifo.js'
import type { CreateLimits, CreateResult, EventListener, EventStore, NewRun, RunAppender, RunLookup, RunMeta, RunStatus, StoredEvent, StoreSubscription } from '../contracts.js'

export interface MemoryStoreOptions {
  historyTtlMs: number
  nodeId?: string
  /** Clock, for tests. */
  now?: () => number
  /** How long (and how many) expired runs are remembered as tombstones. */
  tombstoneTtlMs?: number
  maxTombstones?: number
  /** Bytes of history (event frames) kept in all; past it, finished runs are evicted. Default: unbounded. */
  maxBytes?: number
  /** Bytes of history one owner's runs may keep; past it, that owner's finished runs are evicted. Default: unbounded. */
  maxBytesPerOwner?: number
  /** Where the runs' logs get their bytes; for tests, to read what it counts. Default: one of the store's own. */
  logMemory?: LogMemory
}

/**
 * What the store keeps of one owner, in one place: the runs running, the bytes of history held,
 * the finished runs in the order they ended (for evicting an owner's oldest first), the latest
 * run on each of its threads. A run holds its owner's account, so an event's bookkeeping is a
 * field update, not a lookup.
 */
interface OwnerAccount {
  active: number
  bytes: number
  readonly ended: MemoryRun[]
  /**
   * The latest run on each thread, by thread id: a run held by the store (a forgotten run leaves
   * it). Not one map for all owners keyed by thread and owner together: that key was a string
   * built, then hashed, at each run's start and again when it was forgotten, and its lookups
   * went to a map of every thread the store holds.
   */
  readonly threads: Map<string, MemoryRun>
}

/** How a run's appends reach its store: one function per store, shared by its runs. */
type StoreAppend = (run: MemoryRun, type: RunEventType, dataJson: string) => StoredEvent

// A run is one object: its log (it is a FrameLog), its metadata as fields — given out as a fresh
// RunMeta by metaOf, built field by field: in V8 an object spread followed by more properties
// (`{ ...meta, lastSeq }`) costs 1.5–6 µs, measured at about a third of what creating a run cost
// — and the appender the emitter writes through. With thousands of runs streaming at once, each
// object an append reaches is a likely cache miss, so the run is not spread over several.
class MemoryRun extends FrameLog implements RunAppender, NewRun {
  status: RunStatus = 'running'
  /**
   * When it ended (epoch ms; 0 while running). Its timestamp is made when metadata is asked
   * for: a finished run keeps no string for it.
   */
  endedAtMs = 0
  bytes = 0
  /** Evicted before its TTL: already gone from `runs`, skipped where the queues still hold it. */
  evicted = false
  /** Its subscribers' listeners, replaced (never changed in place) on each change. */
  listeners: readonly EventListener[] = NO_LISTENERS
  /** Calls every listener: remade from `listeners` on each change, so that an append reads one field. */
  notify: EventListener = ignore

  constructor (
    readonly runId: string,
    readonly threadId: string,
    readonly agent: string,
    readonly ownerId: string,
    readonly createdAt: string,
    readonly owner: OwnerAccount,
    private readonly storeAppend: StoreAppend,
    memory: LogMemory
  ) {
    super(frameHeadBytes(runId, threadId), memory)
  }

  appendNow (type: RunEventType, dataJson: string): StoredEvent {
    return this.storeAppend(this, type, dataJson)
  }
}

/** What is left of an expired or evicted run: whose it was, so its owner is told HISTORY_EXPIRED. */
interface Tombstone {
  readonly runId: string
  readonly ownerId: string
  readonly at: number
}

const DAY_MS = 86_400_000

const READY: Promise<void> = Promise.resolve()
const NO_LISTENERS: readonly EventListener[] = []
const ignore: EventListener = () => {}

/** A subscription to a run: an object of one class, no closure per subscriber. */
class MemorySubscription implements StoreSubscription {
  readonly ready = READY
  #run: MemoryRun | undefined

  constructor (run: MemoryRun, readonly listener: EventListener) {
    this.#run = run
  }

  unsubscribe (): void {
    const run = this.#run
    if (run === undefined) return
    this.#run = undefined
    // One entry per subscription: a function subscribed twice is delivered to twice.
    const at = run.listeners.indexOf(this.listener)
    if (at < 0) return
    run.listeners = [...run.listeners.slice(0, at), ...run.listeners.slice(at + 1)]
    run.notify = notifierOf(run.listeners)
  }
}

/** The subscription to a run the store does not hold: nothing to deliver, nothing to undo. */
const NOT_SUBSCRIBED: StoreSubscription = Object.freeze({ ready: READY, unsubscribe: () => {} })

/** One function that calls each of `listeners`: none, the one itself, or a loop over several. */
function notifierOf (listeners: readonly EventListener[]): EventListener {
  if (listeners.length <= 1) return listeners[0] ?? ignore
  return (event) => {
    for (const listener of listeners) {
      try {
        listener(event)
      } catch {
        // A subscriber's failure must not stop the other subscribers.
      }
    }
  }
}

export function createMemoryStore (options: MemoryStoreOptions): EventStore {
  const nodeId = options.nodeId ?? newId()
  const now = options.now ?? Date.now
  let onStop: (runId: string) => void = () => {}
  const ttl = options.historyTtlMs
  const tombstoneTtl = options.tombstoneTtlMs ?? Math.max(DAY_MS, ttl)
  const maxTombstones = options.maxTombstones ?? 100_000
  const runs = new Map<string, MemoryRun>()
  // Ended runs in the order they ended: with one TTL for all, the oldest is always first.
  const ended = new Fifo<MemoryRun>()
  const tombstones = new Map<string, Tombstone>()
  // The same tombstones in the order they were made, which is the order they expire in.
  const tombstoneOrder = new Fifo<Tombstone>()
  let closed = false
  const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
  const maxBytesPerOwner = options.maxBytesPerOwner ?? Number.POSITIVE_INFINITY
  let totalBytes = 0
  const owners = new Map<string, OwnerAccount>()
  const logMemory = options.logMemory ?? createLogMemory()

  function accountOf (ownerId: string): OwnerAccount {
    let account = owners.get(ownerId)
    if (account === undefined) {
      account = { active: 0, bytes: 0, ended: [], threads: new Map() }
      owners.set(ownerId, account)
    }
    return account
  }

  /** Forgets an owner that has nothing left here. */
  function settle (ownerId: string, account: OwnerAccount): void {
    if (account.active === 0 && account.bytes <= 0 && account.ended.length === 0 && account.threads.size === 0 && owners.get(ownerId) === account) owners.delete(ownerId)
  }

  /** The run's metadata, as a new object the caller may keep. */
  function metaOf (run: MemoryRun): RunMeta {
    const { runId, threadId, agent, ownerId, status, createdAt } = run
    const lastSeq = run.length
    return status === 'running'
      ? { runId, threadId, agent, ownerId, node: nodeId, status, createdAt, lastSeq }
      : { runId, threadId, agent, ownerId, node: nodeId, status, createdAt, endedAt: eventTimestamp(run.endedAtMs), lastSeq }
  }

  function forget (run: MemoryRun, t: number): void {
    runs.delete(run.runId)
    const { owner } = run
    if (owner.threads.get(run.threadId) === run) owner.threads.delete(run.threadId)
    run.listeners = NO_LISTENERS
    run.notify = ignore
    const tombstone = { runId: run.runId, ownerId: run.ownerId, at: t }
    tombstones.set(run.runId, tombstone)
    tombstoneOrder.push(tombstone)
    run.release()
    totalBytes -= run.bytes
    owner.bytes -= run.bytes
    // Runs end, and are forgotten, in the same order (one TTL; eviction takes the oldest first).
    if (owner.ended[0] === run) owner.ended.shift()
    settle(run.ownerId, owner)
  }

  function evict (run: MemoryRun): void {
    run.evicted = true
    forget(run, now())
  }

  /** The oldest finished run of an owner, or of anyone, still held. */
  function oldestFinished (owner?: OwnerAccount): MemoryRun | undefined {
    if (owner !== undefined) return owner.ended[0]
    while (ended.peek()?.evicted === true) ended.shift()
    return ended.peek()
  }

  /** Brings the owner, then the store, back under their bounds, as far as finished runs allow. */
  function enforceBounds (owner: OwnerAccount): void {
    while (owner.bytes > maxBytesPerOwner) {
      const run = oldestFinished(owner)
      if (run === undefined) break
      evict(run)
    }
    while (totalBytes > maxBytes) {
      const run = oldestFinished(owner) ?? oldestFinished()
      if (run === undefined) break
      evict(run)
    }
  }

  function sweep (): void {
    const t = now()
    for (let run = ended.peek(); run !== undefined; run = ended.peek()) {
      if (!run.evicted && run.endedAtMs + ttl > t) break
      ended.shift()
      if (!run.evicted) forget(run, t)
    }
    for (let oldest = tombstoneOrder.peek(); oldest !== undefined; oldest = tombstoneOrder.peek()) {
      if (tombstones.size <= maxTombstones && oldest.at + tombstoneTtl > t) break
      tombstoneOrder.shift()
      if (tombstones.get(oldest.runId) === oldest) tombstones.delete(oldest.runId)
    }
  }
  // Lookups sweep lazily, so expiry is exact; the timer only frees memory of idle stores.
  const timer = setInterval(sweep, Math.min(Math.max(ttl, 1000), 60_000))
  timer.unref()

  function live (runId: string): MemoryRun {
    const run = runs.get(runId)
    if (run === undefined || run.status !== 'running') {
      throw new Error(`cannot append to run ${runId}: ${run === undefined ? 'unknown run' : 'run has ended'}`)
    }
    return run
  }

  function appendTo (run: MemoryRun, type: RunEventType, dataJson: string): StoredEvent {
    if (run.status !== 'running') throw new Error(`cannot append to run ${run.runId}: run has ended`)
    const event = run.append(type, dataJson, now())
    const bytes = event.frame.length
    run.bytes += bytes
    totalBytes += bytes
    const { owner } = run
    owner.bytes += bytes
    if (owner.bytes > maxBytesPerOwner || totalBytes > maxBytes) enforceBounds(owner)
    try {
      run.notify(event)
    } catch {
      // A subscriber's failure must not stop the log.
    }
    return event
  }

  return {
    nodeId,

    async createRun (newRun: NewRun, limits: CreateLimits): Promise<CreateResult> {
      sweep()
      if (runs.has(newRun.runId) || tombstones.has(newRun.runId)) throw new Error(`run ${newRun.runId} already exists`)
      const owner = owners.get(newRun.ownerId)
      if (limits.exclusiveThread === true) {
        const latest = owner?.threads.get(newRun.threadId)
        if (latest?.status === 'running') return { created: false, busyRunId: latest.runId }
      }
      const active = owner?.active ?? 0
      if (active >= limits.maxActivePerOwner) return { created: false, active }
      const account = owner ?? accountOf(newRun.ownerId)
      account.active++
      const run = new MemoryRun(newRun.runId, newRun.threadId, newRun.agent, newRun.ownerId, eventTimestamp(now()), account, appendTo, logMemory)
      runs.set(newRun.runId, run)
      account.threads.set(newRun.threadId, run)
      return { created: true, meta: metaOf(run) }
    },

    async getRun (runId: string): Promise<RunLookup> {
      sweep()
      const run = runs.get(runId)
      if (run !== undefined) return { state: 'found', meta: metaOf(run) }
      const tombstone = tombstones.get(runId)
      return tombstone === undefined ? { state: 'missing' } : { state: 'expired', ownerId: tombstone.ownerId }
    },

    async threadRun (ownerId: string, threadId: string): Promise<RunMeta | undefined> {
      sweep()
      const run = owners.get(ownerId)?.threads.get(threadId)
      return run === undefined ? undefined : metaOf(run)
    },

    async append (runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent> {
      return appendTo(live(runId), type, dataJson)
    },

    appender (runId: string): RunAppender {
      return live(runId)
    },

    async read (runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
      return runs.get(runId)?.read(afterSeq, limit) ?? []
    },

    subscribe (runId: string, listener: EventListener): StoreSubscription {
      // Listeners are called inside append, so a subscription is live at once and never resyncs.
      const run = runs.get(runId)
      if (run === undefined) return NOT_SUBSCRIBED
      run.listeners = [...run.listeners, listener]
      run.notify = notifierOf(run.listeners)
      return new MemorySubscription(run, listener)
    },

    async endRun (runId: string, status: TerminalStatus): Promise<void> {
      const run = live(runId)
      const t = now()
      run.status = status
      run.endedAtMs = t
      run.seal()
      ended.push(run)
      const { owner } = run
      owner.ended.push(run)
      owner.active--
      // A run over the bounds while it ran can be evicted now that it is finished.
      enforceBounds(owner)
    },

    sizeBytes: () => totalBytes,

    async requestStop (meta: RunMeta): Promise<void> {
      if (meta.node === nodeId) onStop(meta.runId)
    },

    onStopRequest (handler: (runId: string) => void): void {
      onStop = handler
    },

    async ping (): Promise<void> {
      if (closed) throw new Error('memory store is closed')
    },

    async close (): Promise<void> {
      closed = true
      clearInterval(timer)
    }
  }
}
