import sys

from real.trl.tiny import main

sys.exit(main())
