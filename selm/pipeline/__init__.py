"""The stages of a round as plain functions, one module each: what the flow steps call.

sample → select → judge → train → evaluate. Each takes the resolved ``Recipe`` and records, returns records and
metrics, and knows nothing about Metaflow or MLflow, so it is testable and scriptable on its own
(``selm.pipeline.experiment`` runs them in a loop). ``preflight`` checks a recipe before any of them runs.
"""
