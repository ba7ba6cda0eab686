// The messages between the orchestrator (bench/run.ts), the load generator (bench/load.ts) and the
// server targets (bench/targets/*.ts), all over Node's IPC channel. The load generator asks the
// server for measurements through the orchestrator, which forwards requests and replies as is.
import type { GcPauses } from './gc-pauses.js'
import type { Schedule } from './plan.js'

export type ServerRequest = 'measure-start' | 'measure-stop' | 'memory'

export interface CpuMeasure {
  /** User + system CPU time of the server process over the window, in µs. */
  readonly cpuUs: number
  /** The system (kernel) part of it, in µs: mostly the socket writes. */
  readonly systemCpuUs: number
  readonly wallMs: number
  /** The collector's pauses on the main thread over the window. Absent from builds before it was reported. */
  readonly gc?: GcPauses
}

export interface MemoryMeasure {
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  /**
   * Node's count of the bytes of every ArrayBuffer, SharedArrayBuffers included, which V8's
   * `external` leaves out. Absent from builds before it was reported (a `--baseline`).
   */
  readonly arrayBuffers?: number
  /**
   * Bytes V8 holds for its young generation (the new space's size, used or not): it grows with
   * the allocation rate up to a per-version limit, a fixed part of the process's RSS. Absent from
   * builds before it was reported.
   */
  readonly youngGeneration?: number
}

export type ServerReply =
  | { readonly kind: 'started' }
  | ({ readonly kind: 'measure' } & CpuMeasure)
  | ({ readonly kind: 'memory' } & MemoryMeasure)

export type ServerMessage =
  | { readonly type: 'ready', readonly port: number }
  | { readonly type: 'reply', readonly id: number, readonly reply: ServerReply }

export type ToServer =
  | { readonly type: 'request', readonly id: number, readonly request: ServerRequest }
  | { readonly type: 'stop' }

export type WorkloadSpec =
  /**
   * Every user opens one connection and starts one run of `events` at once, emitted on `schedule`.
   * First, short runs on every connection at once, again and again until `warmupRuns` have
   * started (see 'start'), then runs of `warmupEvents`.
   */
  | { readonly kind: 'throughput', readonly users: number, readonly events: number, readonly bytes: number, readonly warmupRuns: number, readonly warmupEvents: number, readonly schedule: Schedule }
  /** `connections` authenticated connections (one user each) that do nothing, then one tiny run each. */
  | { readonly kind: 'idle', readonly connections: number, readonly settleMs: number }
  /** Paced runs: one event per run every `intervalMs` for `durationMs`, after `warmupRuns` short runs and `warmupMs` of paced ones. */
  | { readonly kind: 'latency', readonly users: number, readonly intervalMs: number, readonly durationMs: number, readonly warmupRuns: number, readonly warmupMs: number, readonly bytes: number, readonly content: 'thought' | 'token' }
  /**
   * `users` connections open first; then each starts one run of `events`, all within `spreadMs`.
   * Before the measured storm, the same storm again and again until `warmupRuns` runs have
   * started (one storm at least): a server's start path reaches its steady state only after
   * thousands of starts, and one storm left every server compiling and deoptimising in the window.
   */
  | { readonly kind: 'start', readonly users: number, readonly spreadMs: number, readonly events: number, readonly warmupRuns: number }
  /**
   * Connection scaling: `connections` authenticated connections (handshakes/s while they open),
   * idle memory, then short runs on every connection until `warmupRuns` have started (see
   * 'start'), then each connection's run paced at every interval of `intervalsMs` in turn, for
   * `phaseMs` each. Sockets come from 127.0.0.2 and up, SOURCE_SPREAD per address.
   */
  | { readonly kind: 'scale', readonly connections: number, readonly settleMs: number, readonly intervalsMs: readonly number[], readonly phaseMs: number, readonly warmupRuns: number }
  /** One finished run of `events`, replayed from seq 0 by a second connection `warmups + replays` times. */
  | { readonly kind: 'replay', readonly events: number, readonly bytes: number, readonly warmups: number, readonly replays: number }

export type ClientKind = 'ws' | 'socketio'

export interface LoadConfig {
  readonly client: ClientKind
  readonly url: string
  readonly secret: string
  readonly workload: WorkloadSpec
  /** Deadline for the whole workload; anything not delivered by then counts as lost. */
  readonly timeoutMs: number
}

/** Every count must be 0, or the round failed. */
export interface Correctness {
  lost: number
  duplicated: number
  outOfOrder: number
  misdelivered: number
  /** Runs that ended otherwise than `completed`, or were refused. */
  failedRuns: number
  /** Connections that could not be opened, or closed before the end. */
  failedConnections: number
}

export const CORRECTNESS_KEYS = ['lost', 'duplicated', 'outOfOrder', 'misdelivered', 'failedRuns', 'failedConnections'] as const

export interface LoadResult {
  readonly counts: Correctness
  /** Run events received in the measured window (all connections). */
  readonly delivered: number
  readonly metrics: Readonly<Record<string, number>>
}

export type LoadMessage =
  | { readonly type: 'request', readonly id: number, readonly request: ServerRequest }
  | { readonly type: 'result', readonly result: LoadResult }
