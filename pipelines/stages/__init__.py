"""The three stages, each a config in and an artifact out: `see` (a vision model), `act` (a policy),
`transfer` (zero-shot results). No stage imports another; they read each other's folders through
the typed artifacts of `darla.artifacts`."""
