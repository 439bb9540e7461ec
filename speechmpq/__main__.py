from speechmpq.cli import main

if __name__ == "__main__":  # guarded: corpus workers re-import the main module (forkserver)
    raise SystemExit(main())
