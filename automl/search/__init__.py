"""The search over trials on Ray Tune: the Ray session (`ray_session`), backbone ranking
before the first trial (`ranking`, `transferability`), Optuna TPE + ASHA (`tune`), time
budgets (`budget`), and the callbacks that record and print the search (`tracking`,
`progress`)."""
