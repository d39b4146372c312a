"""Recipes: pretraining, fine-tuning and the demo, each a config dataclass + `run_*(cfg)` that wires data,
a model, the shared training loop (`avssl.train`) and the evaluation tasks (`avssl.tasks`) together."""
