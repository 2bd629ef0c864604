"""CoRe-ECG pretraining: config, the two-view objective, and the training loop (docs/method.md §3–5)."""
