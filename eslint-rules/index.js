// The architecture guard: the house rules a linter can check, as a local ESLint plugin (`agw`). Each
// message states the rule and why it exists, so a reader needs nothing else to act on it. eslint.config.js decides which files each rule applies to;
// test/architecture.test.ts proves the rules and that wiring.
import { dirname, relative, resolve as resolvePath, sep } from 'node:path'
import { ESLintUtils } from '@typescript-eslint/utils'

/**
 * @typedef {import('eslint').Rule.RuleModule} RuleModule
 * @typedef {import('eslint').Rule.RuleContext} RuleContext
 * @typedef {import('eslint').Rule.Node} Node
 * @typedef {import('estree').MemberExpression} MemberExpression
 * @typedef {import('estree').ObjectPattern} ObjectPattern
 * @typedef {import('estree').Expression} Expression
 * @typedef {import('typescript').Type} TsType
 * @typedef {import('typescript').TypeChecker} TypeChecker
 */

/** Objects through which the global `process` can be reached. */
const GLOBAL_OBJECTS = new Set(['globalThis', 'global', 'window', 'self'])
const PROCESS_MODULES = new Set(['process', 'node:process'])
/** TypeScript-only wrappers around an expression that do not change the value. */
const TS_WRAPPERS = new Set(['TSAsExpression', 'TSNonNullExpression', 'TSTypeAssertion', 'TSSatisfiesExpression', 'TSInstantiationExpression'])

/**
 * The expression inside TypeScript casts, `!` and optional chains.
 * @param {any} node
 * @returns {any}
 */
function unwrap (node) {
  let current = node
  while (current !== null && current !== undefined && (TS_WRAPPERS.has(current.type) || current.type === 'ChainExpression')) {
    current = current.expression
  }
  return current
}

/**
 * The static name of a property key: `a.env`, `a['env']`, a`` `env` `` key; undefined when computed.
 * @param {any} key
 * @param {boolean} computed
 * @returns {string | undefined}
 */
function keyName (key, computed) {
  if (!computed && key.type === 'Identifier') return key.name
  if (key.type === 'Literal' && typeof key.value === 'string') return key.value
  if (key.type === 'TemplateLiteral' && key.expressions.length === 0) return key.quasis[0]?.value.cooked ?? undefined
  return undefined
}

/**
 * @param {any} node a MemberExpression
 * @returns {string | undefined}
 */
function memberName (node) {
  return node.type === 'MemberExpression' ? keyName(node.property, node.computed) : undefined
}

/**
 * The variable an identifier refers to, or undefined for an undeclared global.
 * @param {RuleContext} context
 * @param {any} identifier
 * @returns {import('eslint').Scope.Variable | undefined}
 */
function resolve (context, identifier) {
  /** @type {import('eslint').Scope.Scope | null} */
  let scope = context.sourceCode.getScope(identifier)
  while (scope !== null) {
    const variable = scope.set.get(identifier.name)
    if (variable !== undefined) return variable
    scope = scope.upper
  }
  return undefined
}

/**
 * True when `node` evaluates to the global object (`globalThis`, `global`, …) that is not shadowed.
 * @param {RuleContext} context
 * @param {any} node
 */
function isGlobalObject (context, node) {
  const inner = unwrap(node)
  if (inner?.type !== 'Identifier' || !GLOBAL_OBJECTS.has(inner.name)) return false
  const variable = resolve(context, inner)
  return variable === undefined || variable.defs.length === 0
}

/**
 * True when `node` evaluates to Node's `process` object: the global, `globalThis.process`, an import
 * of `node:process`, or a `const` initialised with one of those.
 * @param {RuleContext} context
 * @param {any} node
 * @param {number} [depth] guards against alias cycles
 * @returns {boolean}
 */
function isProcess (context, node, depth = 0) {
  const inner = unwrap(node)
  if (inner === undefined || inner === null || depth > 8) return false
  if (inner.type === 'MemberExpression') return memberName(inner) === 'process' && isGlobalObject(context, inner.object)
  if (inner.type !== 'Identifier') return false
  const variable = resolve(context, inner)
  // Undeclared (or declared only through `globals` in the config): the real global.
  if (variable === undefined || variable.defs.length === 0) return inner.name === 'process'
  const def = variable.defs[0]
  if (def === undefined) return false
  if (def.type === 'ImportBinding') {
    const declaration = /** @type {any} */ (def.parent)
    const fromProcess = PROCESS_MODULES.has(declaration?.source?.value)
    // `import process from 'node:process'` and `import * as process from 'node:process'`.
    return fromProcess && def.node.type !== 'ImportSpecifier'
  }
  if (def.type === 'Variable' && def.node.id.type === 'Identifier' && def.node.init !== null && def.node.init !== undefined) {
    return isProcess(context, def.node.init, depth + 1)
  }
  return false
}

