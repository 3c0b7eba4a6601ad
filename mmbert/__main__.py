from mmbert.cli import main

raise SystemExit(main())
