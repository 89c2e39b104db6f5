"""`python -m workload.launch` is `labstack`."""

import sys

from workload.launch.cli import main

sys.exit(main())
