import sys

from regkit.cli.main import main

sys.exit(main())
