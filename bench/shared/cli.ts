// The command lines of the bench's scripts (npm run bench, bench:engine, bench:stream): what they
// refuse, and how.
import { parseArgs, type ParseArgsConfig } from 'node:util'

type OptionsSpec = NonNullable<ParseArgsConfig['options']>

/** A command line a script cannot run: said in one line with the usage, exit code 2. */
export class UsageError extends Error {}

/** The options of `argv` as `spec` declares them; anything else is a UsageError. */
export function parseOptions<const S extends OptionsSpec> (argv: readonly string[], spec: S): ReturnType<typeof parseArgs<{ args: string[], options: S }>>['values'] {
  try {
    return parseArgs({ args: [...argv], options: spec }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

/** `text` as a whole number ≥ 1, or a UsageError naming the option. */
export function positiveInteger (name: string, text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`${name}: expected a positive whole number, got "${text}"`)
  return value
}

/**
 * Runs the command line of a bench script that measures in its own process (bench:engine,
 * bench:stream): `parse` reads it (a UsageError: one line and the usage on stderr, exit code 2,
 * nothing run), then `run` measures and reports; an error of the run (a failed check, an app
 * that would not start) is said in one line, exit code 1.
 */
export async function runCommand<O> (name: string, usage: string, parse: (argv: readonly string[]) => O, run: (options: O) => Promise<void>): Promise<void> {
  let options: O
  try {
    options = parse(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`${name}: ${err.message}\n${usage}\n`)
    process.exitCode = 2
    return
  }
  try {
    await run(options)
  } catch (err) {
    process.stderr.write(`${name}: ${(err as Error).message}\n`)
    process.exitCode = 1
  }
}
