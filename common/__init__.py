"""Shared kernel below every layer: domain errors, the actor, the clock. No I/O, no policy."""
