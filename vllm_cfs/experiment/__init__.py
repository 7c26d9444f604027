"""The hw2 experiment's helpers for the shell scripts in hw2/ (environment record)."""
