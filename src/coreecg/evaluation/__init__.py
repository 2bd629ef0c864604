"""Transfer of an encoder to labelled tasks: linear probe, fine-tuning, prediction, and the benchmark grid.

Flow: ``selection`` picks train/validation/test records (and label fractions, by ``stratify``),
``features`` turns records into window-averaged embeddings, ``probe`` and ``finetune`` fit on train
and select on validation only (both return an ``outcome``), ``classifier`` saves and applies a
fine-tuned model, ``benchmark`` runs the methods × tasks × fractions × leads × seeds grid and
``tables`` writes its Markdown.
"""
