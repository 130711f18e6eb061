"""The PC hub runtime: `pigeonhub serve` (server), its WebSocket transport (ws), the HTTP router
(endpoints), over-the-air uploads (ota) and the module store (module_store)."""
