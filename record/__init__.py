"""The run record: what a search writes and what analysis reads, in one place.

`objectives` (the vocabulary of objectives and their one direction type),
`arch` (ArchConfig ⇄ the flat columns of tables), `rundir` (the run-directory
format: run.json, the trials table, the study path, the lock).  It sits
below `search` and `analysis` and depends only on `space`: it never trains,
samples or plots.
"""
