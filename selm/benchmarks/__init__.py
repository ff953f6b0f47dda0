"""Benchmarks run on a policy: MT-Bench, AlpacaEval 2.0 (with their graders) and lm-eval tasks."""
