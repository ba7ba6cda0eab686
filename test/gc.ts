// A full garbage collection on demand, for the tests that measure what the heap keeps. The flag
// set at run time is enough for V8 to hand out its `gc` function to a new context.
import v8 from 'node:v8'
import vm from 'node:vm'

v8.setFlagsFromString('--expose-gc')

/** Runs a full garbage collection. */
export const gc = vm.runInNewContext('gc') as () => void
