from vaerepair.cli import main

raise SystemExit(main())
