import sys

from synergy_bench.cli import main

sys.exit(main())
