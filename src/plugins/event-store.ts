// event-store: the one owner of the event store — chosen from config (src/stores/select.ts) or
// given by the host app, decorated as `fastify.eventStore`, closed when the app closes. Runs, the
// delivery path and readiness all reach the store here; nothing holds a store of its own.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { EventStore } from '../contracts.js'
import { createEventStore } from '../stores/select.js'

declare module 'fastify' {
  interface FastifyInstance {
    eventStore: EventStore
  }
}

export interface EventStorePluginOptions {
  /** A store to use instead of the one EVENT_STORE names (the plugin closes it on close). */
  store?: EventStore
}

async function eventStore (fastify: FastifyInstance, opts: EventStorePluginOptions): Promise<void> {
  const store = opts.store ?? createEventStore(fastify.config, fastify.log, {
    replicaAckShortfall: () => { fastify.telemetry.replicaAckShortfall() }
  })
  fastify.decorate('eventStore', store)
  const { sizeBytes } = store
  if (sizeBytes !== undefined) fastify.telemetry.countStoreBytesWith(() => sizeBytes())
  // onClose runs after every preClose step: the runs have ended and the sockets are closed.
  fastify.addHook('onClose', async () => {
    await store.close()
  })
}

export default fp(eventStore, { name: 'event-store', fastify: '5.x', dependencies: ['config', 'telemetry'] })
