"""Every file and folder of a run dir, by name. Nothing else names them.

    RUN/
      .automl-run.json     RUN_MARKER: automl made this folder (ownership)
      .automl-lock.json    LOCK_FILE: the driver searching in it now (runs.lock)
      space.yaml           SPACE_FILE: the resolved space; `automl search RUN/space.yaml`
      config.json          CONFIG_FILE: the typed config the report shows
      static.json          CONTEXT_FILE: the SearchContext every trial shared
      trials.jsonl         HISTORY_FILE: every trial event, appended while it runs
      state.json           STATE_FILE: running | finished | interrupted, with a heartbeat
      leaderboard.csv      LEADERBOARD_CSV / LEADERBOARD_PARQUET: the board
      report.html          REPORT_FILE
      logs/                LOG_DIR: progress log, Ray's log, `<trial>.error.txt`
      tune/                TUNE_DIR: Ray Tune's experiment (what --resume restores)
      tune-seeds/          SEEDS_TUNE_DIR: the final-seeds phase's experiment, if any
      trials/              TRIALS_DIR: each trial's checkpoints (Ray Train's layout)
      refit/               REFIT_DIR: export --refit's training run
      export/              EXPORT_DIR: the selected trial, exported at the end
      mlflow.db            MLFLOW_DB: `tracking.mlflow: local`

Beside the run dirs, in their parent: `prepared-data/` (CACHE_DIR), the prepared data that
searches of the same data share (unless `data.cache_dir` says elsewhere).
"""

RUN_MARKER = ".automl-run.json"
LOCK_FILE = ".automl-lock.json"
SPACE_FILE = "space.yaml"
CONFIG_FILE = "config.json"
CONTEXT_FILE = "static.json"
HISTORY_FILE = "trials.jsonl"
STATE_FILE = "state.json"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_PARQUET = "leaderboard.parquet"
REPORT_FILE = "report.html"
LOG_DIR = "logs"
TUNE_DIR = "tune"
SEEDS_TUNE_DIR = "tune-seeds"
"""The final-seeds phase's Tune experiment (`search.final_seeds`)."""
TRIALS_DIR = "trials"
CACHE_DIR = "prepared-data"
REFIT_DIR = "refit"
EXPORT_DIR = "export"
MLFLOW_DB = "mlflow.db"
LEGACY_FILES = ("config.pkl", HISTORY_FILE, CONTEXT_FILE)
"""Files that mark a run dir made before RUN_MARKER existed (`config.pkl`: the oldest)."""
