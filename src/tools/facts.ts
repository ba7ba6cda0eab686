import { Type } from 'typebox'
import { defineTool } from '../contracts.js'
import { lookupFact } from '../knowledge/facts.js'

export const factLookup = defineTool({
  name: 'lookup_fact',
  description: 'Looks up a stable physical, astronomical or geographic fact (speed of light, Earth radius, ' +
    'distance to the Moon, boiling point of water, Avogadro constant, planets, Everest, ...) in a built-in table.',
  parameters: Type.Object({
    query: Type.String({ minLength: 1, maxLength: 200, description: 'The question or topic, e.g. "How far is the Moon?".' })
  }, { additionalProperties: false }),
  execute ({ query }) {
    return lookupFact(query)
  }
})
