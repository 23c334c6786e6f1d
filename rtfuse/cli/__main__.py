import sys

from rtfuse.cli import main

sys.exit(main())
