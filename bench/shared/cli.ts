// The command lines of the bench's scripts (npm run bench, bench:engine): what they refuse, and how.

/** A command line a script cannot run: said in one line with the usage, exit code 2. */
export class UsageError extends Error {}

/** `text` as a whole number ≥ 1, or a UsageError naming the option. */
export function positiveInteger (name: string, text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`${name}: expected a positive whole number, got "${text}"`)
  return value
}