// ---------------------------------------------------------------------------------------------

/** @type {RuleModule} */
const noProcessEnv = {
  meta: {
    type: 'problem',
    docs: {
      description: 'Only src/config.ts reads process.env; everything else takes `fastify.config`.'
    },
    schema: [],
    messages: {
      processEnv: 'process.env is read only in src/config.ts (configuration comes from one typed, validated place). ' +
        'Add the variable to ConfigSchema in src/config.ts and read it from `fastify.config` (or take it as a plugin option), ' +
        'so it has one type, one default, validation at start-up and a line in docs/configuration.md.'
    }
  },
  create (context) {
    /**
     * Reports `env` taken out of `process` by destructuring, also nested: `{ process: { env } } = globalThis`.
     * @param {any} pattern
     * @param {any} source
     * @param {'process' | 'global'} kind what `source` was found to be
     */
    function checkPattern (pattern, source, kind) {
      for (const property of pattern.properties) {
        if (property.type !== 'Property') continue
        const name = keyName(property.key, property.computed)
        if (kind === 'process' && name === 'env') {
          context.report({ node: property, messageId: 'processEnv' })
        } else if (kind === 'global' && name === 'process') {
          const value = property.value.type === 'AssignmentPattern' ? property.value.left : property.value
          if (value.type === 'ObjectPattern') checkPattern(value, source, 'process')
        }
      }
    }

    /**
     * @param {any} pattern
     * @param {any} source
     */
    function checkDestructuring (pattern, source) {
      if (pattern?.type !== 'ObjectPattern' || source === null || source === undefined) return
      if (isProcess(context, source)) checkPattern(pattern, source, 'process')
      else if (isGlobalObject(context, source)) checkPattern(pattern, source, 'global')
    }

    /** @param {any} node an import or re-export declaration */
    function checkModuleSpecifiers (node) {
      if (node.source === null || node.source === undefined || !PROCESS_MODULES.has(node.source.value)) return
      for (const specifier of node.specifiers) {
        const imported = specifier.type === 'ImportSpecifier' ? specifier.imported : specifier.type === 'ExportSpecifier' ? specifier.local : undefined
        if (imported !== undefined && keyName(imported, false) === 'env') context.report({ node: specifier, messageId: 'processEnv' })
      }
    }

    return {
      MemberExpression (node) {
        if (memberName(node) === 'env' && isProcess(context, node.object)) context.report({ node, messageId: 'processEnv' })
      },
      VariableDeclarator (node) { checkDestructuring(node.id, node.init) },
      AssignmentExpression (node) { checkDestructuring(node.left, node.right) },
      AssignmentPattern (node) { checkDestructuring(node.left, node.right) },
      ImportDeclaration: checkModuleSpecifiers,
      ExportNamedDeclaration: checkModuleSpecifiers
    }
  }
}

// ---------------------------------------------------------------------------------------------

const TIMERS = new Set(['setInterval', 'setTimeout', 'setImmediate'])
const FUNCTION_TYPES = new Set(['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression'])

/**
 * True when `node` runs while the module is evaluated: it is not inside a function body (a
 * function invoked on the spot, an IIFE, does not count as one), nor in an instance field
 * initialiser. Static field initialisers, static blocks and computed class keys run at load.
 * @param {any} node
 */
function runsAtModuleLoad (node) {
  /** @type {any} */
  let child = node
  let parent = node.parent
  while (parent !== null && parent !== undefined) {
    if (FUNCTION_TYPES.has(parent.type)) {
      const invoked = (parent.parent?.type === 'CallExpression' || parent.parent?.type === 'NewExpression') && unwrap(parent.parent.callee) === parent
      if (!invoked) return false
    }
    if ((parent.type === 'PropertyDefinition' || parent.type === 'AccessorProperty') && parent.value === child && parent.static !== true) {
      return false
    }
    child = parent
    parent = parent.parent
  }
  return true
}

/**
 * A short label for a callee in messages: `Map`, `timers.setTimeout`, `(expression)`.
 * @param {RuleContext} context
 * @param {any} callee
 */
function calleeLabel (context, callee) {
  const inner = unwrap(callee)
  if (inner.type === 'Identifier') return inner.name
  const text = context.sourceCode.getText(inner)
  return text.length <= 40 ? text : '(expression)'
}

