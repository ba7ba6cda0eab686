// The EventStore contract: the run's event log and its metadata. The bridge is its only caller.
// Implementations: memory-store.ts (embedded default). test/stores/contract.ts is the shared
// contract suite any implementation must pass.
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
}

/**
 * One logged event: its seq and type, and its complete wire frame as UTF-8 bytes — serialised
 * and encoded once, then written as is to every socket that receives it.
 */
export interface StoredEvent {
  readonly seq: number
  readonly type: RunEventType
  readonly frame: Buffer
}

export type RunLookup =
  | { readonly state: 'found', readonly meta: RunMeta }
  /** The run existed but its history is gone; only its owner may be told so. */
  | { readonly state: 'expired', readonly ownerId: string }
  | { readonly state: 'missing' }

export type EventListener = (event: StoredEvent) => void

export interface EventStore {
  /** Registers a new run (status `running`, lastSeq 0). Rejects if the runId exists. */
  createRun(run: NewRun): Promise<RunMeta>
  getRun(runId: string): Promise<RunLookup>
  /**
   * Appends an event whose `data` is already JSON. Assigns the next seq (gapless, starting at 1,
   * in call order for one run) and the timestamp, builds the frame, and notifies subscribers.
   * Rejects for an unknown or ended run.
   */
  append(runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent>
  /** Events with seq > afterSeq, in order, at most `limit`. Empty for an unknown run. */
  read(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]>
  /**
   * Live events of a run: the listener receives, in seq order, every event appended after
   * subscribe() returns. Returns the unsubscribe function.
   */
  subscribe(runId: string, listener: EventListener): () => void
  /** Marks the run ended; its history is kept for the configured TTL, then expires. */
  endRun(runId: string, status: TerminalStatus): Promise<void>
  /** Resolves when the store can serve requests; rejects with the reason otherwise. */
  ping(): Promise<void>
  close(): Promise<void>
}
