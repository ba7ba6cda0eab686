// Order statistics for the benchmark's figures.

/** The q-quantile (0..1) of `values`, nearest rank; NaN when empty. */
export function quantile (values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

export function median (values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** The median of `values` with their range: how every figure of the benches is reported. */
export function spread (values: readonly number[]): { median: number, min: number, max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) }
}

/** What the ratios of two targets say, round by round: mechanical, not a judgement of the noise. */
export type PairedVerdict = 'below 1 in every round' | 'above 1 in every round' | '1 within the range' | 'one round: no range'

/** The ratio of one target's figure to another's, taken in each round both ran, with its median and range. */
export interface PairedRatio {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
  readonly verdict: PairedVerdict
}

/**
 * `a`'s figure over `b`'s, round by round (maps from round number to figure). A round counts when
 * both have a finite figure in it and `b`'s is not 0. Rounds run every target in turn, so the
 * two figures of a round met the same state of the host: the ratio's range shows what the host
 * moved both by, which the ratio of two medians taken separately does not. Undefined when no
 * round counts.
 */
export function pairedRatio (a: ReadonlyMap<number, number>, b: ReadonlyMap<number, number>): PairedRatio | undefined {
  const ratios: number[] = []
  for (const [round, value] of a) {
    const base = b.get(round)
    if (base === undefined || base === 0 || !Number.isFinite(base) || !Number.isFinite(value)) continue
    ratios.push(value / base)
  }
  if (ratios.length === 0) return undefined
  const { median: middle, min, max } = spread(ratios)
  const verdict: PairedVerdict = ratios.length === 1
    ? 'one round: no range'
    : max < 1 ? 'below 1 in every round' : min > 1 ? 'above 1 in every round' : '1 within the range'
  return { median: middle, min, max, n: ratios.length, verdict }
}
