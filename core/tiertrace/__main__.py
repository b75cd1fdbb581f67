import sys

from tiertrace.cli import main

sys.exit(main())
