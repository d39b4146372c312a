"""`python -m avssl ...` (and `torchrun -m avssl ...`) run the `avssl` command."""
import sys

from avssl.cli import main

sys.exit(main())
