// Garbage collections on demand, for the tests that measure what the heap keeps or what the
// collector does. The flag set at run time is enough for V8 to hand out its `gc` function to a
// new context.
import v8 from 'node:v8'
import vm from 'node:vm'

v8.setFlagsFromString('--expose-gc')

const collect = vm.runInNewContext('gc') as (options?: { type: 'major' | 'minor', execution: 'sync' }) => void

/** Runs a full garbage collection. */
export const gc = (): void => { collect() }

/** Runs a scavenge (a collection of the young generation only), before returning. */
export const scavenge = (): void => { collect({ type: 'minor', execution: 'sync' }) }
