"""What the flow steps hand their results to: MLflow logging and Metaflow cards (``rounds``, ``experiment``), built
from ``cards`` and ``plots``."""
