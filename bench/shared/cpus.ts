// Which CPUs a process may use, as Linux lists them, for `--pin` and for the record every round
// keeps of where its server and load generator ran.
import { readFileSync } from 'node:fs'

/** The CPUs of a list as the kernel and taskset write it ("0-3,8"), one by one. */
export function cpuList (text: string): number[] {
  return text.split(',').flatMap((part) => {
    const [from, to = from] = part.split('-').map(Number) as [number, number?]
    return Array.from({ length: to - from + 1 }, (_, i) => from + i)
  })
}

/** The CPUs a running process may use (`Cpus_allowed_list`), or undefined where that cannot be read. */
export function allowedCpus (pid: number | undefined): string | undefined {
  if (pid === undefined) return undefined
  try {
    return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  } catch {
    return undefined
  }
}
