// The pauses V8's collector makes on a server's main thread over a measured window, read from
// Node's `gc` performance entries: scavenges (the young generation) apart from the rest (a full
// collection's final pause, incremental marking steps, weak callbacks). A pause holds every
// socket of the process, so the longest one in a window is a floor under a latency tail, and
// their sum is main-thread CPU the collector took. Work V8 does on its background threads
// (concurrent marking, the helpers of a parallel scavenge) is not a pause and is not counted here.
// What the scavenges found alive is counted too, from V8's heap statistics before and after each
// one (Node's GCProfiler): a scavenge's work is the bytes it copies, so two servers that scavenge
// as often can still pause for very different lengths.
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks'
import { GCProfiler } from 'node:v8'

export interface GcPauses {
  readonly scavenges: number
  readonly scavengeMs: number
  /** Every other pause: a full collection's, incremental marking's steps, weak callbacks. */
  readonly otherPauses: number
  readonly otherMs: number
  /** Of those, the full collections (mark-compact), which collect the young generation too. */
  readonly fullCollections: number
  /** The longest single pause, of either kind (0 when there was none). */
  readonly maxPauseMs: number
  /**
   * Bytes the window's scavenges found alive and moved: copied within the young generation or
   * promoted to the old one. Absent from builds before it was counted (a `--baseline`).
   */
  readonly scavengeKeptBytes?: number
}

interface Tally {
  scavenges: number
  scavengeMs: number
  otherPauses: number
  otherMs: number
  fullCollections: number
  maxPauseMs: number
}

const none = (): Tally => ({ scavenges: 0, scavengeMs: 0, otherPauses: 0, otherMs: 0, fullCollections: 0, maxPauseMs: 0 })

/** One collection as Node's GCProfiler reports it. */
type ProfiledGc = ReturnType<GCProfiler['stop']>['statistics'][number]

/** The young generation's spaces: what is in them after a scavenge is what it copied there. */
const YOUNG_SPACES = new Set(['new_space', 'new_large_object_space'])

/**
 * What one scavenge found alive: what the young generation holds after it (it was emptied but
 * for the survivors) and what every other space gained in it (what it promoted).
 */
function keptByScavenge (gc: ProfiledGc): number {
  const before = new Map(gc.beforeGC.heapSpaceStatistics.map((space) => [space.spaceName, space.spaceUsedSize]))
  let kept = 0
  for (const space of gc.afterGC.heapSpaceStatistics) {
    kept += YOUNG_SPACES.has(space.spaceName) ? space.spaceUsedSize : Math.max(0, space.spaceUsedSize - (before.get(space.spaceName) ?? 0))
  }
  return kept
}

/**
 * Counts the collector's pauses between `start()` and `stop()`. Node queues a `gc` entry to its
 * observers after the collection, in the check phase of the same turn of the event loop: a pause
 * in the turn that answers `stop` may be missed, one from before `start` is told apart by its time.
 */
export class GcPauseCounter {
  #from = Number.POSITIVE_INFINITY
  #tally = none()
  readonly #observer = new PerformanceObserver((list) => { this.#count(list.getEntries()) })
  #profiler: GCProfiler | undefined

  constructor () {
    this.#observer.observe({ entryTypes: ['gc'] })
  }

  start (): void {
    this.#count(this.#observer.takeRecords())
    this.#tally = none()
    this.#from = performance.now()
    this.#profiler?.stop()
    this.#profiler = new GCProfiler()
    this.#profiler.start()
  }

  stop (): GcPauses {
    this.#count(this.#observer.takeRecords())
    const tally = this.#tally
    this.#tally = none()
    this.#from = Number.POSITIVE_INFINITY
    const profiled = this.#profiler?.stop().statistics ?? []
    this.#profiler = undefined
    let scavengeKeptBytes = 0
    for (const gc of profiled) if (gc.gcType === 'Scavenge' || gc.gcType === 'MinorMarkSweep') scavengeKeptBytes += keptByScavenge(gc)
    return { ...tally, scavengeKeptBytes }
  }

  /** Stops observing, for good. */
  close (): void {
    this.#observer.disconnect()
    this.#profiler?.stop()
    this.#profiler = undefined
  }

  #count (entries: readonly PerformanceEntry[]): void {
    const tally = this.#tally
    for (const entry of entries) {
      if (entry.startTime < this.#from) continue
      // A gc entry's detail says which collection it was (Node 16 and later).
      const kind = (entry as PerformanceEntry & { readonly detail?: { readonly kind?: number } }).detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        tally.scavenges++
        tally.scavengeMs += entry.duration
      } else {
        tally.otherPauses++
        tally.otherMs += entry.duration
        if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) tally.fullCollections++
      }
      if (entry.duration > tally.maxPauseMs) tally.maxPauseMs = entry.duration
    }
  }
}
