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
