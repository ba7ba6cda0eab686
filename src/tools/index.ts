import type { Tool } from '../contracts.js'
import { calculator } from './calculator.js'
import { factLookup } from './facts.js'
import { textStats } from './text-stats.js'
import { unitConverter } from './units.js'

export { calculator, factLookup, textStats, unitConverter }

/** The tools of the demo agent, ready for the tool-dispatcher's `tools` option. */
export const demoTools: readonly Tool[] = Object.freeze([calculator, unitConverter, factLookup, textStats])
