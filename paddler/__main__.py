from paddler.cli import main

raise SystemExit(main())
