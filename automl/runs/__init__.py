"""A run dir: where it lives (`location`), the names of its files (`layout`), its lock, the
trial history the driver appends (`history`), the leaderboard rebuilt from it
(`leaderboard`, `board_io`), and reading a run back — finished, interrupted or live
(`read`)."""
