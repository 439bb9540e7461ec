from speechmpq.cli import main

raise SystemExit(main())
