"""Hub module tooling: `pigeonhub build` (build: compile wasm/, the ABI table parser, budgets) and
`pigeonhub info` (info)."""
