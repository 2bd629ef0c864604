"""CoRe-ECG pretraining: config, the two-view objective, and the training loop (DESIGN §1.3–1.5)."""
