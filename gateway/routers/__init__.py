"""HTTP routers, one per area of DESIGN.md §7. Handlers stay thin: parse, call a service, shape the reply."""
