import sys

from .cli import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    # cli.main wrote the report of what was measured before the interruption.
    print("interrupted: the report holds the workloads measured so far", file=sys.stderr)
    sys.exit(130)
