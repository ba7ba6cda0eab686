// The embedded EventStore: one process, no dependencies. Runs live in a Map; a finished run's
// history expires `historyTtlMs` after it ends, leaving a small tombstone so its owner is told
// HISTORY_EXPIRED rather than NOT_FOUND. Being the only node, it executes every run itself.
// Its size is bounded, in total and per user: past a bound, the oldest finished runs are evicted
// early (their owners are then told HISTORY_EXPIRED too) — the over-budget user's own first, so
// one heavy user cannot push out anyone else's history before their own.
import { randomUUID } from 'node:crypto'
import { encodeRunEvent, eventTimestamp, runFrameHead, type RunEventType, type TerminalStatus } from '../protocol.js'
import { FrameLog } from './frame-log.js'
import type { CreateLimits, CreateResult, EventListener, EventStore, NewRun, RunLookup, RunMeta, StoredEvent, StoreSubscription } from '../contracts.js'

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
}

/**
 * What the store keeps of one owner, in one place: the runs running, the bytes of history held,
 * the finished runs in the order they ended (for evicting an owner's oldest first). A run holds
 * its owner's account, so an event's bookkeeping is a field update, not a lookup.
 */
interface OwnerAccount {
  active: number
  bytes: number
  readonly ended: MemoryRun[]
}

interface MemoryRun {
  /** Everything but lastSeq, which is the length of the log. */
  meta: Omit<RunMeta, 'lastSeq'>
  readonly owner: OwnerAccount
  readonly head: string
  readonly events: FrameLog
  readonly listeners: Set<EventListener>
  endedAtMs: number
  bytes: number
  /** Evicted before its TTL: already gone from `runs`, skipped where the queues still hold it. */
  evicted: boolean
}

const DAY_MS = 86_400_000

const READY: Promise<void> = Promise.resolve()

