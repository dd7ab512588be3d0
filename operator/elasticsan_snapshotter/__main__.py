import sys

from elasticsan_snapshotter.cli import main

sys.exit(main())
