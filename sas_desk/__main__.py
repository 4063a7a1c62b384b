import sys

from sas_desk.cli import main

sys.exit(main())
