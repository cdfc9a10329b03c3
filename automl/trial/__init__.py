"""One trial: the `SearchContext` every trial shares and `make_plan` (`context`), its
`TrialPlan` (`plan`), the fine-tune steps (`steps`) and the epoch loop (`loop`) that runs on a
`Worker` (`workers`: a Ray Train rank or the Tune trial's own process), placed by
`executors`; what each epoch reports (`metrics`), checkpoints, which failures are retried
(`failures`), cached-feature probes (`probe`, `features`) and costs (`measure`). The loop and
the steps import no Ray: they run on a machine without it."""
