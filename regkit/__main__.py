import sys

from regkit.cli import main

sys.exit(main())
