"""MLOps platform for house-price prediction: data, training, serving and charts."""

import os

__version__ = "0.1.0"

# Idle OpenMP threads (scikit-learn's gradient boosting) sleep instead of spinning. On a shared,
# busy machine — an Airflow worker beside its scheduler, CI — spinning threads fight for the
# cores: one 100k-row fit took 58 s instead of 8 s (docs/BENCHMARKS.md, Modeling). It must be set
# before the OpenMP runtime loads, and every entry point imports this package first; the image
# sets it too. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
