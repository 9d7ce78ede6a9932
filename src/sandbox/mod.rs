//! The sandbox: the only place that spawns processes. Resolves handlers, switches user,
//! applies limits, captures output with bounded memory and enforces timeouts.
