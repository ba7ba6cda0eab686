// The EventStore contract: each run's event log, its metadata, and what nodes must agree on —
// which node executes a run, how many runs a user has in flight, how to reach the executing node.
// The bridge is its only caller. Implementations: memory-store.ts (one process, the default) and
// redis-store.ts (any number of nodes). test/stores/contract.ts is the suite both must pass.
import type { RunEventType, TerminalStatus } from '../protocol.js'

export type RunStatus = 'running' | TerminalStatus

export interface NewRun {
  readonly runId: string
  readonly threadId: string
  readonly agent: string
  /** The user id of the owner: the only user whose connections may see the run. */
  readonly ownerId: string
}

export interface RunMeta extends NewRun {
  readonly status: RunStatus
  readonly createdAt: string
  readonly endedAt?: string
  /** Seq of the last event appended (0 before the first). */
  readonly lastSeq: number
  /** The node executing the run (the one that created it). */
  readonly node: string
}

/**
 * One logged event: its seq and type, and its complete wire frame as UTF-8 bytes — serialised
 * and encoded once, then written as is to every socket that receives it.
 */
export interface StoredEvent {
  readonly seq: number
  readonly type: RunEventType
  readonly frame: Buffer
  /** When it was appended (epoch ms, the `ts` of the frame). */
  readonly at: number
}

/** False when the run has ended and its last event has seq <= after: nothing more will come. */
export function hasEventsAfter (meta: RunMeta, after: number): boolean {
  return meta.status === 'running' || after < meta.lastSeq
}

export type RunLookup =
  | { readonly state: 'found', readonly meta: RunMeta }
  /** The run existed but its history is gone; only its owner may be told so. */
  | { readonly state: 'expired', readonly ownerId: string }
  | { readonly state: 'missing' }

export type EventListener = (event: StoredEvent) => void

export interface StoreSubscription {
  /** Resolves once every event appended from then on is sure to reach the listener. */
  readonly ready: Promise<void>
  unsubscribe(): void
}

export type CreateResult =
  | { readonly created: true, readonly meta: RunMeta }
  /** The owner already has `active` runs in flight, the limit. */
  | { readonly created: false, readonly active: number }

export interface EventStore {
  /** This node's id, recorded as the executing node of the runs it creates. */
  readonly nodeId: string
  /**
   * Registers a new run executed by this node (status `running`, lastSeq 0), unless its owner
   * already has `maxActivePerOwner` runs in flight — counted across every node, atomically, so
   * concurrent starts cannot overshoot. Rejects if the runId exists.
   */
  createRun(run: NewRun, limits: { maxActivePerOwner: number }): Promise<CreateResult>
  getRun(runId: string): Promise<RunLookup>
  /**
   * Appends an event whose `data` is already JSON. Assigns the next seq (gapless, starting at 1,
   * in call order for one run, unique even with concurrent writers) and the timestamp, builds the
   * frame, and notifies subscribers on every node. Rejects for an unknown or ended run.
   */
  append(runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent>
  /** Events with seq > afterSeq, in order, at most `limit`. Empty for an unknown run. */
  read(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]>
  /**
   * Live events of a run, in seq order, from any node. Once `ready` resolves, every event
   * appended later reaches `listener`. If the store cannot vouch for that any more (it lost and
   * regained its connection), it calls `onResync`: events may have been missed, read the log.
   */
  subscribe(runId: string, listener: EventListener, onResync?: () => void): StoreSubscription
  /** Marks the run ended (frees its owner's slot); its history is kept for the TTL, then expires. */
  endRun(runId: string, status: TerminalStatus): Promise<void>
  /** Asks the node executing a run to stop it (a `cancel` that arrived on another node). */
  requestStop(run: RunMeta): Promise<void>
  /** Receives the stop requests addressed to this node's runs. */
  onStopRequest(handler: (runId: string) => void): void
  /** Resolves when the store can serve requests; rejects with the reason otherwise. */
  ping(): Promise<void>
  close(): Promise<void>
}
