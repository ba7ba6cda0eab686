// ESLint flat config: @eslint/js + typescript-eslint's type-aware recommended rules, and the
// architecture guard (the local `agw` plugin in eslint-rules/) on src/. Which file may do what is
// decided here, and test/architecture.test.ts proves it.
import { defineConfig, globalIgnores } from 'eslint/config'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import agw from './eslint-rules/index.js'

const TS_FILES = ['src/**/*.ts', 'test/**/*.ts', 'scripts/**/*.ts', 'bench/**/*.ts']

// Who may import what under src/ (agw/import-boundaries): each folder behind a boundary is reached
// only through the plugin that owns it, so a concern cannot grow a second path around its owner.
const BOUNDARIES = [
  {
    module: 'src/stores/**',
    only: ['src/plugins/event-store.ts', 'src/index.ts'],
    reason: 'an event store implementation: the event-store plugin chooses and owns the store; use `fastify.eventStore` (the EventStore contract in src/contracts.ts)'
  },
  {
    module: 'src/engine/**',
    only: ['src/plugins/run-engine.ts'],
    reason: "the run engine's internals: ask `fastify.runEngine`"
  },
  {
    module: 'src/delivery/**',
    only: ['src/plugins/delivery.ts'],
    allowTypeImports: true,
    reason: "a step of the delivery path: use `fastify.delivery` (its types may be imported)"
  },
  {
    module: 'src/mcp/**',
    only: ['src/plugins/mcp-tools.ts', 'src/index.ts', 'src/app.ts'],
    allowTypeImports: true,
    reason: 'the MCP client: MCP servers become tools through the mcp-tools plugin; use `fastify.mcpServers`'
  },
  {
    module: 'src/tools/**',
    only: ['src/app.ts', 'src/agents/index.ts'],
    reason: 'a built-in tool: agents call tools by name through `tools.call`, never their code (what the demo agent and the demo tools both know is in src/knowledge/)'
  },
  {
    module: 'src/agents/**',
    not: ['src/tools/**', 'src/knowledge/**'],
    reason: 'an agent: tools and the knowledge they share with agents never depend on one'
  },
  {
    module: 'src/plugins/**',
    not: ['src/contracts.ts', 'src/protocol.ts', 'src/errors.ts', 'src/agents/**', 'src/tools/**', 'src/knowledge/**', 'src/stores/**', 'src/mcp/**', 'src/client/**'],
    reason: 'a plugin: contracts, agents, tools and stores are written against src/contracts.ts, never against the wiring'
  },
  {
    module: 'src/routes/**',
    only: ['src/app.ts'],
    reason: 'a route module: routes are composed once, by src/routes/index.ts'
  }
]

export default defineConfig([
  // Fixtures are deliberately bad code; test/architecture.test.ts lints them on purpose.
  globalIgnores(['dist/', 'dist-dev/', 'node_modules/', 'coverage/', '.tap/', 'test/fixtures/**']),

  {
    name: 'agw/javascript',
    files: ['**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended],
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module' }
  },

  {
    name: 'agw/typescript',
    files: TS_FILES,
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname
      }
    },
    rules: {
      // TypeScript resolves identifiers itself (and knows Node's globals from @types/node);
      // typescript-eslint recommends turning this core rule off for TS files.
      'no-undef': 'off',
      // Fastify's plugin and hook API is promise-based: an async plugin or hook with no `await`
      // is how Fastify says "no done callback" (fastify docs, Plugins / Hooks), not a mistake.
      '@typescript-eslint/require-await': 'off',
      // `_`-prefixed names mark parameters kept for a signature (Fastify handlers, hooks).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }]
    }
  },

  {
    name: 'agw/tests',
    files: ['test/**/*.ts'],
    rules: {
      // Tests poke at internals and feed deliberately wrong input: `any` casts and `!` are allowed.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // tap awaits its subtests itself: `t.test(...)` need not be awaited.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [
          { from: 'package', package: '@tapjs/test', name: ['test', 'only', 'skip', 'todo'] },
          { from: 'package', package: '@tapjs/core', name: ['test', 'only', 'skip', 'todo'] }
        ]
      }]
    }
  },

  // ---- The architecture guard (eslint-rules/index.js) ------------------------------------------
  {
    name: 'agw/architecture',
    files: ['src/**/*.ts'],
    plugins: { agw },
    rules: {
      'agw/no-process-env': 'error',
      'agw/socket-writes-only-in-sinks': 'error',
      'agw/import-boundaries': ['error', { boundaries: BOUNDARIES }]
    }
  },
  {
    name: 'agw/architecture/config-reads-env',
    // The one typed, validated reader of the environment.
    files: ['src/config.ts'],
    rules: { 'agw/no-process-env': 'off' }
  },
  {
    name: 'agw/architecture/sinks-write-sockets',
    files: [
      // The one writer to server sockets.
      'src/delivery/websocket-sink.ts',
      // The command-line client's socket is its own outgoing connection to the gateway, not one
      // of the gateway's sockets: sending its requests is that program's whole job.
      'src/cli/client.ts',
      // Likewise the client library (agent-gateway/client): it writes only to the connection it
      // opened to a gateway (a `ws` WebSocket in Node), never to a socket the server accepted.
      'src/client/**/*.ts'
    ],
    rules: { 'agw/socket-writes-only-in-sinks': 'off' }
  },
  {
    name: 'agw/architecture/plugins',
    files: ['src/plugins/**/*.ts'],
    rules: { 'agw/no-module-side-effects': 'error' }
  },
  {
    name: 'agw/architecture/contracts',
    // What host apps write against depends on the wire protocol's types and nothing else of ours.
    files: ['src/contracts.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ regex: '^\\.(?!/protocol\\.js$)', message: 'src/contracts.ts imports nothing of the gateway but the protocol\'s types: agents, tools and stores depend on it alone.' }]
      }]
    }
  }
])