/** @type {RuleModule} */
const noModuleSideEffects = {
  meta: {
    type: 'problem',
    docs: {
      description: 'Plugin modules create nothing and start no timer at import time.'
    },
    schema: [],
    messages: {
      construct: '`new {{callee}}(…)` runs when this plugin module is imported. Plugins create nothing at import time ' +
        '(factories, not singletons): create it inside the plugin function (or a function it calls) and release ' +
        'it in an onClose hook, so every Fastify instance owns its own and nothing is shared between apps or tests.',
      timer: '`{{callee}}(…)` starts a timer when this plugin module is imported. Plugins create nothing at import time ' +
        '(factories, not singletons): start it inside the plugin function and clear it in an onClose hook; ' +
        'a timer started at import keeps the process alive and is shared by every app instance.'
    }
  },
  create (context) {
    return {
      NewExpression (node) {
        if (runsAtModuleLoad(node)) context.report({ node, messageId: 'construct', data: { callee: calleeLabel(context, node.callee) } })
      },
      CallExpression (node) {
        const callee = unwrap(node.callee)
        const name = callee.type === 'Identifier' ? callee.name : memberName(callee)
        if (name !== undefined && TIMERS.has(name) && runsAtModuleLoad(node)) {
          context.report({ node, messageId: 'timer', data: { callee: calleeLabel(context, node.callee) } })
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

const SOCKET_METHODS = new Set(['send', 'ping', 'pong', 'close', 'terminate'])
const RAW_SOCKET_METHODS = new Set(['write', 'end', 'destroy'])

/**
 * True for the `WebSocket` class of the `ws` package (its own or @types/ws declarations).
 * @param {TypeChecker} checker
 * @param {import('typescript').Symbol | undefined} symbol
 */
function isWsWebSocketSymbol (checker, symbol) {
  if (symbol === undefined) return false
  // An import alias (`import { WebSocket as Ws }`) names the alias: look at what it stands for.
  // 2097152 is ts.SymbolFlags.Alias (stable since TypeScript 2; saves importing typescript here).
  const target = (symbol.flags & 2097152) !== 0 ? checker.getAliasedSymbol(symbol) : symbol
  if (target.getName() !== 'WebSocket') return false
  return (target.getDeclarations() ?? []).some((declaration) => {
    const file = declaration.getSourceFile().fileName.replaceAll('\\', '/')
    return file.includes('/ws/') || file.includes('@types/ws')
  })
}

/**
 * True when a value of `type` is a `ws` WebSocket: the class itself, a subclass, a union or
 * intersection containing one, or a type parameter constrained to one.
 * @param {TypeChecker} checker
 * @param {TsType} type
 * @param {Set<TsType>} [seen]
 * @returns {boolean}
 */
function isWsWebSocketType (checker, type, seen = new Set()) {
  if (seen.has(type)) return false
  seen.add(type)
  if (isWsWebSocketSymbol(checker, type.getSymbol()) || isWsWebSocketSymbol(checker, type.aliasSymbol)) return true
  if (type.isUnion() || type.isIntersection()) return type.types.some((part) => isWsWebSocketType(checker, part, seen))
  if (type.isTypeParameter()) {
    const constraint = checker.getBaseConstraintOfType(type)
    return constraint !== undefined && isWsWebSocketType(checker, constraint, seen)
  }
  // A class or interface (or an instantiation of a generic one): look at what it extends.
  /** @type {any} */
  const candidate = type
  const declared = candidate.isClassOrInterface() === true ? candidate : candidate.target?.isClassOrInterface?.() === true ? candidate.target : undefined
  if (declared === undefined) return false
  return checker.getBaseTypes(declared).some((base) => isWsWebSocketType(checker, base, seen))
}

/** @type {RuleModule} */
const socketWritesOnlyInSinks = {
  meta: {
    type: 'problem',
    docs: {
      description: 'Only the WebSocket sink (src/delivery/websocket-sink.ts) writes to (or closes) a ws WebSocket.'
    },
    schema: [],
    messages: {
      socketWrite: '`.{{method}}()` on a ws WebSocket outside src/delivery/websocket-sink.ts. The sinks are the only writers to ' +
        'sockets: every event reaches them logged and in seq order through the fan-out, whose per-subscription cursors and ' +
        'backpressure depend on it, so a write from anywhere else can reorder, duplicate or lose events. Go through the ' +
        'sink (the `WebSocketSink` from `fastify.delivery.attach()`: reply/close), or add the capability to ' +
        'src/delivery/websocket-sink.ts.',
      rawSocketWrite: '`._socket.{{method}}()` writes to the TCP socket under a ws WebSocket, bypassing ws framing and the ' +
        'WebSocket sink (the only writer to sockets, src/delivery/websocket-sink.ts). Go through the sink instead, or add ' +
        'the capability to src/delivery/websocket-sink.ts.'
    }
  },
  create (context) {
    const services = ESLintUtils.getParserServices(/** @type {any} */ (context))
    const checker = services.program.getTypeChecker()

    /**
     * True when `node`, or the expression inside a cast of it, is typed as a ws WebSocket.
     * @param {any} node
     */
    function isWebSocket (node) {
      let current = node
      for (;;) {
        if (isWsWebSocketType(checker, services.getTypeAtLocation(current))) return true
        if (!TS_WRAPPERS.has(current.type) && current.type !== 'ChainExpression') return false
        current = current.expression
      }
    }

    return {
      CallExpression (node) {
        const callee = unwrap(node.callee)
        if (callee?.type !== 'MemberExpression') return
        const method = memberName(callee)
        if (method === undefined) return
        if (SOCKET_METHODS.has(method) && isWebSocket(callee.object)) {
          context.report({ node, messageId: 'socketWrite', data: { method } })
          return
        }
        const target = unwrap(callee.object)
        if (RAW_SOCKET_METHODS.has(method) && memberName(target) === '_socket' && isWebSocket(target.object)) {
          context.report({ node, messageId: 'rawSocketWrite', data: { method } })
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * A glob over repository paths (`*` within a segment, `**` across segments) as a RegExp.
 * @param {string} glob
 */
function globRegExp (glob) {
  let source = ''
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]
    if (char === '*' && glob[i + 1] === '*') {
      source += '.*'
      i++
      if (glob[i + 1] === '/') i++
    } else if (char === '*') {
      source += '[^/]*'
    } else {
      source += char.replace(/[.+?^${}()|[\]\\]/g, '\\$&')
    }
  }
  return new RegExp(`^${source}$`)
}

/**
 * @typedef {{ module: string, only?: string[], not?: string[], allowTypeImports?: boolean, reason: string }} Boundary
 */

/** @type {RuleModule} */
const importBoundaries = {
  meta: {
    type: 'problem',
    docs: {
      description: 'Modules behind a boundary are imported only by the files that own them (see eslint.config.js).'
    },
    schema: [{
      type: 'object',
      properties: {
        boundaries: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              module: { type: 'string' },
              only: { type: 'array', items: { type: 'string' } },
              not: { type: 'array', items: { type: 'string' } },
              allowTypeImports: { type: 'boolean' },
              reason: { type: 'string' }
            },
            required: ['module', 'reason'],
            additionalProperties: false
          }
        }
      },
      additionalProperties: false
    }],
    messages: {
      crossed: '{{file}} imports {{target}}, which is {{reason}}.'
    }
  },
  create (context) {
    const cwd = context.cwd
    const file = relative(cwd, context.filename).split(sep).join('/')
    /** @type {Boundary[]} */
    const boundaries = context.options[0]?.boundaries ?? []
    const rules = boundaries.map((boundary) => ({
      ...boundary,
      module: globRegExp(boundary.module),
      only: boundary.only?.map(globRegExp),
      not: boundary.not?.map(globRegExp)
    }))

    /**
     * @param {any} node the import or export declaration, or the dynamic import
     * @param {any} source its source literal
     * @param {boolean} typeOnly
     */
    function check (node, source, typeOnly) {
      if (source?.type !== 'Literal' || typeof source.value !== 'string' || !source.value.startsWith('.')) return
      const target = relative(cwd, resolvePath(dirname(context.filename), source.value)).split(sep).join('/').replace(/\.js$/, '.ts')
      for (const rule of rules) {
        if (!rule.module.test(target) || rule.module.test(file)) continue
        if (typeOnly && rule.allowTypeImports === true) continue
        const allowed = (rule.only === undefined || rule.only.some((glob) => glob.test(file))) &&
          (rule.not === undefined || !rule.not.some((glob) => glob.test(file)))
        if (!allowed) context.report({ node, messageId: 'crossed', data: { file, target, reason: rule.reason } })
      }
    }

    return {
      ImportDeclaration (node) {
        const typeOnly = /** @type {any} */ (node).importKind === 'type' ||
          (node.specifiers.length > 0 && node.specifiers.every((specifier) => /** @type {any} */ (specifier).importKind === 'type'))
        check(node, node.source, typeOnly)
      },
      ExportNamedDeclaration (node) {
        if (node.source !== null && node.source !== undefined) check(node, node.source, /** @type {any} */ (node).exportKind === 'type')
      },
      ExportAllDeclaration (node) {
        check(node, node.source, /** @type {any} */ (node).exportKind === 'type')
      },
      ImportExpression (node) {
        check(node, node.source, false)
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

const plugin = {
  meta: { name: 'eslint-plugin-agw', version: '1.0.0' },
  rules: {
    'no-process-env': noProcessEnv,
    'no-module-side-effects': noModuleSideEffects,
    'socket-writes-only-in-sinks': socketWritesOnlyInSinks,
    'import-boundaries': importBoundaries
  }
}

export default plugin
