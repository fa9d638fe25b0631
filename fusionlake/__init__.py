"""fusionlake: a data lake for cross-agency intelligence fusion (README.md)."""

import warnings

# Great Expectations imports PySpark whenever it is installed (the `spark` extra), and PySpark 4
# warns on that import that it does not fully support pandas 3 yet. Nothing here hands Spark a
# pandas frame (backends.py gives it Arrow tables) and tests/test_spark.py runs Splink on Spark
# with pandas 3, so the warning is nothing a person running fusionlake can act on.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                        category=FutureWarning)