export function createMemoryStore (options: MemoryStoreOptions): EventStore {
  const nodeId = options.nodeId ?? randomUUID()
  const now = options.now ?? Date.now
  let onStop: (runId: string) => void = () => {}
  const ttl = options.historyTtlMs
  const tombstoneTtl = options.tombstoneTtlMs ?? Math.max(DAY_MS, ttl)
  const maxTombstones = options.maxTombstones ?? 100_000
  const runs = new Map<string, MemoryRun>()
  // Ended runs in the order they ended: with one TTL for all, the oldest is always first.
  const ended: MemoryRun[] = []
  let endedHead = 0
  const tombstones = new Map<string, { ownerId: string, at: number }>()
  /** Each owner's latest run on each thread, by threadKey. */
  const threadRuns = new Map<string, string>()
  const threadKey = (ownerId: string, threadId: string): string => `${threadId}\n${ownerId}`
  let closed = false
  const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
  const maxBytesPerOwner = options.maxBytesPerOwner ?? Number.POSITIVE_INFINITY
  let totalBytes = 0
  const owners = new Map<string, OwnerAccount>()

  function accountOf (ownerId: string): OwnerAccount {
    let account = owners.get(ownerId)
    if (account === undefined) {
      account = { active: 0, bytes: 0, ended: [] }
      owners.set(ownerId, account)
    }
    return account
  }

  /** Forgets an owner that has nothing left here. */
  function settle (ownerId: string, account: OwnerAccount): void {
    if (account.active === 0 && account.bytes <= 0 && account.ended.length === 0 && owners.get(ownerId) === account) owners.delete(ownerId)
  }

  function forget (run: MemoryRun, t: number): void {
    runs.delete(run.meta.runId)
    const thread = threadKey(run.meta.ownerId, run.meta.threadId)
    if (threadRuns.get(thread) === run.meta.runId) threadRuns.delete(thread)
    run.listeners.clear()
    tombstones.set(run.meta.runId, { ownerId: run.meta.ownerId, at: t })
    totalBytes -= run.bytes
    const { owner } = run
    owner.bytes -= run.bytes
    // Runs end, and are forgotten, in the same order (one TTL; eviction takes the oldest first).
    if (owner.ended[0] === run) owner.ended.shift()
    settle(run.meta.ownerId, owner)
  }

  function evict (run: MemoryRun): void {
    run.evicted = true
    forget(run, now())
  }

  /** The oldest finished run of an owner, or of anyone, still held. */
  function oldestFinished (owner?: OwnerAccount): MemoryRun | undefined {
    if (owner !== undefined) return owner.ended[0]
    while (endedHead < ended.length && (ended[endedHead] as MemoryRun).evicted) endedHead++
    return ended[endedHead]
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
    while (endedHead < ended.length) {
      const run = ended[endedHead] as MemoryRun
      if (!run.evicted && run.endedAtMs + ttl > t) break
      endedHead++
      if (!run.evicted) forget(run, t)
    }
    if (endedHead > 1024 && endedHead * 2 > ended.length) {
      ended.splice(0, endedHead)
      endedHead = 0
    }
    for (const [runId, tombstone] of tombstones) {
      if (tombstones.size <= maxTombstones && tombstone.at + tombstoneTtl > t) break
      tombstones.delete(runId)
    }
  }
  // Lookups sweep lazily, so expiry is exact; the timer only frees memory of idle stores.
  const timer = setInterval(sweep, Math.min(Math.max(ttl, 1000), 60_000))
  timer.unref()

  function live (runId: string): MemoryRun {
    const run = runs.get(runId)
    if (run === undefined || run.meta.status !== 'running') {
      throw new Error(`cannot append to run ${runId}: ${run === undefined ? 'unknown run' : 'run has ended'}`)
    }
    return run
  }

  function appendNow (runId: string, type: RunEventType, dataJson: string): StoredEvent {
    const run = live(runId)
    const seq = run.events.length + 1
    const at = now()
    const event = run.events.append(type, encodeRunEvent(run.head, type, seq, eventTimestamp(at), dataJson), at)
    const bytes = event.frame.length
    run.bytes += bytes
    totalBytes += bytes
    const { owner } = run
    owner.bytes += bytes
    if (owner.bytes > maxBytesPerOwner || totalBytes > maxBytes) enforceBounds(owner)
    for (const listener of run.listeners) {
      try {
        listener(event)
      } catch {
        // A subscriber's failure must not stop the log or the other subscribers.
      }
    }
    return event
  }

  return {
    nodeId,

    async createRun (newRun: NewRun, limits: CreateLimits): Promise<CreateResult> {
      sweep()
      if (runs.has(newRun.runId) || tombstones.has(newRun.runId)) throw new Error(`run ${newRun.runId} already exists`)
      const thread = threadKey(newRun.ownerId, newRun.threadId)
      const latest = threadRuns.get(thread)
      if (limits.exclusiveThread === true && latest !== undefined && runs.get(latest)?.meta.status === 'running') return { created: false, busyRunId: latest }
      const owner = owners.get(newRun.ownerId)
      const active = owner?.active ?? 0
      if (active >= limits.maxActivePerOwner) return { created: false, active }
      const account = owner ?? accountOf(newRun.ownerId)
      account.active++
      threadRuns.set(thread, newRun.runId)
      const meta = Object.freeze({ ...newRun, node: nodeId, status: 'running' as const, createdAt: new Date(now()).toISOString() })
      runs.set(newRun.runId, {
        meta,
        owner: account,
        head: runFrameHead(newRun.runId, newRun.threadId),
        events: new FrameLog(),
        listeners: new Set(),
        endedAtMs: 0,
        bytes: 0,
        evicted: false
      })
      return { created: true, meta: { ...meta, lastSeq: 0 } }
    },

    async getRun (runId: string): Promise<RunLookup> {
      sweep()
      const run = runs.get(runId)
      if (run !== undefined) return { state: 'found', meta: { ...run.meta, lastSeq: run.events.length } }
      const tombstone = tombstones.get(runId)
      return tombstone === undefined ? { state: 'missing' } : { state: 'expired', ownerId: tombstone.ownerId }
    },

    async threadRun (ownerId: string, threadId: string): Promise<RunMeta | undefined> {
      sweep()
      const run = runs.get(threadRuns.get(threadKey(ownerId, threadId)) ?? '')
      return run === undefined ? undefined : { ...run.meta, lastSeq: run.events.length }
    },

    async append (runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent> {
      return appendNow(runId, type, dataJson)
    },

    appendNow,

    async read (runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
      return runs.get(runId)?.events.read(afterSeq, limit) ?? []
    },

    subscribe (runId: string, listener: EventListener): StoreSubscription {
      // Listeners are called inside append, so a subscription is live at once and never resyncs.
      const listeners = runs.get(runId)?.listeners
      listeners?.add(listener)
      return { ready: READY, unsubscribe: () => { listeners?.delete(listener) } }
    },

    async endRun (runId: string, status: TerminalStatus): Promise<void> {
      const run = live(runId)
      const t = now()
      run.meta = Object.freeze({ ...run.meta, status, endedAt: new Date(t).toISOString() })
      run.endedAtMs = t
      run.events.seal()
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
