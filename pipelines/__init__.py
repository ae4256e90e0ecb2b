"""darla's pipelines: `stages/` (see, act, transfer), `orchestrate/` (the plan and its backends),
`analysis/` (report, statistics, probes, metrics, validation), `bench/` (speed targets)."""
