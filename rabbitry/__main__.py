"""`python -m rabbitry ...`: the same as the `rabbitry` command."""

import sys

from rabbitry._main import main

sys.exit(main())
