from dualsweep.cli import main

raise SystemExit(main())
