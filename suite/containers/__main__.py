from suite.containers.cli import main

raise SystemExit(main())
