"""The data of a search, from where it lives to the batches a worker reads: sources (local
paths, URIs), task detection, the scan (`catalog`), driver-side preparation steps
(`prepare`), Parquet shards made by Ray tasks and their cache (`shards`, `shard_cache`),
seeded per-epoch batches (`batches`), and the demo datasets (`demo`)."""
