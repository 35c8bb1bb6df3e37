"""One short module per DVC stage: each reads its params section, calls the library, logs its run."""
