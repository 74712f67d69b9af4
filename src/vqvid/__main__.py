import sys

from vqvid.cli import main

sys.exit(main())
