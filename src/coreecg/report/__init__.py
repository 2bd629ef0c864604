"""The visual report of a run folder: ``coreecg report RUN_DIR`` writes a self-contained report.html."""
