// `agent-gateway/agents`: the built-in agents and the demo tools, for host apps that want them
// next to their own. Importing this loads the openai SDK (the `llm` agent's client).
export { createDemoAgent, type DemoAgentOptions } from './demo.js'
export { createAgUiAgent, type AgUiAgentOptions } from './ag-ui-remote.js'
export { createLlmAgent, type LlmAgentOptions, type LlmAnswer } from './llm.js'
export { demoTools } from '../tools/index.js'
