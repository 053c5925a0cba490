import sys

from tokenlabs.cli import main

sys.exit(main())
