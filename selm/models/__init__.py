"""Language models: chat formatting, log-probs, sampling (HF / vLLM), preference training, launching and
checkpoints."""
