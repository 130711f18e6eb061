"""Load and device figures: `pigeonhub bench` (bench, with load, servers, device, report) and
`pigeonhub soak` (soak)."""
