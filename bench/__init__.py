"""`make bench`: measured numbers, appended to doc/performance.md."""
