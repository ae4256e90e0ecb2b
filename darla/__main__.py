from darla.cli import main

raise SystemExit(main())
