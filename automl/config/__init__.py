"""What to search, typed: a search space YAML (or a preset fitted to the data) → a frozen
`Config` (`schema`), validated in one pass with every problem named (`parse`); its sampled
parameters as Optuna distributions (`spaces`), durations (`durations`) and the YAML written
back into a run (`space_file`). Imports no Ray and no torch."""
