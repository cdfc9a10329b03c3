"""Combining a sweep's trials: greedy model soups and ensemble selection (issue 29)."""
